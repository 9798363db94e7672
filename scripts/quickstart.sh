#!/usr/bin/env bash
# Quickstart: install into .venv, train the quickstart model from scratch on the bundled sample
# pages, evaluate it, tag the sample pages and the example .txt pages, and write HTML page views.
# Runs on a fresh machine with no ../shared and no network access to a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/quickstart}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0   # the CPU build; GPU users install their own
  .venv/bin/python -m pip install -q -e '.[test]'
fi
PY=.venv/bin/python
start=$(date +%s)
$PY -m train configs/quickstart.yaml output_dir="$OUT/model"
$PY -m train.evaluate --model "$OUT/model" --pages data/sample/test.jsonl --out "$OUT/eval"
$PY -m infer --model "$OUT/model" data/sample/test.jsonl -o "$OUT/sample-tagged.jsonl" --html "$OUT/html"
$PY -m infer --model "$OUT/model" examples -o "$OUT/examples-tagged.jsonl" --html "$OUT/html"
echo
echo "quickstart done in $(( $(date +%s) - start )) s (after install)"
echo "  model:            $OUT/model"
echo "  evaluation:       $OUT/eval/report.md  ($OUT/eval/metrics.json, PNG plots)"
echo "  tagged pages:     $OUT/sample-tagged.jsonl, $OUT/examples-tagged.jsonl"
echo "  HTML page views:  $OUT/html/index.html"
