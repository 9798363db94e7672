#!/usr/bin/env bash
# GPU benchmark: base-size random-weight model in bf16 on CUDA, Tagger vs HF pipeline, JSON out.
# Installs nothing and needs no network (the WordPiece vocabulary is trained on the bench pages).
# Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else ./gpu-bench). Exit 3 without a GPU.
# A dry run of the same steps on the CPU, small: DEVICE=cpu SIZE=tiny N_PAGES=8 COMPILE=0 CLI_REPEAT=2 scripts/gpu_check.sh DIR
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
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-base}"
if [ "$DEVICE" = cuda ]; then
  "$PY" - <<'PY' || { echo "no CUDA device visible to torch" >&2; exit 3; }
import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)
PY
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.csv" 2>/dev/null || true
N="${N_PAGES:-200}"
# bf16, eager: the main figure.
rm -rf "$OUT_DIR/base-random"
"$PY" -m infer.bench --size "$SIZE" --device "$DEVICE" --dtype bfloat16 --n-pages "$N" --rounds 3 \
  --batch-sizes 1,8,32,64 --json "$OUT_DIR/bench_${SIZE}_bf16.json" --save-model "$OUT_DIR/base-random" \
  2>&1 | tee "$OUT_DIR/bench_${SIZE}_bf16.log"
# The CLI on that model, with and without the worker that reads and encodes the next block while the GPU
# runs (--prefetch, the default on a GPU): wall time of each, and the records must be the same.
"$PY" - "$OUT_DIR/cli_pages.jsonl" "${CLI_REPEAT:-25}" <<'PY'
import json, sys
pages = [json.loads(line) for part in ("train", "dev", "test") for line in open(f"data/sample/{part}.jsonl", encoding="utf-8")]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for k in range(int(sys.argv[2])):  # the bundled sample pages 25 times over, each with its own id, no gold
        for p in pages:
            out.write(json.dumps({"id": f"{k}-{p['id']}", "text": p["text"]}, ensure_ascii=False) + "\n")
PY
for pf in prefetch no-prefetch; do
  rm -f "$OUT_DIR/cli_$pf.jsonl"
  s=$(date +%s%N)
  "$PY" -m infer --model "$OUT_DIR/base-random" "$OUT_DIR/cli_pages.jsonl" -o "$OUT_DIR/cli_$pf.jsonl" \
    --device "$DEVICE" --dtype bfloat16 --no-progress "--$pf" 2> "$OUT_DIR/cli_$pf.log"
  echo "cli --$pf: $(( ($(date +%s%N) - s) / 1000000 )) ms wall, $(wc -l < "$OUT_DIR/cli_$pf.jsonl") records" \
    | tee -a "$OUT_DIR/cli_times.txt"
done
if cmp -s "$OUT_DIR/cli_prefetch.jsonl" "$OUT_DIR/cli_no-prefetch.jsonl"; then w="the same records"; else w="records DIFFER"; fi
echo "cli: $w with and without --prefetch" | tee -a "$OUT_DIR/cli_times.txt"
# Optional: torch.compile of the encoder (shapes vary per batch, so dynamic=True); skipped on failure.
if [ "${COMPILE:-1}" = "1" ]; then
  "$PY" -m infer.bench --size "$SIZE" --device "$DEVICE" --dtype bfloat16 --n-pages "$N" --rounds 3 --compile \
    --batch-sizes 32 --json "$OUT_DIR/bench_${SIZE}_bf16_compile.json" 2>&1 | tee "$OUT_DIR/bench_${SIZE}_bf16_compile.log" \
    || echo "compile run failed (kept the eager figures)" >&2
fi
echo "wrote $OUT_DIR"
