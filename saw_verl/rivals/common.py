"""What every rival estimator shares: checked float64 inputs on one device, per-key batch statistics, the
token counts of the mask, and the (N, L) float32 write (one read of the mask, then one in-place pass)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from saw_verl.advantages import (
    as_tensors, check_mask_and_groups, check_shapes, mask_and_group_flags, on_mask_device,
)
from saw_verl.config import SawConfig
from saw_verl.errors import non_finite_error
from saw_verl.torch_backend import dense_group_ids, group_zscore
from saw_verl.weights import batch_moments, pool_cv


class Batch(NamedTuple):
    """rewards (N, K) float64 (finite), ranks (N,) int64 dense group ids in [0, rows), out (N, L) float32: the
    mask's one read, scaled in place into the advantages by token_advantages; tokens (N,) float64 response
    lengths; weights (K,) float64 static weights."""

    rewards: torch.Tensor
    ranks: torch.Tensor
    rows: int
    out: torch.Tensor
    tokens: torch.Tensor
    weights: torch.Tensor


def prepare(rewards, group_ids, response_mask, cfg: SawConfig, num_groups: Optional[int] = None) -> Batch:
    """Checked inputs (SawInputError naming the argument, shape, reward key or row at fault) on the mask's device
    (CPU rewards / group ids follow a CUDA mask; any other device mismatch is refused, as for SAW).

    rewards (N, K) float, NaN or inf refused (a rival has no rule for an unscored rollout); group_ids (N,) integer,
    any values, not all groups of one rollout; response_mask (N, L) 0/1 values (bool/int/float). num_groups:
    optional hint that the ids are dense."""
    rewards, group_ids, response_mask = on_mask_device(*as_tensors(rewards, group_ids, response_mask))
    device = response_mask.device
    check_shapes(rewards, group_ids, response_mask, cfg)
    rewards = rewards.to(torch.float64)
    finite = torch.isfinite(rewards)
    summary = torch.cat([finite.all().reshape(1).to(torch.float64), mask_and_group_flags(group_ids, response_mask)])
    all_finite, *mask_and_groups = summary.tolist()  # the one host read
    if not all_finite:
        row, key = (~finite).nonzero()[0].tolist()
        raise non_finite_error(rewards, cfg.reward_keys, row, key)
    check_mask_and_groups(mask_and_groups, response_mask)
    ranks, rows = dense_group_ids(group_ids, num_groups)
    out = torch.empty(response_mask.shape, dtype=torch.float32, device=device)
    out.copy_(response_mask)  # float32 sums of a 0/1 mask are exact below 2^24 tokens a row
    tokens = out.sum(dim=1).to(torch.float64)
    weights = torch.tensor(cfg.static_weights, dtype=torch.float64, device=device)
    return Batch(rewards, ranks, rows, out, tokens, weights)


def key_zscores(batch: Batch, cfg: SawConfig) -> torch.Tensor:
    """(N, K) float64 per-key z-scores within groups, as verl's GRPO takes them (docs/spec.md, Conventions):
    std ddof=1 plus cfg.epsilon, a singleton group keeps x / (1 + epsilon), a constant group gives exactly 0."""
    return group_zscore(batch.rewards, batch.ranks, batch.rows, cfg)


def key_statistics(batch: Batch, cfg: SawConfig) -> dict[str, torch.Tensor]:
    """Per-key (K,) float64 mean and std (ddof=1, exactly 0 for a constant key) of the raw rewards, and the
    static weights."""
    _, mean, std = pool_cv(batch_moments(batch.rewards), cfg)
    return {"mean": mean, "std": std, "weight": batch.weights}


def token_advantages(row_values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """row_values (N,) float64 -> (N, L) float32 advantages, written into batch.out: the row's value on its
    response tokens, +0.0 elsewhere."""
    return batch.out.mul_(row_values.to(torch.float32)[:, None]).add_(0.0)  # + 0.0: no -0.0 on masked tokens
