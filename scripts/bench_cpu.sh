#!/usr/bin/env bash
# The CPU benchmark set behind the README's throughput table: Tagger vs HF pipeline at tiny and base
# size (PyTorch and ONNX Runtime, fp32, int8, split int8 (int8x3) and bf16 autocast; two compute streams, the default, and one), and our
# trainer vs the HF Trainer recipe (two streams and one; CPU dropout masks and torch's own).
# Usage: scripts/bench_cpu.sh [OUT_DIR]  (default bench-cpu). Each run prints its figures and writes JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-bench-cpu}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}"
T="${THREADS:-$(nproc)}"
run() { local name="$1"; shift; echo "== $name" >&2; "$PY" "$@" --json "$OUT_DIR/$name.json" 2>&1 | grep -v "it/s\]" | tee "$OUT_DIR/$name.log" | tail -6; }
B="--size base --n-pages 24 --threads $T --rounds 1 --batch-sizes 1,8"
run base_torch            -m infer.bench $B
run base_torch_1stream    -m infer.bench $B --streams 1
run base_torch_short      -m infer.bench $B --windows short
run base_torch_short_longest -m infer.bench $B --windows short --overlap longest
run base_torch_int8_short_longest -m infer.bench $B --quantize int8 --windows short --overlap longest
run base_torch_bf16_short_longest -m infer.bench $B --quantize bf16 --windows short --overlap longest
run base_torch_bf16       -m infer.bench $B --quantize bf16
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then  # int8x3 refuses a CPU without AMX
  run base_torch_int8x3_short_longest -m infer.bench $B --quantize int8x3 --windows short --overlap longest
  run base_torch_int8x3     -m infer.bench $B --quantize int8x3
fi
run base_onnx_int8        -m infer.bench $B --backend onnx --quantize int8
run base_onnx_int8_short  -m infer.bench $B --backend onnx --quantize int8 --windows short
run tiny_torch            -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4
run tiny_torch_1stream    -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --streams 1
run tiny_torch_line       -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --windows line
run tiny_onnx             -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --backend onnx
run tiny_torch_short      -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --windows short
run tiny_torch_short_longest -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --windows short --overlap longest
run tiny_onnx_short_longest  -m infer.bench --size tiny --n-pages 40 --threads "$T" --rounds 4 --backend onnx --windows short --overlap longest
run train_tiny            -m train.bench --size tiny --n-pages 40 --threads "$T"
run train_tiny_1stream    -m train.bench --size tiny --n-pages 40 --threads "$T" --streams 1
run train_tiny_torch_dropout -m train.bench --size tiny --n-pages 40 --threads "$T" --no-fast-dropout
grep -o "avx[a-z0-9_]*\|amx[a-z0-9_]*\|vnni" /proc/cpuinfo | sort -u | tr "\n" " " > "$OUT_DIR/cpu_flags.txt" || true
echo "wrote $OUT_DIR" >&2
