#!/usr/bin/env bash
# GPU check (issue 11): one command, at most 5 minutes, one JSON document on stdout: EfficientNet-B1
# at 240 px training images/s in fp32 vs bf16 and its peak GPU memory, the representation's embedding
# rate (EfficientNet-B0, 224 px, greyscale), distillation seconds per iteration at 64 px, and DDP
# scaling over the visible GPUs.  Progress and library logs go to stderr.  Without a GPU it prints
# {"gpu": false, ...} and exits 0.  Extra arguments go to benchmarks/bench_gpu.py, e.g.
#   benchmarks/gpu.sh --out gpu.json
#   benchmarks/gpu.sh --device cpu --quick     # a ~15 s CPU smoke of every part
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# bench_gpu.py starts no part after 270 s; the timeout is the backstop for a hung one
exec timeout --kill-after=10 300 "$PY" benchmarks/bench_gpu.py "$@"
