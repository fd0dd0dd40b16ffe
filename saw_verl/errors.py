"""SawInputError and the messages both backends raise for bad tensor values (no torch math, no trainer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # importing this module costs no torch import (the OpenRLHF Ray hook needs none)
    import torch


class SawInputError(ValueError):
    """Bad SAW input: the message names the reward key, row, index or shape at fault."""


def non_finite_error(rewards: torch.Tensor, reward_keys: Sequence[str], row: int, key: int) -> SawInputError:
    """The error for a NaN / inf reward: rewards (N, K), reward_keys (K,) names; names key, value and row."""
    return SawInputError(
        f"reward {reward_keys[key]!r} is {rewards[row, key].item()} at row {row}: rewards must be finite"
    )


def too_few_tokens_error(total: float) -> SawInputError:
    """The error for a GDPO batch with fewer than 2 response tokens in all (M = total)."""
    return SawInputError(f"GDPO whitening needs at least 2 response tokens in the batch; got M={total:g}")
