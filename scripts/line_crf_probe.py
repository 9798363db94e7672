"""A line CRF over the model's own line keys, fitted on training pages and scored on other pages:
the fast probe (seconds, no encoder) behind the section choices of configs/cpu-full.yaml.

The joint model's section scores start from such a CRF (``model.line_tags``, fitted by
``train.lexical.fit_line_crf`` over the same keys, hashed), so what helps this probe on held-out
templates is what the recipe can gain from the line keys and from the training pages' furniture.

    python -m data.build --conll A/ANERCorp_CamelLab_train.txt --news S/SaudiNewsNet/dataset \\
        --no-reserved-test --pages 3000 150 0 --dev-templates held_out --augment 0.5 --layouts 0.3 \\
        --nonce 0.25 --seed 7 --out runs/probe-pages
    python scripts/line_crf_probe.py --train runs/probe-pages/train.jsonl \\
        --dev runs/probe-pages/dev.jsonl --topic --bare-words --blocks \\
        --clusters runs/cpu-full/model/word_clusters.json --gazetteer runs/cpu-full/model/word_gazetteer.json \\
        [--group-by template] [--errors 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data.features import line_keys, line_repeats, section_labels  # noqa: E402
from data.labels import SECTION_TAGS  # noqa: E402
from data.schema import load_pages  # noqa: E402
from train.metrics import pages_by_meta, section_metrics  # noqa: E402


def items(page, topic: bool, clusters: tuple | None = None, repeats=None,
          bare_words: bool = False, blocks: bool = False, gazetteer: dict | None = None,
          heads: bool = False) -> list[dict[str, float]]:
    """The model's line keys of ``page`` (``data.features.line_keys``) as crfsuite items."""
    keys = line_keys(page.text, page.lines.tolist(), topic, clusters, repeats, bare_words, blocks, gazetteer, heads)
    return [{k: 1.0 for k in row} for row in keys]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="pages JSONL with gold sections to fit on")
    ap.add_argument("--dev", required=True, help="pages JSONL with gold sections to score")
    ap.add_argument("--topic", action="store_true", help="add the topic keys (model.line_topic)")
    ap.add_argument("--bare-words", action="store_true", help="add the bare-word keys (model.line_bare_words)")
    ap.add_argument("--blocks", action="store_true", help="add the block keys (model.line_blocks)")
    ap.add_argument("--heads", action="store_true", help="add the head keys (model.line_heads)")
    ap.add_argument("--clusters", help="a model's word_clusters.json, for the line cluster keys (model.line_clusters)")
    ap.add_argument("--line-clusters", type=int, default=256, help="which cluster size of --clusters (default 256)")
    ap.add_argument("--gazetteer", help="a silver gazetteer (train.gazetteer's gazetteer.json or a model's "
                    "word_gazetteer.json), for the line gazetteer keys (model.line_gazetteer)")
    ap.add_argument("--repeats", type=int, default=0, metavar="N",
                    help="add the repeat keys (model.line_repeats) over groups of N pages in file order (0: none)")
    ap.add_argument("--repeats-dropout", type=float, default=0.25,
                    help="share of training pages without repeat keys (training.line_repeats_dropout)")
    ap.add_argument("--c1", type=float, default=0.1)
    ap.add_argument("--c2", type=float, default=0.1)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--errors", type=int, default=0, metavar="N",
                    help="also print the confusions (gold -> predicted line counts) and N dev lines of each")
    ap.add_argument("--group-by", metavar="KEY",
                    help="also score the dev pages per value of meta[KEY] (e.g. template), one line each")
    args = ap.parse_args(argv)
    try:
        import sklearn_crfsuite
    except ImportError:
        print("needs sklearn-crfsuite: pip install '.[baselines]'", file=sys.stderr)
        return 2
    try:
        train = [p for p in load_pages(args.train) if p.sections is not None and len(p.lines)]
        dev = [p for p in load_pages(args.dev) if p.sections is not None and len(p.lines)]
    except (OSError, ValueError) as err:  # a missing file, or the first bad line, named
        print(f"error: {err}", file=sys.stderr)
        return 2
    clusters = None
    if args.clusters:
        from model.modeling import read_word_clusters
        try:
            sizes, words = read_word_clusters(args.clusters)
            clusters = (words, sizes.index(args.line_clusters))
        except (OSError, ValueError) as err:
            print(f"error: --clusters {args.clusters}: no word clusters of size {args.line_clusters} there "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return 2
    gazetteer = None
    if args.gazetteer:
        from model.modeling import read_gazetteer
        try:
            gazetteer = read_gazetteer(args.gazetteer)
        except (OSError, ValueError) as err:
            print(f"error: --gazetteer: {err}", file=sys.stderr)
            return 2
    if not train or not dev:
        print("both --train and --dev need pages with gold sections", file=sys.stderr)
        return 2
    t0 = time.time()
    # every transition a weight, as the model's fit (train.lexical.crfsuite_fit: feature.possible_transitions)
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=args.c1, c2=args.c2, max_iterations=args.iterations,
                               all_possible_transitions=True)
    rep_train, rep_dev = [None] * len(train), [None] * len(dev)
    if args.repeats:
        import random
        rng = random.Random(0)
        rep_train = [r if r is not None and rng.random() >= args.repeats_dropout else None
                     for r in line_repeats(train, args.repeats)]
        rep_dev = line_repeats(dev, args.repeats)
    crf.fit([items(p, args.topic, clusters, r, args.bare_words, args.blocks, gazetteer, args.heads)
             for p, r in zip(train, rep_train)],
            [[SECTION_TAGS.tags[i] for i in section_labels(p)] for p in train])
    fit_s = time.time() - t0
    index = {t: i for i, t in enumerate(SECTION_TAGS.tags)}
    records, confusions = [], {}
    dev_items = [items(p, args.topic, clusters, r, args.bare_words, args.blocks, gazetteer, args.heads)
                 for p, r in zip(dev, rep_dev)]
    for page, tags in zip(dev, crf.predict(dev_items)):
        ids = np.array([index[t] for t in tags])
        records.append({"id": page.id, "sections": [s.to_dict() for s in SECTION_TAGS.decode(page.lines, ids)]})
        if args.errors:
            for (s, e), gold, got in zip(page.lines.tolist(), section_labels(page), ids):
                if gold < 0:
                    continue
                g, q = SECTION_TAGS.tags[gold][2:], SECTION_TAGS.tags[got][2:]
                if g != q:
                    confusions.setdefault((g, q), []).append(f"{page.id}: {page.text[s:e].strip()[:100]}")
    m = section_metrics(dev, records)
    print(f"{len(train)} training pages, fit {fit_s:.1f} s; {m['n_pages']} scored pages, {m['n_lines']} lines")
    print("section macro-F1 {:.1f}  body F1 {:.1f}  segment F1 {:.1f}".format(
        100 * m["macro_f1"], 100 * m["body_f1"], 100 * m["segment_f1"]))
    print("  ".join(f"{lab} {100 * v['f1']:.1f}" for lab, v in m["labels"].items()))
    if args.group_by:  # the builder's pages name their template (meta.template)
        for value, idx in pages_by_meta(dev, args.group_by):
            g = section_metrics([dev[i] for i in idx], [records[i] for i in idx])
            print(f"  {args.group_by}={value}: {len(idx)} pages, section macro-F1 {100 * g['macro_f1']:.1f}  body F1 "
                  f"{100 * g['body_f1']:.1f}  segment F1 {100 * g['segment_f1']:.1f}  ("
                  + "  ".join(f"{lab} {100 * v['f1']:.0f}" for lab, v in g["labels"].items()) + ")")
    for (g, q), lines in sorted(confusions.items(), key=lambda kv: -len(kv[1])):
        print(f"{g} -> {q}: {len(lines)} lines")
        for line in lines[:args.errors]:
            print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
