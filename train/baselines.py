"""Baselines that our model is compared with, each writing metrics.json (and report.md) into ``--out``.

    python -m train.baselines crf --train TRAIN.txt --test TEST.txt [--test ...] --dev-fraction 0.1 --out DIR
    python -m train.baselines extractors --pages FILE.jsonl [--pages ...] --out DIR

``crf``: a linear-chain CRF (sklearn-crfsuite) on word-shape and affix features, the classic non-neural
ANERcorp baseline. The last ``--dev-fraction`` of the training sentences (file order) is held out as
dev, per the datasets README; nothing is tuned on the test files.

``extractors``: trafilatura and jusText, the usual main-text extractors, on each page rendered as HTML
with one ``<p>`` per line. A line counts as extracted body when its text occurs in the extractor output.

metrics.json holds ``{"systems": {system: {block: {...}}}}`` so that ``train.evaluate --baselines DIR``
can show every system side by side.
"""
from __future__ import annotations

import argparse
import html
import sys
import time
import unicodedata
from pathlib import Path
from typing import Sequence

from data.readers import TAG_MAPS, guess_format, read_conll_sentences
from data.schema import Page, load_pages
from data.text import normalize
from train.evaluate import conll_name
from train.metrics import body_line_metrics, entity_metrics_from_tags
from train.report import write_json, write_report

# ---------------------------------------------------------------------------------------------
# CRF features

CLITIC_PREFIXES = ("و", "ال", "ب", "ل", "ك", "ف")


def shape(word: str) -> str:
    """Collapsed character classes: Arabic letter ``a``, Latin ``X``/``x``, digit ``d``, other kept."""
    out = []
    for c in word:
        cat = unicodedata.category(c)
        if c.isdigit():
            k = "d"
        elif "\u0600" <= c <= "\u06ff" and cat.startswith("L"):
            k = "a"
        elif c.isalpha():
            k = "X" if c.isupper() else "x"
        else:
            k = c
        if not out or out[-1] != k:
            out.append(k)
    return "".join(out)


def _is_punct(word: str) -> bool:
    return bool(word) and all(unicodedata.category(c)[0] in "PS" for c in word)


def token_features(word: str) -> dict:
    w = normalize(word) or word
    f = {"bias": 1.0, "w": w, "shape": shape(word), "len": min(len(w), 8),
         "digit": w.isdigit(), "has_digit": any(c.isdigit() for c in w), "punct": _is_punct(w),
         "latin": any("a" <= c.lower() <= "z" for c in w)}
    for k in range(1, 5):
        if len(w) > k:
            f[f"pre{k}"] = w[:k]
            f[f"suf{k}"] = w[-k:]
    for p in CLITIC_PREFIXES:
        if w.startswith(p) and len(w) > len(p) + 1:
            f[f"clitic_{p}"] = True
    stem = w[1:] if w[:1] in ("و", "ف") and len(w) > 3 else w
    for p in ("ال", "بال", "لل", "كال", "ب", "ل", "ك"):
        if stem.startswith(p) and len(stem) > len(p) + 1:
            stem = stem[len(p):]
            break
    f["stem"] = stem
    return f


def sentence_features(tokens: Sequence[str]) -> list[dict]:
    """Each token's own features plus its neighbours' (±2) word, stem, shape and 2-char suffix."""
    own = [token_features(t) for t in tokens]
    out = []
    for i, f in enumerate(own):
        g = dict(f)
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < len(own):
                n = own[j]
                g.update({f"{d}:w": n["w"], f"{d}:stem": n["stem"], f"{d}:shape": n["shape"],
                          f"{d}:suf2": n.get("suf2", ""), f"{d}:punct": n["punct"]})
            else:
                g[f"{d}:pad"] = True
        out.append(g)
    return out


def run_crf(args: argparse.Namespace) -> dict:
    import sklearn_crfsuite

    t0 = time.time()
    tag_map = TAG_MAPS[guess_format(args.train)]
    sents = read_conll_sentences(args.train, tag_map)
    n_dev = int(round(len(sents) * args.dev_fraction))
    train, dev = sents[:len(sents) - n_dev], sents[len(sents) - n_dev:]
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=args.c1, c2=args.c2, max_iterations=args.max_iterations,
                               all_possible_transitions=True)
    crf.fit([sentence_features(t) for t, _ in train], [g for _, g in train])
    train_s = time.time() - t0
    blocks = {}
    evals = [("dev (last {:.0%} of train)".format(args.dev_fraction), dev, args.train)] if dev else []
    evals += [(conll_name(Path(p)), read_conll_sentences(p, TAG_MAPS[guess_format(p)]), p) for p in args.test]
    for name, data, src in evals:
        pred = crf.predict([sentence_features(t) for t, _ in data])
        blocks[name] = {"source": str(src), "n_sentences": len(data), "unit": "token",
                        "entities": entity_metrics_from_tags([g for _, g in data], pred)}
    settings = {"c1": args.c1, "c2": args.c2, "max_iterations": args.max_iterations,
                "train_sentences": len(train), "dev_sentences": len(dev)}
    return {"baseline": "crf", "settings": settings, "train_s": round(train_s, 1),
            "wall_s": round(time.time() - t0, 1), "systems": {"CRF (sklearn-crfsuite)": blocks}}


# ---------------------------------------------------------------------------------------------
# Main-text extractors


def page_html(page: Page) -> str:
    """The page as an extractor sees it once it is plain text: one ``<p>`` per non-blank line."""
    paras = "\n".join(f"<p>{html.escape(page.text[a:b].strip())}</p>" for a, b in page.lines.tolist())
    return f"<!DOCTYPE html>\n<html lang=\"ar\" dir=\"rtl\"><head><meta charset=\"utf-8\"><title></title></head>" \
           f"<body><article>\n{paras}\n</article></body></html>"


def _squash(s: str) -> str:
    return " ".join(s.split())


def extracted_lines(page: Page, extracted: str) -> list[bool]:
    out = _squash(extracted)
    return [bool(_squash(page.text[a:b])) and _squash(page.text[a:b]) in out for a, b in page.lines.tolist()]


def _trafilatura(doc: str) -> str:
    import trafilatura

    return trafilatura.extract(doc, include_comments=False, include_tables=False) or ""


def _justext(doc: str) -> str:
    import justext

    paras = justext.justext(doc.encode("utf-8"), justext.get_stoplist("Arabic"), encoding="utf-8")
    return "\n".join(p.text for p in paras if not p.is_boilerplate)


EXTRACTORS = {"trafilatura": ("trafilatura", _trafilatura), "jusText": ("justext", _justext)}


def run_extractors(args: argparse.Namespace) -> dict:
    import importlib.util

    systems: dict = {}
    skipped = {}
    for name, (module, fn) in EXTRACTORS.items():
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"not installed (pip install {module}, or the project's [baselines] extra)"
            print(f"skipping {name}: {skipped[name]}", file=sys.stderr)
            continue
        blocks = {}
        for f in args.pages:
            pages = [p for p in load_pages(f) if p.sections is not None]
            t0 = time.time()
            flags = [extracted_lines(p, fn(page_html(p))) for p in pages]
            blocks[Path(f).stem] = {"source": f, "n_pages": len(pages), "body": body_line_metrics(pages, flags),
                                    "wall_s": round(time.time() - t0, 2)}
        systems[name] = blocks
    return {"baseline": "extractors", "skipped": skipped, "systems": systems}


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.baselines", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="which", required=True)
    c = sub.add_parser("crf", help="sklearn-crfsuite CRF on CoNLL files")
    c.add_argument("--train", required=True, help="CoNLL training file (ANERcorp train)")
    c.add_argument("--test", action="extend", nargs="+", default=[], help="CoNLL test file(s)")
    c.add_argument("--dev-fraction", type=float, default=0.1, help="last fraction of train sentences held out")
    c.add_argument("--c1", type=float, default=0.1, help="L1 regularisation")
    c.add_argument("--c2", type=float, default=0.1, help="L2 regularisation")
    c.add_argument("--max-iterations", type=int, default=150)
    c.add_argument("--out", required=True)
    e = sub.add_parser("extractors", help="trafilatura and jusText body-line F1 on page JSONL")
    e.add_argument("--pages", action="extend", nargs="+", required=True, help="labelled page JSONL")
    e.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = [args.train, *args.test] if args.which == "crf" else list(args.pages)
    for f in files:
        if not Path(f).is_file():
            print(f"error: file not found: {f}", file=sys.stderr)
            return 2
    if args.which == "crf":
        import importlib.util

        if importlib.util.find_spec("sklearn_crfsuite") is None:
            print("error: sklearn-crfsuite is not installed (pip install sklearn-crfsuite)", file=sys.stderr)
            return 2
        metrics = run_crf(args)
    else:
        metrics = run_extractors(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report_in = {"blocks": {f"{s}: {b}": v for s, blocks in metrics["systems"].items() for b, v in blocks.items()},
                 "baselines": {}}
    if args.which == "crf":
        write_report(out, report_in, title="Baseline: CRF (sklearn-crfsuite), word-shape and affix features")
    else:
        write_report(out, {"blocks": {}, "baselines": metrics["systems"]}, title="Baselines: main-text extractors")
    write_json(out / "metrics.json", metrics)
    for system, blocks in metrics["systems"].items():
        for name, b in blocks.items():
            if "entities" in b:
                e = b["entities"]
                print(f"{system:<24} {name:<28} micro-F1 {100 * e['micro']['f1']:.1f}  macro-F1 {100 * e['macro']['f1']:.1f}")
            if "body" in b:
                print(f"{system:<24} {name:<28} body-line F1 {100 * b['body']['f1']:.1f}")
    if "wall_s" in metrics:
        print(f"wall time {metrics['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
