#!/usr/bin/env bash
# Evidence grid of the TRL demo: GRPO, GRPO+SAW, GDPO, GDPO+SAW x SEEDS through TRL's GRPOTrainer on
# CPU, PARALLEL runs at a time (one torch thread each). Each run is recorded in OUT's runs.csv and metrics.csv as it
# ends; runs OUT already records as finished with STEPS steps are skipped (a stopped grid resumes, more SEEDS add
# runs). Then summary.md/.csv, paired.csv, curves.png (recipes/common/analyze.py) from every run OUT records, and
# weights.png (python -m saw_verl.plot, first seed, when its runs are in WORKDIR).
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_trl_demo_grid   OUT=<this folder>/results   STEPS=100   SEEDS="0 1 2 3 4"
#   PARALLEL=2   PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/, recipes/: the checkout only
export WORKDIR="${WORKDIR:-/tmp/saw_trl_demo_grid}" STEPS="${STEPS:-100}" PYTHON="${PYTHON:-python}"
export EXPERIMENT="$HERE/experiment.py"
export OUT="${OUT:-$HERE/results}"
SEEDS="${SEEDS:-0 1 2 3 4}"
PARALLEL="${PARALLEL:-2}"
METHODS="grpo saw_grpo gdpo saw_gdpo"

# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$EXPERIMENT" prepare --workdir "$WORKDIR" --seeds $SEEDS
mkdir -p "$WORKDIR/logs"
for seed in $SEEDS; do for method in $METHODS; do echo "$method $seed"; done; done |
    xargs -P "$PARALLEL" -L 1 bash -c 'OMP_NUM_THREADS=1 "$PYTHON" "$EXPERIMENT" train --workdir "$WORKDIR" \
        --out "$OUT" --method "$1" --seed "$2" --steps "$STEPS" > "$WORKDIR/logs/$1_seed$2.log" 2>&1 \
        && echo "$1 seed $2: done" || echo "$1 seed $2: FAILED (log $WORKDIR/logs/$1_seed$2.log)"' _
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT" \
    --threshold format_reward=0.9 --threshold correct_reward=0.6 --title "TRL demo"
FIRST_SEED="${SEEDS%% *}"
STATES=("$WORKDIR/runs/saw_grpo_seed$FIRST_SEED/trainer_state.json" "$WORKDIR/runs/saw_gdpo_seed$FIRST_SEED/trainer_state.json")
if [ -f "${STATES[0]}" ] && [ -f "${STATES[1]}" ]; then
    "$PYTHON" -m saw_verl.plot "${STATES[@]}" -o "$OUT/weights.png" \
        --title "TRL demo, seed $FIRST_SEED: SAW weights and reward batch means"
fi
