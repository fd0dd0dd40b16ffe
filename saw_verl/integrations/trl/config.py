"""`SAWGRPOConfig`: TRL's `GRPOConfig` plus the SAW options (works with `TrlParser`, YAML and CLI)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from saw_verl.errors import SawInputError
from saw_verl.shaping import parse_conditions, parse_weight_schedule

# SAW estimator -> the TRL aggregation that carries it out with the SAW weights as `reward_weights`
ESTIMATOR_AGGREGATION = {"saw_grpo": "sum_then_normalize", "saw_gdpo": "normalize_then_sum"}
AGGREGATION_ESTIMATOR = {aggregation: estimator for estimator, aggregation in ESTIMATOR_AGGREGATION.items()}
# scale_rewards values that keep saw_grpo's group z-score ("none": no division by the std, Dr. GRPO)
SAW_GRPO_SCALES = ("group", "none")


@dataclass
class SAWGRPOConfig(GRPOConfig):
    """`GRPOConfig` with SAW's dynamic weights. `reward_weights` stay the static alpha_k.

    `saw_estimator` and `multi_objective_aggregation` name the same choice: set either one (or both,
    consistently). Neither set: `saw_grpo` with `sum_then_normalize`, TRL's default aggregation.
    `saw_grpo` takes `scale_rewards` "group" (the group z-score of docs/spec.md Step 2a) or "none" (Dr. GRPO); "batch"
    is refused, since SAW-GRPO is defined on the group z-score. `saw_gdpo` takes "group" only: TRL's
    normalize_then_sum always divides by the group std.
    `saw_conditions` gate one reward function on another's reward; `saw_weight_schedule` ({step: weights}, or
    [[step, weights], ...]) makes alpha_k a function of the step and replaces `reward_weights` (docs/trl.md).
    Both are checked here as far as they can be without the reward functions' names, and fully by the trainer.
    """

    saw_estimator: str | None = field(
        default=None,
        metadata={
            "help": "SAW estimator: 'saw_grpo' (SAW weights on the raw rewards, aggregation "
            "'sum_then_normalize') or 'saw_gdpo' (on per-reward group z-scores, 'normalize_then_sum'). "
            "Default: the one matching multi_objective_aggregation ('saw_grpo' when neither is set).",
            "choices": list(ESTIMATOR_AGGREGATION),
        },
    )
    saw_preset: str = field(
        default="paper",
        metadata={"help": "SAW weight formula: 'paper' (default) or 'official' (the released code's)."},
    )
    saw_dynamic: bool = field(
        default=True,
        metadata={"help": "False: SAW weights all 1, i.e. exactly plain GRPOTrainer (the equal-weight baseline)."},
    )
    saw_reward_min: list[float] | None = field(
        default=None,
        metadata={
            "help": "Theoretical minimum of each reward function, in the order of reward_funcs (default all 0): "
            "SAW takes the coefficient of variation of reward - minimum."
        },
    )
    saw_delta: float = field(
        default=1e-8,
        metadata={"help": "The 'paper' preset's shift and equal-weight fallback threshold."},
    )
    saw_history_decay: float = field(
        default=0.0,
        metadata={
            "help": "In [0, 1): SAW's statistics over a decayed pool of past generation batches (each reward counts "
            "decay^age); 0 (default): this batch alone. The pool is saved in checkpoints (trainer_state.json)."
        },
    )
    saw_conditions: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Conditioned rewards: {reward function: [condition function, threshold(, fill)]}; the function "
            "counts as its reward where the condition function's reward is >= threshold, else as fill (default 0), "
            "before any aggregation. On the command line as JSON, e.g. '{\"format\": [\"correct\", 1.0]}'."
        },
    )
    saw_weight_schedule: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "The static weights alpha_k as a function of the training step (the logged one, "
            "trainer.state.global_step + 1): {step: [w_1, ..., w_K]}, piecewise linear between the points, flat "
            "outside them. Replaces "
            "reward_weights (leave it unset). On the command line as JSON, e.g. '{\"0\": [1, 0], \"100\": [1, 1]}'."
        },
    )
    multi_objective_aggregation: str | None = field(
        default=None,
        metadata={
            "help": "As in GRPOConfig ('sum_then_normalize' or 'normalize_then_sum'); None (default) follows "
            "saw_estimator. A value that contradicts saw_estimator is an error.",
            "choices": list(AGGREGATION_ESTIMATOR),
        },
    )

    def __post_init__(self):
        super().__post_init__()  # also maps scale_rewards True/False to "group"/"none"
        estimator, aggregation = self.saw_estimator, self.multi_objective_aggregation
        if estimator is not None and estimator not in ESTIMATOR_AGGREGATION:
            raise SawInputError(f"unknown saw_estimator {estimator!r}; expected one of {list(ESTIMATOR_AGGREGATION)}")
        if aggregation is not None and aggregation not in AGGREGATION_ESTIMATOR:
            raise SawInputError(
                f"unknown multi_objective_aggregation {aggregation!r}; expected one of {list(AGGREGATION_ESTIMATOR)}"
            )
        if estimator is None:
            estimator = AGGREGATION_ESTIMATOR.get(aggregation, "saw_grpo")
        if aggregation is None:
            aggregation = ESTIMATOR_AGGREGATION[estimator]
        if ESTIMATOR_AGGREGATION[estimator] != aggregation:
            raise SawInputError(
                f"saw_estimator={estimator!r} runs on multi_objective_aggregation="
                f"{ESTIMATOR_AGGREGATION[estimator]!r}, but multi_objective_aggregation={aggregation!r} was set"
            )
        if estimator == "saw_gdpo" and self.scale_rewards != "group":
            raise SawInputError(
                f"saw_gdpo runs on TRL's normalize_then_sum, which divides every reward by its group std whatever "
                f"scale_rewards says: scale_rewards={self.scale_rewards!r} would be ignored; leave it 'group' (the "
                f"default), or use saw_grpo for 'none'"
            )
        if estimator == "saw_grpo" and self.scale_rewards not in SAW_GRPO_SCALES:
            raise SawInputError(
                f"saw_grpo needs scale_rewards in {list(SAW_GRPO_SCALES)} (the group z-score), got "
                f"{self.scale_rewards!r}"
            )
        self.saw_estimator, self.multi_objective_aggregation = estimator, aggregation
        self.saw_conditions = check_conditions(from_json(self.saw_conditions, "saw_conditions"))
        self.saw_weight_schedule = check_schedule(from_json(self.saw_weight_schedule, "saw_weight_schedule"))
        if self.saw_weight_schedule is not None and self.reward_weights is not None:
            raise SawInputError(
                "give reward_weights or saw_weight_schedule, not both: the schedule gives the static weights at every "
                "step (leave reward_weights unset)"
            )

    @property
    def saw_mode(self) -> str:
        """'grpo' or 'gdpo': the SawConfig mode of `saw_estimator` (sets the scale of the paper weights)."""
        return self.saw_estimator.removeprefix("saw_")


def from_json(value, option: str):
    """A JSON string (the command line's spelling) -> its value; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as error:
        raise SawInputError(f"{option} is not valid JSON ({error}): {value!r}") from None


def check_conditions(conditions):
    """{function: [condition function, threshold(, fill)]}, checked as far as it can be without the reward function
    names (a key gated on itself, a loop, a bad threshold or fill, an entry of another shape); the trainer checks
    the names."""
    if conditions is None:
        return None
    if not isinstance(conditions, Mapping):
        raise SawInputError(f"saw_conditions must map a reward function to [condition function, threshold(, fill)]; "
                            f"got {conditions!r}")
    gates = [str(entry[0]) for entry in conditions.values() if isinstance(entry, (list, tuple)) and entry]
    parse_conditions(conditions, list(dict.fromkeys([*map(str, conditions), *gates])), "saw_conditions")
    return dict(conditions)


def check_schedule(schedule):
    """{step: weights} (JSON's string steps made integers) or [[step, weights], ...] -> [[step, weights], ...],
    checked against the number of weights of its first point (the trainer checks it is the number of functions)."""
    if schedule is None:
        return None
    if isinstance(schedule, Mapping):
        schedule = [[int(step) if isinstance(step, str) and step.strip().isdigit() else step, weights]
                    for step, weights in schedule.items()]
    if not isinstance(schedule, (list, tuple)):
        raise SawInputError(f"saw_weight_schedule must be {{step: [w_1, ..., w_K], ...}}; got {schedule!r}")
    first = schedule[0] if schedule else None
    width = len(first[1]) if isinstance(first, (list, tuple)) and len(first) == 2 and isinstance(
        first[1], (list, tuple)) else 0
    parse_weight_schedule(schedule, [f"reward function {k}" for k in range(width)], "saw_weight_schedule")
    return [list(point) for point in schedule]
