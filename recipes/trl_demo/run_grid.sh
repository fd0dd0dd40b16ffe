#!/usr/bin/env bash
# Evidence grid of the TRL demo: GRPO, GRPO+SAW, GDPO, GDPO+SAW x SEEDS through TRL's GRPOTrainer on
# CPU, PARALLEL runs at a time (one torch thread each). Writes metrics.csv, runs.csv, summary.md/.csv,
# paired.csv, curves.png (recipes/common/analyze.py) and weights.png (python -m saw_verl.plot, first seed) to OUT.
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_trl_demo_grid   OUT=<this folder>/results   STEPS=100   SEEDS="0 1 2 3 4"
#   PARALLEL=2   PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/, recipes/: the checkout only
export WORKDIR="${WORKDIR:-/tmp/saw_trl_demo_grid}" STEPS="${STEPS:-100}" PYTHON="${PYTHON:-python}"
export EXPERIMENT="$HERE/experiment.py"
OUT="${OUT:-$HERE/results}"
SEEDS="${SEEDS:-0 1 2 3 4}"
PARALLEL="${PARALLEL:-2}"
METHODS="grpo saw_grpo gdpo saw_gdpo"

# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$EXPERIMENT" prepare --workdir "$WORKDIR" --seeds $SEEDS
mkdir -p "$WORKDIR/logs"
for seed in $SEEDS; do for method in $METHODS; do echo "$method $seed"; done; done |
    xargs -P "$PARALLEL" -L 1 bash -c 'OMP_NUM_THREADS=1 "$PYTHON" "$EXPERIMENT" train --workdir "$WORKDIR" \
        --method "$1" --seed "$2" --steps "$STEPS" > "$WORKDIR/logs/$1_seed$2.log" 2>&1 \
        && echo "$1 seed $2: done" || echo "$1 seed $2: FAILED (log $WORKDIR/logs/$1_seed$2.log)"' _
# shellcheck disable=SC2086
"$PYTHON" "$EXPERIMENT" collect --workdir "$WORKDIR" --out "$OUT" --methods $METHODS --seeds $SEEDS
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT" \
    --threshold format_reward=0.9 --threshold correct_reward=0.6 --title "TRL demo"
FIRST_SEED="${SEEDS%% *}"
"$PYTHON" -m saw_verl.plot "$WORKDIR/runs/saw_grpo_seed$FIRST_SEED/trainer_state.json" \
    "$WORKDIR/runs/saw_gdpo_seed$FIRST_SEED/trainer_state.json" -o "$OUT/weights.png" \
    --title "TRL demo, seed $FIRST_SEED: SAW weights and reward batch means"
