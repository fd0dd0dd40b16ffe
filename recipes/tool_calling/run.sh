#!/usr/bin/env bash
# Train on ToolRL's 4k tool-calling examples with one advantage estimator (the paper's settings).
#   bash recipes/tool_calling/run.sh {grpo|gdpo|saw_grpo|saw_gdpo|verl_grpo|verl_gdpo} [extra hydra overrides...]
# Environment (defaults in brackets): MODEL_PATH [Qwen/Qwen2.5-3B-Instruct], DATA_DIR [~/data/toolrl],
# N_GPUS [8], NNODES [1], ROLLOUT_TP [1], PROJECT_NAME [saw_tool_calling],
# EXPERIMENT_NAME [<model>-<estimator>], LOGGER [["console"]], PYTHON [python3].
set -euo pipefail

# grpo / gdpo are SAW's fair baselines: saw_grpo / saw_gdpo with algorithm.saw.dynamic=false (every weight 1, the
# same code otherwise); verl_grpo / verl_gdpo are verl's own estimators, which differ in more than the weights.
ESTIMATOR=${1:-}
case "$ESTIMATOR" in
  grpo | gdpo) ESTIMATOR_OVERRIDES=("algorithm.adv_estimator=saw_$ESTIMATOR" "algorithm.saw.dynamic=false"); shift ;;
  saw_grpo | saw_gdpo) ESTIMATOR_OVERRIDES=("algorithm.adv_estimator=$ESTIMATOR"); shift ;;
  verl_grpo | verl_gdpo) ESTIMATOR_OVERRIDES=("algorithm.adv_estimator=${ESTIMATOR#verl_}"); shift ;;
  *) echo "usage: $0 {grpo|gdpo|saw_grpo|saw_gdpo|verl_grpo|verl_gdpo} [hydra overrides...] (got '${ESTIMATOR}')" >&2
     exit 2 ;;
esac

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-3B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/toolrl}
N_GPUS=${N_GPUS:-8}
NNODES=${NNODES:-1}
ROLLOUT_TP=${ROLLOUT_TP:-1}
PROJECT_NAME=${PROJECT_NAME:-saw_tool_calling}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-$(basename "$MODEL_PATH")-$ESTIMATOR}
LOGGER=${LOGGER:-'["console"]'}
PYTHON=${PYTHON:-python3}
# Registers saw_grpo / saw_gdpo in every verl process (the verl.plugins entry point does the same
# when saw-verl is installed, but swallows import errors; this path reports them). Set it empty to skip.
export VERL_USE_EXTERNAL_MODULES=${VERL_USE_EXTERNAL_MODULES-saw_verl.integrations.verl.plugin}

set -x
exec "$PYTHON" -m verl.trainer.main_ppo \
  --config-path="$RECIPE_DIR/config" --config-name=tool_calling \
  "${ESTIMATOR_OVERRIDES[@]}" \
  data.train_files="$DATA_DIR/train.parquet" \
  data.val_files="$DATA_DIR/test.parquet" \
  actor_rollout_ref.model.path="$MODEL_PATH" \
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP" \
  reward.custom_reward_function.path="$RECIPE_DIR/toolrl_reward.py" \
  trainer.n_gpus_per_node="$N_GPUS" \
  trainer.nnodes="$NNODES" \
  trainer.project_name="$PROJECT_NAME" \
  trainer.experiment_name="$EXPERIMENT_NAME" \
  trainer.logger="$LOGGER" \
  "$@"
