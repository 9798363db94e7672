#!/usr/bin/env bash
# The CPU recipe (issue: "the CPU recipe that actually tags well"), one command, every stage resumable:
#   bash scripts/cpu_full.sh            (OUT=runs/cpu-full, SHARED=../shared/datasets)
# 1. static word vectors (word2vec) on SaudiNewsNet (reserved days excluded) + ANERcorp train text
# 2. joint training from scratch (configs/cpu-full.yaml): WordPiece vocabulary, 4x256 BERT, hashed
#    lexical window features initialised from the vectors; resumes from its last checkpoint
# 3. evaluation pages on held-out templates (restored ANERcorp test bodies + reserved news days)
# 4. baselines on the same data: CRF, trafilatura/jusText
# 5. the report: ANERcorp official + restored test, AQMAR, held-out-template pages, the seed page
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/cpu-full}
S=${SHARED:-../shared/datasets}
A=$S/ANERcorp-CamelLabSplits
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
t0=$(date +%s)
stage() { echo "== [$(( $(date +%s) - t0 ))s] $*" >&2; }

stage "1/5 word vectors"
$PY -m train.embeddings --news "$S/SaudiNewsNet/dataset" --conll "$A/ANERCorp_CamelLab_train.txt" \
    --dim 64 --out "$OUT/vectors"

stage "2/5 joint training"
$PY -m train configs/cpu-full.yaml output_dir="$OUT/model" model.lexical_vectors="$OUT/vectors/vectors.kv" "$@"

stage "3/5 evaluation pages (held-out templates)"
[ -s "$OUT/pages/test.jsonl" ] || $PY -m data.build --conll "$A/ANERCorp_CamelLab_train.txt" \
    --test-conll "$A/derived/ANERCorp_CamelLab_test.first-token-restored.txt" --news "$S/SaudiNewsNet/dataset" \
    --pages 0 0 300 --seed 2026 --quiet --out "$OUT/pages"

stage "4/5 baselines"
[ -s "$OUT/crf/metrics.json" ] || $PY -m train.baselines crf --train "$A/ANERCorp_CamelLab_train.txt" \
    --test "$A/ANERCorp_CamelLab_test.txt" "$A/derived/ANERCorp_CamelLab_test.first-token-restored.txt" \
    --out "$OUT/crf"
[ -s "$OUT/extractors/metrics.json" ] || $PY -m train.baselines extractors --pages "$OUT/pages/test.jsonl" \
    --out "$OUT/extractors" || echo "extractors skipped (pip install '.[baselines]')" >&2

stage "5/5 report"
$PY -m train.evaluate --model "$OUT/model" --pages "$OUT/pages/test.jsonl" --group-by template \
    --conll "$A/ANERCorp_CamelLab_test.txt" "$A/derived/ANERCorp_CamelLab_test.first-token-restored.txt" \
    --aqmar "$S/AQMAR/articles" --seed-page ../shared/data/seed-page.json \
    --baselines "$OUT/crf" "$OUT/extractors" --out "$OUT/eval"
stage "done: $OUT/eval/report.md"
