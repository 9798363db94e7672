#!/usr/bin/env bash
# GPU benchmark: base-size random-weight model in bf16 on CUDA, Tagger vs HF pipeline, JSON out.
# Installs nothing and needs no network (the WordPiece vocabulary is trained on the bench pages).
# Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else ./gpu-bench). Exit 3 without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu-bench}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in .venv/bin/python ../venv/bin/python /work/venv/bin/python python3 python; do
    if command -v "$c" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" - <<'PY' || { echo "no CUDA device visible to torch" >&2; exit 3; }
import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.csv" 2>/dev/null || true
N="${N_PAGES:-200}"
# bf16, eager: the main figure.
"$PY" -m infer.bench --size base --device cuda --dtype bfloat16 --n-pages "$N" --rounds 3 \
  --batch-sizes 1,8,32,64 --json "$OUT_DIR/bench_base_bf16.json" 2>&1 | tee "$OUT_DIR/bench_base_bf16.log"
# Optional: torch.compile of the encoder (shapes vary per batch, so dynamic=True); skipped on failure.
if [ "${COMPILE:-1}" = "1" ]; then
  "$PY" -m infer.bench --size base --device cuda --dtype bfloat16 --n-pages "$N" --rounds 3 --compile \
    --batch-sizes 32 --json "$OUT_DIR/bench_base_bf16_compile.json" 2>&1 | tee "$OUT_DIR/bench_base_bf16_compile.log" \
    || echo "compile run failed (kept the eager figures)" >&2
fi
echo "wrote $OUT_DIR"
