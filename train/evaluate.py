"""Evaluate a trained tagger: ``python -m train.evaluate --model DIR --pages FILE.jsonl --out DIR``.

Writes metrics.json, report.md and PNG plots into ``--out``. The folder appears whole or not at all:
everything is written into a temporary folder next to it, which is then renamed into place.

Sources, each scored as its own block of the report:
- ``--pages``: labelled page JSONL (sections and/or entities); ``--group-by KEY`` adds a block per value
  of ``meta[KEY]`` (e.g. held-out templates).
- ``--conll``: CoNLL token files (ANERcorp). Pages are built by :mod:`data.readers`; predicted spans are
  mapped back onto the file's own tokens, and scored per sentence against the file's tags, as published
  ANERcorp figures are.
- ``--aqmar``: the AQMAR folder, scored on PER/LOC/ORG only (its MISC is another category).
- ``--seed-page``: the seed page, with a line-by-line table.
- ``--baselines``: folders written by ``python -m train.baselines``, shown side by side.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from data.readers import read_conll_pages, read_conll_sentences, TAG_MAPS, guess_format
from data.schema import ErrorRecord, Page, load_pages
from data.text import WINDOW_PLANS
from train.metrics import (entity_metrics, entity_metrics_from_tags, pages_by_meta, record_token_tags, section_metrics,
                           seed_line_table)
from train.report import load_log_history, write_json, write_report

AQMAR_TYPES = ("PERS", "LOC", "ORG")


class UsageError(Exception):
    """A problem with the command line or its files: reported as one message, exit status 2."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model folder (save_pretrained output)")
    p.add_argument("--pages", action="extend", nargs="+", default=[], metavar="FILE.jsonl",
                   help="labelled page JSONL; repeat or list several")
    p.add_argument("--conll", action="extend", nargs="+", default=[], metavar="FILE",
                   help="CoNLL token file(s), e.g. the ANERcorp official and restored test files")
    p.add_argument("--aqmar", metavar="DIR", help="AQMAR articles folder (scored on PER/LOC/ORG)")
    p.add_argument("--seed-page", metavar="FILE", help="the seed page (.json or .jsonl)")
    p.add_argument("--baselines", action="extend", nargs="+", default=[], metavar="DIR",
                   help="output folders of `python -m train.baselines`, shown side by side")
    p.add_argument("--group-by", metavar="KEY", help="also report --pages per value of meta[KEY]")
    p.add_argument("--sentences-per-doc", type=int, default=8, help="CoNLL sentences per page")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--batch-tokens", type=int, default=None, help="tagger batch size in tokens")
    p.add_argument("--windows", choices=WINDOW_PLANS, default=None,
                   help="how long pages are cut into encoder windows (default: the Tagger's, lines)")
    p.add_argument("--section-once", metavar="LABELS", default=None,
                   help="comma-separated section labels that a page has at most one section of (default: the "
                        "model's config.section_once; 'none' for no such rule)")
    p.add_argument("--section-required", metavar="LABELS", default=None,
                   help="comma-separated section labels that a page with lines has at least one section of (default: "
                        "the model's config.section_required; 'none' for no such rule)")
    p.add_argument("--device", default=None, help="torch device (default: the tagger's choice)")
    p.add_argument("--pages-alone", action="store_true",
                   help="tag every page as if on its own (no repeat keys; a model with config.line_repeats counts "
                        "each line on the pages of its group in the Tagger's block otherwise)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Scoring one source


def tag_pages(tagger, pages: list[Page]) -> tuple[list[dict], int]:
    """Output records in input order; an error record stands for a page that predicted nothing."""
    recs = list(tagger.tag(pages))
    if len(recs) != len(pages):
        raise RuntimeError(f"tagger returned {len(recs)} records for {len(pages)} pages")
    return recs, sum(1 for r in recs if "error" in r)


def page_block(pages: list[Page], recs: list[dict], types: Sequence[str], source: str) -> dict:
    block: dict = {"source": source, "n_pages": len(pages), "unit": "word"}
    if any(p.ner_regions for p in pages):
        block["entities"] = entity_metrics(pages, recs, types)
    if any(p.sections is not None for p in pages):
        block["sections"] = section_metrics(pages, recs)
    return block


def conll_sequences(tagger, path: Path, types: Sequence[str], sentences_per_doc: int):
    """Tag the file as pages; return per-sentence tag sequences on the file's own tokens
    ``(y_true, y_pred, n_pages, n_errors)``."""
    tag_map = TAG_MAPS[guess_format(path)]
    pages = read_conll_pages(path, sentences_per_doc, tag_map)
    recs, n_err = tag_pages(tagger, pages)
    y_true = [tags for _, tags in read_conll_sentences(path, tag_map)]
    y_pred = [seq for page, rec in zip(pages, recs) for seq in record_token_tags(page, rec, types)]
    if len(y_true) != len(y_pred):
        raise RuntimeError(f"{path}: {len(y_true)} sentences in the file but {len(y_pred)} lines in its pages")
    return y_true, y_pred, len(pages), n_err


def conll_block(tagger, paths: Sequence[Path], types: Sequence[str], sentences_per_doc: int,
                only_types: Sequence[str] | None = None) -> tuple[dict, int]:
    """One pooled score over CoNLL files, per sentence, as published ANERcorp figures are computed."""
    y_true, y_pred, n_pages, n_err = [], [], 0, 0
    for path in paths:
        t, p, n, e = conll_sequences(tagger, path, types, sentences_per_doc)
        y_true += t
        y_pred += p
        n_pages += n
        n_err += e
    ents = entity_metrics_from_tags(y_true, y_pred, only_types, n_pages=n_pages)
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    return {"source": source, "n_pages": n_pages, "unit": "token", "entities": ents}, n_err


def conll_name(path: Path) -> str:
    name = path.name
    if "first-token-restored" in name:
        return "ANERcorp restored test"
    if name == "ANERCorp_CamelLab_test.txt":
        return "ANERcorp official test"
    return path.stem


def read_seed(path: Path) -> Page:
    if path.suffix == ".json":
        return Page.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return load_pages(path)[0]


# ---------------------------------------------------------------------------------------------
# The run


def check_inputs(args: argparse.Namespace) -> None:
    if not Path(args.model).is_dir():
        raise UsageError(f"model folder not found: {args.model}")
    for f in [*args.pages, *args.conll] + ([args.seed_page] if args.seed_page else []):
        if not Path(f).is_file():
            raise UsageError(f"file not found: {f}")
    if args.aqmar and not Path(args.aqmar).is_dir():
        raise UsageError(f"AQMAR folder not found: {args.aqmar}")
    for d in args.baselines:
        if not (Path(d) / "metrics.json").is_file():
            raise UsageError(f"no metrics.json in baseline folder: {d}")
    if not (args.pages or args.conll or args.aqmar or args.seed_page):
        raise UsageError("nothing to evaluate: give --pages, --conll, --aqmar or --seed-page")


def evaluate(tagger, args: argparse.Namespace) -> dict:
    """Every requested block, in command-line order, as the metrics.json dict."""
    types = list(tagger.entity_types)
    blocks: dict[str, dict] = {}
    errors = 0
    for f in args.pages:
        try:
            pages = load_pages(f)
        except ValueError as err:
            raise UsageError(str(err)) from None
        recs, n = tag_pages(tagger, pages)
        errors += n
        blocks[Path(f).stem] = page_block(pages, recs, types, f)
        if args.group_by:
            for value, idx in pages_by_meta(pages, args.group_by):
                blocks[f"{Path(f).stem} [{args.group_by}={value}]"] = page_block(
                    [pages[i] for i in idx], [recs[i] for i in idx], types, f)
    for f in args.conll:
        blocks[conll_name(Path(f))], n = conll_block(tagger, [Path(f)], types, args.sentences_per_doc)
        errors += n
    if args.aqmar:
        files = sorted(Path(args.aqmar).glob("*.txt"))
        if not files:
            raise UsageError(f"no *.txt files in AQMAR folder {args.aqmar}")
        only = [t for t in AQMAR_TYPES if t in types]
        blocks["AQMAR PER/LOC/ORG"], n = conll_block(tagger, files, types, args.sentences_per_doc, only)
        errors += n
    if args.seed_page:
        page = read_seed(Path(args.seed_page))
        recs, n = tag_pages(tagger, [page])
        errors += n
        blocks["seed page"] = page_block([page], recs, types, args.seed_page)
        blocks["seed page"]["lines"] = seed_line_table(page, recs[0])
    baselines: dict = {}
    for d in args.baselines:
        baselines.update(json.loads((Path(d) / "metrics.json").read_text(encoding="utf-8")).get("systems", {}))
    return {
        "model": str(args.model),
        "entity_types": types,
        "measured": {"date": dt.date.today().isoformat(),
                     "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
                                f"device {args.device or 'default'}"},
        "tagger_errors": errors,
        "blocks": blocks,
        "baselines": baselines,
    }


def replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing ``out`` is swapped out first and then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary(metrics: dict) -> str:
    rows = [f"{'block':<36} {'ent µF1':>8} {'ent MF1':>8} {'line MF1':>9} {'body F1':>8} {'seg F1':>7}"]
    for name, b in metrics["blocks"].items():
        e, s = b.get("entities"), b.get("sections")
        has_s = bool(s and s.get("n_lines"))
        cell = lambda v, ok: f"{100 * v:.1f}" if ok else "-"  # noqa: E731
        rows.append(f"{name[:36]:<36} {cell(e['micro']['f1'] if e else 0, e):>8} {cell(e['macro']['f1'] if e else 0, e):>8} "
                    f"{cell(s['macro_f1'] if has_s else 0, has_s):>9} {cell(s['body_f1'] if has_s else 0, has_s):>8} "
                    f"{cell(s['segment_f1'] if has_s else 0, has_s):>7}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None, tagger=None) -> int:
    args = parse_args(argv)
    try:
        check_inputs(args)
        if tagger is None:
            from infer.tagger import Tagger

            kw = {"device": args.device, "alone": args.pages_alone}
            if args.batch_tokens:
                kw["batch_tokens"] = args.batch_tokens
            if args.windows:
                kw["windows"] = args.windows
            from model.crf import parse_section_labels
            for key in ("section_once", "section_required"):
                if getattr(args, key) is not None:
                    kw[key] = parse_section_labels(getattr(args, key))
            try:
                tagger = Tagger.from_pretrained(args.model, **kw)
            except (FileNotFoundError, ValueError) as err:
                raise UsageError(str(err)) from None
        metrics = evaluate(tagger, args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write_report(tmp, metrics, title=f"Evaluation: {Path(args.model).name}",
                     log_history=load_log_history(args.model))
        write_json(tmp / "metrics.json", metrics)
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(summary(metrics))
    print(f"wrote {out}/metrics.json, report.md and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
