#!/usr/bin/env bash
# GPU check of the SAW Triton kernels on a bare CUDA machine (torch, triton, numpy, pytest, hypothesis; no verl,
# no network, the project not installed): correctness on CUDA, big groups, N x L > 2^31, determinism, launch /
# sync counts, the microbenchmark. Prints the device name; ends with GPU CHECK PASSED/FAILED.
# Usage: bash scripts/gpu_check.sh [--out DIR] [--dry-run]     (results default to benchmarks/results/)
# Runs from the checkout: saw_verl/kernels is a symlink to ../kernels, so `import saw_verl.kernels` finds the
# kernels as the wheel ships them (pyproject package-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import saw_verl.kernels"; then
  echo "gpu_check.sh: saw_verl.kernels does not import from $PWD with $PYTHON (is saw_verl/kernels -> ../kernels there?)" >&2
  exit 2
fi
exec "$PYTHON" -m benchmarks.gpu_check "$@"
