"""SAW options (no trainer import): one validated, immutable record per training step, and the constants
the specification fixes (docs/spec.md, "Conventions")."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Sequence

from saw_verl.errors import SawInputError
from saw_verl.shaping import Condition, WeightSchedule, check_step, parse_conditions, parse_weight_schedule

MODES = ("grpo", "gdpo")
PRESETS = ("paper", "official")
OFFICIAL_EPS = 1e-8  # the official preset's constant in the CV and in the weight normalisation
WHITEN_EPS = 1e-8  # added to the variance in GDPO's token-weighted whitening


@dataclass(frozen=True)
class SawConfig:
    """Everything the math needs besides the tensors.

    reward_keys: names of the K reward dimensions (used in errors and metrics).
    mode: "grpo" (weights act on raw rewards) or "gdpo" (on per-dimension z-scores, then whitening).
    preset: "paper" (the default of docs/spec.md) or "official" (the released code's formula).
    dynamic: False gives w_k = 1 (the equal-weight baseline through the same path).
    reward_min: per-key theoretical minimum m_k (default all 0).
    static_weights: per-key alpha_k (default all 1).
    delta: the paper preset's shift / fallback threshold.
    epsilon: added to the group std (verl's GRPO epsilon).
    norm_by_std: False skips the division by the group std (verl's norm_adv_by_std_in_grpo, Dr.GRPO).
    conditions: {key: (condition key, threshold[, fill])}: key counts as its reward where the condition key's
        reward is >= threshold, else as fill (default 0) (docs/spec.md, "Conditions and schedules"); held as
        saw_verl.shaping.Condition records in application order.
    weight_schedule: {step: weights (K,)} points: the static weights as a piecewise linear function of the
        training step (saw_verl.shaping.WeightSchedule); at_step(t) gives the config at step t. Excludes
        static_weights.
    history_decay: beta in [0, 1): Step 1 takes its statistics from a decayed pool of past steps' rewards
        (docs/spec.md, "History"), held by a saw_verl.SawHistory; 0 (the default): this step alone.
    option_names: what errors call each option, by field name, for the trainer whose user reads them
        (verl: "algorithm.saw.reward_min", TRL: "saw_reward_min", OpenRLHF: "--saw.reward_min"); fields it
        does not name are called by their field name.
    """

    reward_keys: tuple[str, ...]
    mode: str = "gdpo"
    preset: str = "paper"
    dynamic: bool = True
    reward_min: Optional[tuple[float, ...]] = None
    static_weights: Optional[tuple[float, ...]] = None
    delta: float = 1e-8
    epsilon: float = 1e-6
    norm_by_std: bool = True
    history_decay: float = 0.0
    conditions: tuple[Condition, ...] = ()
    weight_schedule: Optional[WeightSchedule] = None
    option_names: Optional[Mapping[str, str]] = field(default=None, compare=False, repr=False)

    def option(self, name: str) -> str:
        """The user-facing name of field `name` in errors."""
        return (self.option_names or {}).get(name, name)

    def __post_init__(self):
        keys = tuple(str(k) for k in self.reward_keys)
        object.__setattr__(self, "reward_keys", keys)
        if not keys:
            raise SawInputError(f"SAW needs at least one reward key ({self.option('reward_keys')} is empty: K = 0)")
        if len(set(keys)) != len(keys):
            raise SawInputError(f"{self.option('reward_keys')} has duplicates: {list(keys)}")
        if self.mode not in MODES:
            raise SawInputError(f"unknown SAW mode {self.mode!r}; expected one of {MODES}")
        if self.preset not in PRESETS:
            raise SawInputError(f"unknown {self.option('preset')} {self.preset!r}; expected one of {PRESETS}")
        if not isinstance(self.dynamic, bool):
            raise SawInputError(f"{self.option('dynamic')} must be true or false, got {self.dynamic!r}")
        if self.weight_schedule is not None and self.static_weights is not None:
            raise SawInputError(
                f"give {self.option('static_weights')} or {self.option('weight_schedule')}, not both: the schedule "
                "gives the static weights at every step"
            )
        object.__setattr__(self, "conditions", parse_conditions(self.conditions, keys, self.option("conditions")))
        object.__setattr__(self, "weight_schedule",
                           parse_weight_schedule(self.weight_schedule, keys, self.option("weight_schedule")))
        object.__setattr__(self, "reward_min", self._per_key("reward_min", self.reward_min, 0.0))
        object.__setattr__(
            self, "static_weights", self._per_key("static_weights", self.static_weights, 1.0)
        )
        for key, weight in zip(keys, self.static_weights):
            if weight < 0:
                raise SawInputError(f"{self.option('static_weights')}: weight of {key!r} is negative ({weight})")
        for name in ("delta", "epsilon"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SawInputError(f"{self.option(name)} must be a finite number > 0, got {value!r}")
        decay = self.history_decay
        if isinstance(decay, bool) or not (isinstance(decay, (int, float)) and 0 <= decay < 1):
            raise SawInputError(f"{self.option('history_decay')} must be a number in [0, 1), got {decay!r}")
        object.__setattr__(self, "history_decay", float(decay))

    def _per_key(self, name: str, values: Optional[Sequence[float]], default: float) -> tuple[float, ...]:
        option = self.option(name)
        if values is None:
            return (default,) * len(self.reward_keys)
        values = tuple(values)
        if len(values) != len(self.reward_keys):
            raise SawInputError(
                f"{option} has {len(values)} entries but there are {len(self.reward_keys)} reward keys "
                f"{list(self.reward_keys)}"
            )
        out = []
        for key, value in zip(self.reward_keys, values):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise SawInputError(f"{option}: entry for {key!r} is not a number: {value!r}") from None
            if not math.isfinite(number):
                raise SawInputError(f"{option}: entry for {key!r} is not finite: {number}")
            out.append(number)
        return tuple(out)

    def at_step(self, step=None) -> "SawConfig":
        """This config at training step `step`: with a weight schedule, the schedule's static weights at that step
        (and no schedule); without one, itself. SawInputError when a schedule has no step to read."""
        if self.weight_schedule is None:
            return self
        alpha = self.weight_schedule.at(check_step(step, self.option("weight_schedule")))
        return dataclasses.replace(self, static_weights=alpha, weight_schedule=None)

    @property
    def num_keys(self) -> int:
        return len(self.reward_keys)
