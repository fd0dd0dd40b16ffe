"""SAW options (no verl import): one validated, immutable record per training step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

MODES = ("grpo", "gdpo")
PRESETS = ("paper", "official")


class SawInputError(ValueError):
    """Bad SAW input: the message names the reward key, row, index or shape at fault."""


@dataclass(frozen=True)
class SawConfig:
    """Everything the math needs besides the tensors.

    reward_keys: names of the K reward dimensions (used in errors and metrics).
    mode: "grpo" (weights act on raw rewards) or "gdpo" (on per-dimension z-scores, then whitening).
    preset: "paper" (spec default) or "official" (the released code's formula).
    dynamic: False gives w_k = 1 (the equal-weight baseline through the same path).
    reward_min: per-key theoretical minimum m_k (default all 0).
    static_weights: per-key alpha_k (default all 1).
    delta: the paper preset's shift / fallback threshold.
    epsilon: added to the group std (verl's GRPO epsilon).
    norm_by_std: False skips the division by the group std (verl's norm_adv_by_std_in_grpo, Dr.GRPO).
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

    def __post_init__(self):
        keys = tuple(str(k) for k in self.reward_keys)
        object.__setattr__(self, "reward_keys", keys)
        if not keys:
            raise SawInputError("SAW needs at least one reward key (algorithm.gdpo_reward_keys is empty: K = 0)")
        if len(set(keys)) != len(keys):
            raise SawInputError(f"algorithm.gdpo_reward_keys has duplicates: {list(keys)}")
        if self.mode not in MODES:
            raise SawInputError(f"unknown SAW mode {self.mode!r}; expected one of {MODES}")
        if self.preset not in PRESETS:
            raise SawInputError(f"unknown algorithm.saw.preset {self.preset!r}; expected one of {PRESETS}")
        if not isinstance(self.dynamic, bool):
            raise SawInputError(f"algorithm.saw.dynamic must be true or false, got {self.dynamic!r}")
        object.__setattr__(self, "reward_min", self._per_key("algorithm.saw.reward_min", self.reward_min, 0.0))
        object.__setattr__(
            self, "static_weights", self._per_key("algorithm.gdpo_reward_weights", self.static_weights, 1.0)
        )
        for key, weight in zip(keys, self.static_weights):
            if weight < 0:
                raise SawInputError(f"algorithm.gdpo_reward_weights: weight of {key!r} is negative ({weight})")
        for name in ("delta", "epsilon"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SawInputError(f"SAW option {name} must be a finite number > 0, got {value!r}")

    def _per_key(self, option: str, values: Optional[Sequence[float]], default: float) -> tuple[float, ...]:
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

    @property
    def num_keys(self) -> int:
        return len(self.reward_keys)
