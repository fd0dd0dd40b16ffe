#!/usr/bin/env bash
# Main job of the CPU demo, from scratch: builds the tiny models and data, trains SAW and the
# equal-weight baseline side by side through `python -m verl.trainer.main_ppo` on CPU, then writes
# metrics.csv (per step), runs.csv (wall time, peak memory), summary.md/.csv and curves.png.
#
# Environment (defaults):
#   WORKDIR=<a new folder>      models, data, runs/<method>_seed<seed>/ (train.log, verl_metrics.jsonl, rollouts/); by
#                               default a fresh $TMPDIR/saw_cpu_demo.XXXXXX per run, printed. A WORKDIR you name is
#                               reused: its models and data are kept, and the runs its OUT records as finished.
#   OUT=$WORKDIR/results        where the metrics, table and plot go
#   MODE=gdpo                   gdpo: saw_gdpo vs equal-weight GDPO; grpo: saw_grpo vs equal-weight GRPO
#   STEPS=60  SEED=0  PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/, recipes/: the checkout only
WORKDIR="${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/saw_cpu_demo.XXXXXX")}"
OUT="${OUT:-$WORKDIR/results}"
MODE="${MODE:-gdpo}"
STEPS="${STEPS:-60}"
SEED="${SEED:-0}"
PYTHON="${PYTHON:-python}"
echo "run_demo.sh: working folder $WORKDIR"

"$PYTHON" "$HERE/experiment.py" --workdir "$WORKDIR" --out "$OUT" --methods "$MODE" "saw_$MODE" \
    --seeds "$SEED" --steps "$STEPS" --parallel 2
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT"
echo "run_demo.sh: results in $OUT (metrics.csv, summary.md, curves.png); each run's verl log and metrics in" \
    "$WORKDIR/runs/<method>_seed$SEED/ (train.log, verl_metrics.jsonl)."
echo "Plot the SAW weights per run: $PYTHON -m saw_verl.plot $OUT/metrics.csv -o weights.png"
