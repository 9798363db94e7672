"""The CPU recipe, one command, every stage resumable:

    python scripts/cpu_full.py [--out runs/cpu-full] [--shared ../shared/datasets] [key=value ...]

1. static word vectors (word2vec) on SaudiNewsNet (reserved days excluded) + ANERcorp train text, and a
   silver gazetteer: a CRF (the baseline's features and the vectors' clusters), fitted on ANERcorp train
   (its dev part left out), tags 4M words of SaudiNewsNet, and each word's share of entity tags becomes a
   lexical key (train.gazetteer)
2. joint training from scratch (configs/cpu-full.yaml; extra key=value overrides go to it); resumes
   from its last checkpoint
3. evaluation pages on held-out templates (restored ANERcorp test bodies + reserved news days)
4. baselines on the same data: CRF, trafilatura/jusText
5. the report: ANERcorp official + restored test, AQMAR, held-out-template pages, the seed page; with
   repeat keys (model.line_repeats) also the held-out-template pages each tagged alone (eval-alone/)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/cpu-full")
    ap.add_argument("--shared", default="../shared/datasets")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for python -m train")
    args = ap.parse_args(argv)
    os.chdir(Path(__file__).resolve().parents[1])
    out, s = Path(args.out), Path(args.shared)
    aner = s / "ANERcorp-CamelLabSplits"
    train, test = aner / "ANERCorp_CamelLab_train.txt", aner / "ANERCorp_CamelLab_test.txt"
    restored = aner / "derived" / "ANERCorp_CamelLab_test.first-token-restored.txt"
    news = s / "SaudiNewsNet" / "dataset"
    for p in (train, test, restored, news, s / "AQMAR" / "articles"):
        if not p.exists():
            print(f"error: {p} does not exist (set --shared)", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    t0 = time.time()

    def run(stage: str, *cmd, check: bool = True) -> int:
        print(f"== [{time.time() - t0:.0f}s] {stage}", file=sys.stderr, flush=True)
        rc = subprocess.call([sys.executable, "-m", *map(str, cmd)])
        if rc and check:
            raise SystemExit(rc)
        return rc

    run("1/5 word vectors", "train.embeddings", "--news", news, "--conll", train, "--dim", 64,
        "--out", out / "vectors")
    run("1/5 silver gazetteer", "train.gazetteer", "--conll", train, "--news", news, "--words", 4_000_000,
        "--vectors", out / "vectors" / "vectors.kv", "--out", out / "gazetteer")
    run("2/5 joint training", "train", "configs/cpu-full.yaml", f"output_dir={out / 'model'}",
        f"model.lexical_vectors={out / 'vectors' / 'vectors.kv'}",
        f"model.lexical_gazetteer={out / 'gazetteer' / 'gazetteer.json'}", *args.overrides)
    if not (out / "pages" / "test.jsonl").exists():
        run("3/5 evaluation pages (held-out templates)", "data.build", "--conll", train, "--test-conll", restored,
            "--news", news, "--pages", 0, 0, 300, "--seed", 2026, "--quiet", "--out", out / "pages")
    if not (out / "crf" / "metrics.json").exists():
        run("4/5 CRF baseline", "train.baselines", "crf", "--train", train, "--test", test, restored,
            "--out", out / "crf")
    if not (out / "extractors" / "metrics.json").exists():
        if run("4/5 extractor baselines", "train.baselines", "extractors", "--pages", out / "pages" / "test.jsonl",
               "--out", out / "extractors", check=False):
            print("extractors skipped (pip install '.[baselines]')", file=sys.stderr)
    run("5/5 report", "train.evaluate", "--model", out / "model", "--pages", out / "pages" / "test.jsonl",
        "--group-by", "template", "--conll", test, restored, "--aqmar", s / "AQMAR" / "articles",
        "--seed-page", "../shared/data/seed-page.json", "--baselines", out / "crf", out / "extractors",
        "--out", out / "eval")
    config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    if config.get("line_repeats"):  # the pages' figures with each page on its own, no repeat keys
        run("5/5 report, each page tagged alone", "train.evaluate", "--model", out / "model", "--pages",
            out / "pages" / "test.jsonl", "--seed-page", "../shared/data/seed-page.json", "--pages-alone",
            "--out", out / "eval-alone")
    print(f"== [{time.time() - t0:.0f}s] done: {out / 'eval' / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
