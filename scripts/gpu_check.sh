#!/usr/bin/env bash
# GPU check of the SAW Triton kernels on a bare CUDA machine (torch, triton, numpy, pytest, hypothesis; no verl,
# no network, no install): correctness on CUDA, big groups, N x L > 2^31, determinism, launch / sync counts,
# the microbenchmark. Prints the device name; under 8 minutes on an H100 / H200; ends with GPU CHECK PASSED/FAILED.
# Usage: bash scripts/gpu_check.sh [--out DIR]     (results default to benchmarks/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import saw_verl.kernels" 2>/dev/null; then
  # Not installed: map kernels/ to saw_verl.kernels as the wheel does (pyproject package-dir), with symlinks.
  site="$(mktemp -d)"
  mkdir "$site/saw_verl"
  ln -s "$PWD"/saw_verl/* "$site/saw_verl/"
  ln -s "$PWD/kernels" "$site/saw_verl/kernels"
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" -m benchmarks.gpu_check "$@"
