"""Vectorized torch implementation of docs/spec.md (the CPU fast path; runs on CUDA tensors as well).

No Python loop over rows, groups or keys: group ids of any int64 values are ranked by one sort (O(N)
memory, whatever the values; skipped on the CPU for ids known dense), per-row and per-group statistics
in float64 (O(N K)), then passes over the (N, L) mask that write the float32 advantages. One host read per call: finiteness of
the rewards, (GDPO) the token total M and the tensor API's value checks (saw_verl.advantages.input_value_summary),
taken together before the result is returned.
"""

from __future__ import annotations

from typing import Optional

import torch

from saw_verl.config import WHITEN_EPS, SawConfig
from saw_verl.errors import non_finite_error, too_few_tokens_error
from saw_verl.result import SawResult
from saw_verl.weights import batch_weights


def dense_group_ids(group_ids: torch.Tensor, num_groups: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """group_ids (N,) any integers -> (ranks (N,) int64 in [0, rows), rows): equal ids, equal ranks.

    O(N) memory whatever the id values. On the CPU, ids already dense in [0, num_groups) (the hint
    verl's integration gives) are used as they are, else torch.unique ranks them. On a GPU one sort
    ranks them and rows = N, an upper bound of the number of groups that needs no host read.
    """
    if group_ids.device.type == "cpu":
        if num_groups is not None:
            low, high = torch.stack(torch.aminmax(group_ids)).tolist()
            if 0 <= low and high < num_groups:
                return group_ids.to(torch.int64), num_groups
        unique, ranks = torch.unique(group_ids, return_inverse=True)
        return ranks, unique.numel()
    sorted_ids, order = torch.sort(group_ids)
    starts = torch.ones_like(sorted_ids, dtype=torch.int64)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return torch.empty_like(starts).scatter_(0, order, starts.cumsum(0) - 1), group_ids.numel()


def group_zscore(values: torch.Tensor, ranks: torch.Tensor, rows: int, cfg: SawConfig) -> torch.Tensor:
    """values (N, C) float64, (ranks (N,), rows) from dense_group_ids -> (N, C) z-scores within groups."""
    c = values.shape[1]
    index = ranks[:, None].expand(-1, c)
    count = torch.bincount(ranks, minlength=rows).to(values.dtype)[:, None]
    total = values.new_zeros(rows, c).index_add_(0, ranks, values)
    centered = values - (total / count.clamp_min(1))[ranks]
    squares = values.new_zeros(rows, c).index_add_(0, ranks, centered * centered)
    std = (squares / (count - 1).clamp_min(1)).sqrt()
    high = values.new_full((rows, c), -torch.inf).scatter_reduce_(0, index, values, "amax")
    low = values.new_full((rows, c), torch.inf).scatter_reduce_(0, index, values, "amin")
    scale = (std + cfg.epsilon) if cfg.norm_by_std else torch.ones_like(std)
    single = (count == 1)[ranks]
    z = torch.where((high == low)[ranks], torch.zeros_like(values), centered / scale[ranks])
    return torch.where(single, values / (1.0 + cfg.epsilon) if cfg.norm_by_std else values, z)


def whiten_rows(scores: torch.Tensor, tokens: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """scores (N,) float64, tokens (N,) float64 response lengths, total = tokens.sum() (checked >= 2 by the
    caller) -> token-weighted whitened scores (N,)."""
    mean = (tokens * scores).sum() / total
    var = (tokens * (scores - mean) ** 2).sum() / (total - 1)
    return (scores - mean) / (var + WHITEN_EPS).sqrt()


def torch_saw_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig,
    num_groups: Optional[int] = None, pool: Optional[torch.Tensor] = None,
) -> SawResult:
    """rewards (N, K) float, group_ids (N,) integer (any values), response_mask (N, L) -> SawResult.
    num_groups: optional hint that the ids are dense in [0, num_groups) (see dense_group_ids).
    pool: (5, K) float64 history pool of the earlier steps, or None (saw_verl.weights.batch_weights)."""
    rewards = rewards.to(torch.float64)
    finite = torch.isfinite(rewards)
    stats = batch_weights(rewards, cfg, pool)
    weights = stats.weights
    alpha = torch.tensor(cfg.static_weights, dtype=torch.float64, device=rewards.device)
    coef = weights * alpha
    ranks, rows = dense_group_ids(group_ids, num_groups)
    # The one read of the (N, L) mask: a float32 copy, scaled in place below. On 1 CPU thread with verl's
    # int64 mask this beats a mixed-dtype mul ~2x; GDPO's token counts come from the copy (float32 sums
    # are exact for 0/1 masks under 2^24 tokens a row).
    advantages = torch.empty(response_mask.shape, dtype=torch.float32, device=response_mask.device)
    advantages.copy_(response_mask)
    from saw_verl.advantages import check_input_values, input_value_summary  # the tensor API's value checks

    summary = input_value_summary(rewards, group_ids, response_mask)
    if cfg.mode == "grpo":
        row_value = group_zscore((rewards @ coef)[:, None], ranks, rows, cfg)[:, 0]
        read = torch.cat([finite.all().to(torch.float64)[None], summary]).tolist()  # the one host read
        all_finite, total, checked = read[0], None, read[1:]
    else:
        tokens = advantages.sum(dim=1).to(torch.float64)
        read = torch.cat([torch.stack([finite.all().to(torch.float64), tokens.sum()]), summary]).tolist()
        all_finite, total, checked = read[0], read[1], read[2:]
        if all_finite and total >= 2:
            row_value = whiten_rows(group_zscore(rewards, ranks, rows, cfg) @ coef, tokens, total)
    if not all_finite:
        row, key = (~finite).nonzero()[0].tolist()
        raise non_finite_error(rewards, cfg.reward_keys, row, key)
    check_input_values(checked, response_mask, cfg)
    if total is not None and total < 2:
        raise too_few_tokens_error(total)
    # + 0.0 turns the -0.0 of a masked token times a negative value into +0.0 (docs/spec.md, "Conventions")
    advantages.mul_(row_value.to(torch.float32)[:, None]).add_(0.0)
    return SawResult(advantages, *stats)
