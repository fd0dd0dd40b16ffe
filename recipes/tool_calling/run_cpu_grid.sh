#!/usr/bin/env bash
# CPU tool-calling grid: SmolLM2-135M-Instruct on BFCL simple_python through TRL (SAWGRPOTrainer),
# METHODS x SEEDS, PARALLEL runs at a time (one torch thread each). Converts the model once, scores the
# untrained model on the held-out questions once (beside the first runs), then writes metrics.csv, runs.csv, summary.md/.csv,
# paired.csv, curves.png (recipes/common/analyze.py) and weights.png (python -m saw_verl.plot, first
# seed) to OUT.
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_tool_calling_cpu   OUT=<this folder>/results   STEPS=25   SEEDS="0 1 2"
#   METHODS="gdpo saw_gdpo"   PARALLEL=2   PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # recipes/: the checkout only
export WORKDIR="${WORKDIR:-/tmp/saw_tool_calling_cpu}" STEPS="${STEPS:-25}" PYTHON="${PYTHON:-python}"
export EXPERIMENT="$HERE/cpu_experiment.py" MODEL="${WORKDIR}/smollm2-135m-instruct"
OUT="${OUT:-$HERE/results}"
SEEDS="${SEEDS:-0 1 2}"
METHODS="${METHODS:-gdpo saw_gdpo}"
PARALLEL="${PARALLEL:-2}"

mkdir -p "$WORKDIR/logs" "$OUT"
[ -f "$MODEL/config.json" ] || OMP_NUM_THREADS=1 "$PYTHON" "$HERE/prepare_smollm2.py" --out "$MODEL"
# The untrained model's held-out accuracy (greedy: the same for every run), beside the first runs.
OMP_NUM_THREADS=1 "$PYTHON" "$EXPERIMENT" evaluate --model "$MODEL" --out "$OUT/heldout_untrained.json" &
EVALUATION=$!
# One seed's methods side by side, so that both arms of a pair share the machine's load.
for seed in $SEEDS; do for method in $METHODS; do echo "$method $seed"; done; done |
    xargs -P "$PARALLEL" -L 1 bash -c 'OMP_NUM_THREADS=1 "$PYTHON" "$EXPERIMENT" train --model "$MODEL" \
        --workdir "$WORKDIR" --method "$1" --seed "$2" --steps "$STEPS" > "$WORKDIR/logs/$1_seed$2.log" 2>&1 \
        && echo "$(date -u +%T) $1 seed $2: done" || echo "$1 seed $2: FAILED (log $WORKDIR/logs/$1_seed$2.log)"' _
wait "$EVALUATION"
# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$EXPERIMENT" collect --workdir "$WORKDIR" --out "$OUT" --methods $METHODS --seeds $SEEDS
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT" \
    --threshold "format_reward=${FORMAT_THRESHOLD:-0.6}" --threshold "correct_reward=${CORRECT_THRESHOLD:-0.1}" \
    --title "SmolLM2-135M on BFCL simple_python (TRL)"
FIRST_SEED="${SEEDS%% *}"
# shellcheck disable=SC2046
"$PYTHON" -m saw_verl.plot $(for method in $METHODS; do echo "$WORKDIR/runs/${method}_seed$FIRST_SEED/trainer_state.json"; done) \
    -o "$OUT/weights.png" --title "SmolLM2-135M on BFCL simple_python, seed $FIRST_SEED: SAW weights and reward batch means"
