"""Vectorized torch implementation of the SAW spec (the CPU fast path; also runs on CUDA).

No Python loop over rows, groups or keys: per-row and per-group statistics in float64 (O(N K)),
then one fused pass over the (N, L) mask that writes the float32 advantages.
"""

from __future__ import annotations

import torch

from saw_verl.config import SawConfig, SawInputError
from saw_verl.result import WHITEN_EPS, SawResult
from saw_verl.weights import batch_weights


def group_zscore(values: torch.Tensor, group_ids: torch.Tensor, num_groups: int, cfg: SawConfig) -> torch.Tensor:
    """values (N, C) float64, group_ids (N,) int64 in [0, num_groups) -> (N, C) z-scores within groups."""
    c = values.shape[1]
    index = group_ids[:, None].expand(-1, c)
    count = torch.bincount(group_ids, minlength=num_groups).to(values.dtype)[:, None]
    total = values.new_zeros(num_groups, c).index_add_(0, group_ids, values)
    centered = values - (total / count.clamp_min(1))[group_ids]
    squares = values.new_zeros(num_groups, c).index_add_(0, group_ids, centered * centered)
    std = (squares / (count - 1).clamp_min(1)).sqrt()
    high = values.new_full((num_groups, c), -torch.inf).scatter_reduce_(0, index, values, "amax")
    low = values.new_full((num_groups, c), torch.inf).scatter_reduce_(0, index, values, "amin")
    scale = (std + cfg.epsilon) if cfg.norm_by_std else torch.ones_like(std)
    single = (count == 1)[group_ids]
    z = torch.where((high == low)[group_ids], torch.zeros_like(values), centered / scale[group_ids])
    return torch.where(single, values / (1.0 + cfg.epsilon) if cfg.norm_by_std else values, z)


def whiten_rows(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """scores (N,) float64, tokens (N,) float64 response lengths -> token-weighted whitened scores (N,)."""
    total = tokens.sum()
    if total < 2:
        raise SawInputError(f"GDPO whitening needs at least 2 response tokens in the batch; got M={total.item():g}")
    mean = (tokens * scores).sum() / total
    var = (tokens * (scores - mean) ** 2).sum() / (total - 1)
    return (scores - mean) / (var + WHITEN_EPS).sqrt()


def torch_saw_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig, num_groups: int
) -> SawResult:
    """rewards (N, K) float, group_ids (N,) int64 in [0, num_groups), response_mask (N, L) -> SawResult."""
    rewards = rewards.to(torch.float64)
    weights, cv, raw_mean, raw_std = batch_weights(rewards, cfg)
    alpha = torch.tensor(cfg.static_weights, dtype=torch.float64, device=rewards.device)
    coef = weights * alpha
    # The one read of the (N, L) mask: a float32 copy, scaled in place below. On 1 CPU thread with verl's
    # int64 mask this beats a mixed-dtype mul ~2x; GDPO's token counts come from the copy (float32 sums
    # are exact for 0/1 masks under 2^24 tokens a row).
    advantages = torch.empty(response_mask.shape, dtype=torch.float32, device=response_mask.device)
    advantages.copy_(response_mask)
    if cfg.mode == "grpo":
        row_value = group_zscore((rewards @ coef)[:, None], group_ids, num_groups, cfg)[:, 0]
    else:
        summed = group_zscore(rewards, group_ids, num_groups, cfg) @ coef
        row_value = whiten_rows(summed, advantages.sum(dim=1).to(torch.float64))
    advantages.mul_(row_value.to(torch.float32)[:, None])
    return SawResult(advantages, weights, cv, raw_mean, raw_std)
