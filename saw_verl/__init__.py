"""saw-verl: Stage-Aware Dynamic Weighting (SAW) advantage estimators for verl.

Install the package and set ``algorithm.adv_estimator=saw_gdpo`` (or ``saw_grpo``) in a stock verl
config. The math below imports no verl; ``saw_verl.integration`` is the only code that does.
"""

from saw_verl.advantages import group_ids_from_index, rewards_from_columns, saw_advantages
from saw_verl.config import SawConfig, SawInputError
from saw_verl.reference import SawResult, reference_saw_advantages

__all__ = [
    "SawConfig",
    "SawInputError",
    "SawResult",
    "group_ids_from_index",
    "reference_saw_advantages",
    "rewards_from_columns",
    "saw_advantages",
]
