"""Choose a saved model's decode-time biases on dev pages:

    python -m train.calibrate --model DIR [--pages DEV.jsonl ...] [--grid=0,0.25,0.5,...] [--section-rounds N]
        [--section-once 'none;title'] [--section-required 'none;body'] [--dry-run]

- the NER outside bias, taken off the NER tag O's log-probability before decoding (``Tagger(outside_bias=)``;
  above 0 it trades precision for recall): the one of ``--grid`` with the best entity micro-F1 (ties: the one
  nearest 0);
- per-label section biases, added to a section label's log-probabilities before the section decoding
  (``Tagger(section_bias=)``): ``--section-rounds`` rounds of coordinate ascent on section macro-F1
  (0: leave them);
- with ``--section-once``, the rule (section labels that a page has at most one section of, or none) of those
  given whose decoding, with its own section biases, has the best section macro-F1 (ties: fewer labels);
- with ``--section-required``, the same for the labels that a page has at least one section of (``body``: a
  news page has an article); with both, every pair is tried.

The pages are tagged once and decoded with every candidate (:mod:`train.trainer`'s ``model_outputs``,
``choose_outside_bias``, ``choose_section_bias``); a model with repeat keys (``config.line_repeats``) is
run over them twice, in blocks and each page alone, and scored on both passes together. What is chosen
is written into ``DIR/config.json`` (``ner_outside_bias``, ``section_label_bias``, ``section_once``,
``section_required``), which
``python -m infer`` and every ``Tagger.from_pretrained`` then use, and the scores into ``DIR/calibration.json``.

The dev pages are the training run's own (``data.dev`` of ``DIR/config.yaml``, read from the current
folder as training read them) unless ``--pages`` names labelled page JSONL files. Training does the same
at its end with ``training.outside_bias_grid``, ``training.section_bias_rounds`` and
``training.section_once_candidates`` and ``training.section_required_candidates``. Never calibrate on test pages.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

DEFAULT_GRID = "0,0.25,0.5,0.75,1,1.25,1.5,2"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__.split("\n\n")[0].rstrip(":") + ".",
                                 epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a saved joint model folder (python -m train output)")
    ap.add_argument("--pages", nargs="+", help="labelled dev page JSONL (default: the run's data.dev)")
    ap.add_argument("--grid", default=DEFAULT_GRID, help=f"NER outside biases to try, comma-separated (default {DEFAULT_GRID}; with a negative first value write --grid=-1,0,1)")
    ap.add_argument("--section-rounds", type=int, default=2, metavar="N",
                    help="rounds of coordinate ascent for the section label biases (default 2; 0: leave them)")
    ap.add_argument("--section-once", metavar="RULES",
                    help="section_once rules to try, separated by ';', each comma-separated labels or 'none' "
                         "(e.g. 'none;title'): the one with the best dev section macro-F1, each with its own section "
                         "biases, is saved as config.section_once (default: leave it)")
    ap.add_argument("--section-required", metavar="RULES",
                    help="section_required rules to try, the same way (e.g. 'none;body'): saved as "
                         "config.section_required (default: leave it)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    args = ap.parse_args(argv)
    from model.crf import check_outside_bias

    try:
        args.grid = [check_outside_bias(b) for b in args.grid.split(",") if b.strip()]
    except ValueError as err:
        ap.error(f"--grid: {err}")
    if not args.grid:
        ap.error("--grid: give one finite number or more")
    if args.section_rounds < 0:
        ap.error(f"--section-rounds {args.section_rounds}: give 0 or more")
    from model.crf import check_section_once, check_section_required, parse_section_labels

    for key, check in (("section_once", check_section_once), ("section_required", check_section_required)):
        rules = getattr(args, key)
        if rules is not None:
            try:
                setattr(args, key, [check(parse_section_labels(r)) for r in rules.split(";")])
            except ValueError as err:
                ap.error(f"--{key.replace('_', '-')}: {err}")
    return args


def dev_of_run(model_dir: Path):
    """The dev pages of the training run that wrote ``model_dir`` (its resolved ``config.yaml``)."""
    from train.config import RunConfig, load_config
    from train.data import dev_pages

    path = model_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the dev pages with --pages")
    cfg = load_config(RunConfig, path)
    return dev_pages(cfg.data, cfg.training.seed), ", ".join(dict.fromkeys(p for s in cfg.data.dev for p in s.paths + s.news))


def main(argv=None) -> int:
    args = parse_args(argv)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"error: {model_dir}: not a saved model folder (no config.json)", file=sys.stderr)
        return 2
    from data.schema import load_pages
    from infer.tagger import Tagger
    from train.__main__ import describe_calibration
    from train.report import write_json
    from train.trainer import apply_calibration, model_outputs

    try:
        if args.pages:
            pages = [p for path in args.pages for p in load_pages(path)]
            source = ", ".join(args.pages)
        else:
            pages, source = dev_of_run(model_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not any(p.ner_regions for p in pages) and not ((args.section_rounds or args.section_once or args.section_required)
                                                      and any(p.sections is not None for p in pages)):
        print(f"error: the dev pages ({source}) have no entity or section annotation to choose biases on",
              file=sys.stderr)
        return 2
    tagger = Tagger.from_pretrained(model_dir, device=args.device, outside_bias=0.0,
                                    **({"section_bias": {}} if args.section_rounds else {}))
    outputs = model_outputs(tagger, pages, progress=True)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    was = {k: cfg.get(k) for k in ("ner_outside_bias", "section_label_bias", "section_once", "section_required")}
    chosen = apply_calibration(tagger.model.config, tagger, outputs, args.grid, args.section_rounds, args.section_once,
                               args.section_required)
    print(describe_calibration(chosen))
    print(f"{len(pages)} dev pages ({source}); before: {json.dumps(was)}"
          + (" (dry run: nothing written)" if args.dry_run else ""))
    if not args.dry_run:
        if "ner_outside_bias" in chosen:
            cfg["ner_outside_bias"] = chosen["ner_outside_bias"]
        if "section_label_bias" in chosen:
            cfg["section_label_bias"] = chosen["section_label_bias"] or None
        for key in ("section_once", "section_required"):
            if key in chosen:
                cfg[key] = chosen[key] or None
        write_json(model_dir / "config.json", cfg)
        write_json(model_dir / "calibration.json", {**chosen, "previous": was, "pages": len(pages), "source": source,
                                                    "date": dt.date.today().isoformat()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
