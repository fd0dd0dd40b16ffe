#!/usr/bin/env bash
# Main job of the CPU demo, from scratch: builds the tiny models and data, trains SAW and the
# equal-weight baseline side by side through `python -m verl.trainer.main_ppo` on CPU, then writes
# metrics.csv (per step), runs.csv (wall time, peak memory), summary.md/.csv and curves.png.
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_cpu_demo   models, data, verl logs (runs/<method>_seed<seed>/train.log)
#   OUT=$WORKDIR/results        where the metrics, table and plot go
#   MODE=gdpo                   gdpo: saw_gdpo vs equal-weight GDPO; grpo: saw_grpo vs equal-weight GRPO
#   STEPS=60  SEED=0  PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/: the checkout only
WORKDIR="${WORKDIR:-/tmp/saw_cpu_demo}"
OUT="${OUT:-$WORKDIR/results}"
MODE="${MODE:-gdpo}"
STEPS="${STEPS:-60}"
SEED="${SEED:-0}"
PYTHON="${PYTHON:-python}"

"$PYTHON" "$HERE/experiment.py" --workdir "$WORKDIR" --out "$OUT" --methods "$MODE" "saw_$MODE" \
    --seeds "$SEED" --steps "$STEPS" --parallel 2
"$PYTHON" "$HERE/analyze.py" --metrics "$OUT/metrics.csv" --out "$OUT"
