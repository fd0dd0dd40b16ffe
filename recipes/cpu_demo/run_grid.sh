#!/usr/bin/env bash
# Evidence grid of the CPU demo: METHODS x SEEDS, two runs at a time.
# Writes metrics.csv, runs.csv, summary.md/.csv and curves.png to OUT (the committed results/).
#
# Environment (defaults):
#   WORKDIR=/tmp/saw_cpu_demo_grid   OUT=<this folder>/results   STEPS=60   SEEDS="0 1 2 3 4"
#   METHODS="grpo saw_grpo gdpo saw_gdpo" (also: saw_gdpo_history, SAW-GDPO with algorithm.saw.history_decay=0.9;
#   the registry's rivals saw_verl_gdpo mo_grpo corr_grpo gd2po gd2po_snr, see README.md "Methods")
#   PARALLEL=2   PYTHON=python
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(cd "$HERE/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # cpu_harness/, recipes/: the checkout only
WORKDIR="${WORKDIR:-/tmp/saw_cpu_demo_grid}"
OUT="${OUT:-$HERE/results}"
STEPS="${STEPS:-60}"
SEEDS="${SEEDS:-0 1 2 3 4}"
METHODS="${METHODS:-grpo saw_grpo gdpo saw_gdpo}"
PARALLEL="${PARALLEL:-2}"
PYTHON="${PYTHON:-python}"

# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$HERE/experiment.py" --workdir "$WORKDIR" --out "$OUT" --methods $METHODS \
    --seeds $SEEDS --steps "$STEPS" --parallel "$PARALLEL"
"$PYTHON" -m recipes.common.analyze --metrics "$OUT/metrics.csv" --out "$OUT"
