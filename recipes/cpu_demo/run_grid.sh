#!/usr/bin/env bash
# Evidence grid of the CPU demo: METHODS x SEEDS, seeds in order, two runs at a time. Each run is recorded in OUT's
# runs.csv and metrics.csv as it ends; runs OUT already records as finished with STEPS steps are skipped, so a
# stopped grid resumes and more SEEDS add runs. Then summary.md/.csv, paired.csv and curves.png from every run OUT
# records.
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_cpu_demo_grid   OUT=<this folder>/results_repeatable   STEPS=60   SEEDS="0 1 ... 9"
#   METHODS="grpo saw_grpo gdpo saw_gdpo saw_gdpo_history" (saw_gdpo_history: SAW-GDPO with
#   algorithm.saw.history_decay=0.9; also the registry's rivals saw_verl_gdpo mo_grpo corr_grpo gd2po gd2po_snr,
#   see README.md "Methods")   PARALLEL=2   PYTHON=python
#   PAIRS="METHOD:BASELINE ..." the pairs the tables compare (default: analyze.py's; results_rivals/README.md's)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/, recipes/: the checkout only
WORKDIR="${WORKDIR:-/tmp/saw_cpu_demo_grid}"
OUT="${OUT:-$HERE/results_repeatable}"
STEPS="${STEPS:-60}"
SEEDS="${SEEDS:-0 1 2 3 4 5 6 7 8 9}"
METHODS="${METHODS:-grpo saw_grpo gdpo saw_gdpo saw_gdpo_history}"
PARALLEL="${PARALLEL:-2}"
PYTHON="${PYTHON:-python}"

status=0
# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$HERE/experiment.py" --workdir "$WORKDIR" --out "$OUT" --methods $METHODS \
    --seeds $SEEDS --steps "$STEPS" --parallel "$PARALLEL" || status=$?  # the tables even if a run failed
pair_args=()
for pair in ${PAIRS:-}; do pair_args+=(--pair "$pair"); done
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT" "${pair_args[@]}"
exit "$status"
