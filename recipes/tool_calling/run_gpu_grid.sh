#!/usr/bin/env bash
# GPU tool-calling grid: GDPO vs GDPO + SAW on SmolLM2-135M-Instruct (BFCL simple_python, TRL SAWGRPOTrainer),
# every run at once on one GPU, in one call of at most 10 minutes. The model and wheels come from
# recipes/tool_calling/gpu_bundle.py's bundle (BUNDLE), in two parts carried by two commands:
#
#   bash recipes/tool_calling/run_gpu_grid.sh stage   # command 1: carries BUNDLE/part1 (wheels, BFCL data, model
#                                                     # bytes 1..k); copies it to STAGE, unpacks and checks the
#                                                     # wheels; SMOKE=1 adds a 2-step grid of a tiny random model
#   bash recipes/tool_calling/run_gpu_grid.sh         # command 2: carries BUNDLE/part2 (the rest of the model),
#                                                     # takes part1 from STAGE; model, check, grid, outputs
#
# DRY_RUN=1 does both on CPU with a random tiny model (bundle BUNDLE=outputs/gpu_bundle_dry, built if absent:
# pure-Python wheels downloaded for this interpreter, about 3 MB), through the same steps.
#
# Environment (defaults; dry run in brackets):
#   PYTHON=python3   OUT_DIR=/tmp/saw_gpu_grid   WORKDIR=/tmp/saw_gpu_grid_work   STAGE=/tmp/saw_gpu_stage
#   SITE=/tmp/saw_gpu_site   BUNDLE=outputs/gpu_bundle [outputs/gpu_bundle_dry]   DEVICE=cuda [cpu]
#   SEEDS="0 1 2 3 4" ["0"]   METHODS="gdpo saw_gdpo"   PROMPTS_PER_STEP=8 [2]   GENERATIONS=8 [4]
#   CALIBRATION_STEPS=3 [2]   TRAIN_S=420 [6]   MAX_STEPS=1000 [3]   TIME_LIMIT_S=570 [300] (from this script's
#   start to the end of the outputs)   FORMAT_THRESHOLD=0.8   CORRECT_THRESHOLD=0.1   WINDOW=10   FINAL_STEPS=10
set -euo pipefail
START="$(date +%s)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # recipes/: the checkout only
MODE="${1:-grid}"
DRY_RUN="${DRY_RUN:-0}"
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT_DIR:-/tmp/saw_gpu_grid}"
WORKDIR="${WORKDIR:-/tmp/saw_gpu_grid_work}"
STAGE="${STAGE:-/tmp/saw_gpu_stage}"
SITE="${SITE:-/tmp/saw_gpu_site}"
if [ "$DRY_RUN" = 1 ]; then
    BUNDLE="${BUNDLE:-$REPO/outputs/gpu_bundle_dry}" DEVICE="${DEVICE:-cpu}" SEEDS="${SEEDS:-0}"
    PROMPTS_PER_STEP="${PROMPTS_PER_STEP:-2}" GENERATIONS="${GENERATIONS:-4}"
    CALIBRATION_STEPS="${CALIBRATION_STEPS:-2}"
    TRAIN_S="${TRAIN_S:-6}" MAX_STEPS="${MAX_STEPS:-3}" TIME_LIMIT_S="${TIME_LIMIT_S:-300}"
fi
BUNDLE="${BUNDLE:-$REPO/outputs/gpu_bundle}"
DEVICE="${DEVICE:-cuda}"
SEEDS="${SEEDS:-0 1 2 3 4}"
METHODS="${METHODS:-gdpo saw_gdpo}"
PROMPTS_PER_STEP="${PROMPTS_PER_STEP:-8}"
GENERATIONS="${GENERATIONS:-8}"
CALIBRATION_STEPS="${CALIBRATION_STEPS:-3}"
TRAIN_S="${TRAIN_S:-420}"
MAX_STEPS="${MAX_STEPS:-1000}"
TIME_LIMIT_S="${TIME_LIMIT_S:-570}"
BUNDLE_PY="$HERE/gpu_bundle.py"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # everything is local; the device has no network
mkdir -p "$OUT_DIR"
say() { echo "$(date -u +%T) [$(($(date +%s) - START)) s] $*"; }

stage() {  # part1 -> STAGE, wheels -> SITE, the check
    [ -f "$BUNDLE/part1/manifest.json" ] || { echo "no $BUNDLE/part1: build it with gpu_bundle.py prepare"; exit 2; }
    rm -rf "$STAGE" "$SITE"
    "$PYTHON" "$BUNDLE_PY" stage --part "$BUNDLE/part1" --stage "$STAGE"
    "$PYTHON" "$BUNDLE_PY" install --part "$STAGE" --site "$SITE"
    "$PYTHON" "$BUNDLE_PY" check --site "$SITE" --json "$STAGE/check.json"
    say "stage done: $STAGE (part1), $SITE (wheels)"
}

if [ "$MODE" = stage ]; then
    exec > >(tee "$OUT_DIR/stage.log") 2>&1
    stage
    if [ "${SMOKE:-0}" = 1 ]; then  # the grid's code on this device with a random tiny model, 2 steps
        SMOKE_DIR="$WORKDIR/smoke"
        rm -rf "$SMOKE_DIR" && mkdir -p "$SMOKE_DIR"
        "$PYTHON" "$BUNDLE_PY" tiny-gguf --site "$SITE" --gguf "$SMOKE_DIR/tiny.gguf"
        "$PYTHON" "$HERE/gpu_grid.py" grid --site "$SITE" --gguf "$SMOKE_DIR/tiny.gguf" --model "$SMOKE_DIR/model" \
            --data-dir "$STAGE/bfcl" --workdir "$SMOKE_DIR/work" --out "$SMOKE_DIR/out" --end-unix "$((START + 240))" \
            --device "$DEVICE" --seeds 0 1 --calibration-steps 2 --max-steps 2
        for name in grid.json summary.md metrics.csv; do cp "$SMOKE_DIR/out/$name" "$OUT_DIR/smoke_$name"; done
        rm -rf "$SMOKE_DIR"
        say "smoke grid done"
    fi
    exit 0
fi
[ "$MODE" = grid ] || { echo "usage: run_gpu_grid.sh [stage|grid]"; exit 2; }

for name in metrics.csv runs.csv summary.md heldout.md grid.json grid.log {curves,weights}.{png,svg}; do
    rm -f "$OUT_DIR/$name"
done
exec > >(tee "$OUT_DIR/grid.log") 2>&1
rm -rf "$WORKDIR" && mkdir -p "$WORKDIR"
if [ "$DRY_RUN" = 1 ]; then
    if [ ! -f "$BUNDLE/part2/manifest.json" ]; then
        say "building the dry run's bundle in $BUNDLE (downloads the pure-Python wheels, about 3 MB)"
        "$PYTHON" "$BUNDLE_PY" prepare --tiny --out "$BUNDLE"
    fi
    stage  # what the first command does; part1 is then read from STAGE, as on the device
elif [ ! -f "$STAGE/manifest.json" ]; then
    if [ -f "$BUNDLE/part1/manifest.json" ]; then stage; else
        echo "no $STAGE/manifest.json: run 'run_gpu_grid.sh stage' (the first command) less than 30 s before"; exit 2
    fi
else
    rm -rf "$SITE"
    "$PYTHON" "$BUNDLE_PY" install --part "$STAGE" --site "$SITE"
fi
"$PYTHON" "$BUNDLE_PY" assemble --parts "$STAGE" "$BUNDLE/part2" --gguf "$WORKDIR/model.gguf"
say "model reassembled; the grid checks the wheels and converts the model first"
# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$HERE/gpu_grid.py" grid --site "$SITE" --gguf "$WORKDIR/model.gguf" --model "$WORKDIR/model" \
    --data-dir "$STAGE/bfcl" --workdir "$WORKDIR" --out "$OUT_DIR" --end-unix "$((START + TIME_LIMIT_S))" \
    --device "$DEVICE" \
    --seeds $SEEDS --methods $METHODS --prompts-per-step "$PROMPTS_PER_STEP" --generations "$GENERATIONS" \
    --calibration-steps "$CALIBRATION_STEPS" --train-s "$TRAIN_S" --max-steps "$MAX_STEPS" \
    --threshold "format_reward=${FORMAT_THRESHOLD:-0.8}" --threshold "correct_reward=${CORRECT_THRESHOLD:-0.1}" \
    --window "${WINDOW:-10}" --final-steps "${FINAL_STEPS:-10}"
say "grid done: $OUT_DIR"
