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


def mask_not_binary_error(response_mask: torch.Tensor) -> SawInputError:
    """The error for an (N, L) mask holding a value other than 0 and 1; names the first such (row, token, value)."""
    row, token = ((response_mask != 0) & (response_mask != 1)).nonzero()[0].tolist()
    return SawInputError(
        f"response_mask must hold 0 and 1 only (bool, int or float); it holds {response_mask[row, token].item()} at "
        f"row {row}, token {token}: a weighting mask would scale the advantages"
    )


def single_rollout_groups_error(num_rows: int) -> SawInputError:
    """The error for group ids that give every one of the N rollouts a group of its own."""
    return SawInputError(
        f"group_ids: every group has one rollout ({num_rows} rollouts, {num_rows} distinct ids): the group "
        "z-scores compare the rollouts of one prompt, so a batch needs groups of 2 or more (several samples per "
        "prompt: verl actor_rollout_ref.rollout.n, TRL num_generations, OpenRLHF n_samples_per_prompt)"
    )
