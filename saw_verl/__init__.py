"""saw-verl: Stage-Aware Dynamic Weighting (SAW) advantage estimators for verl.

Install the package and set ``algorithm.adv_estimator=saw_gdpo`` (or ``saw_grpo``) in a stock verl
config. The core imports no trainer: ``saw_verl.integrations.{verl,trl,openrlhf}`` each alone import
theirs. ``saw_verl.reference`` (the float64 oracle) is for tests and is not imported here.
"""

from saw_verl.advantages import group_ids_from_index, rewards_from_columns, saw_advantages
from saw_verl.config import SawConfig, SawInputError
from saw_verl.result import SawResult
from saw_verl.weights import BatchWeights, batch_weights, metric_name, step_metrics

__all__ = [
    "BatchWeights",
    "SawConfig",
    "SawInputError",
    "SawResult",
    "batch_weights",
    "group_ids_from_index",
    "metric_name",
    "rewards_from_columns",
    "saw_advantages",
    "step_metrics",
]
