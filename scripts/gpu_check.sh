#!/usr/bin/env bash
# GPU check of the SAW Triton kernels (correctness on CUDA, N x L > 2^31, determinism, end-to-end
# transfer cost, microbenchmark); prints the device name; under 8 minutes on an H100 / H200.
# Usage: bash scripts/gpu_check.sh [--out DIR]     (results default to benchmarks/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.gpu_check "$@"
