"""Step 2 of the SAW spec up to the per-row score: group z-scores over non-contiguous, unequal groups.

Groups are gathered through a CSR built on the device with torch ops (stable sort of the group ids,
searchsorted for the offsets; no host sync). One program per group reads its rows three times
(sum/max/min, centred squares, then z-scores), so every reduction has a fixed order and no atomics.

  GRPO: value(j) = sum_k coef_k r_k(j), score(j) = z-score of value within the group.
  GDPO: value(j) = r(j) per dimension,  score(j) = sum_k coef_k * z-score_k(j).
Conventions (spec): a single-rollout group gives x / (1 + eps); a constant group (max == min) gives
exactly 0; norm_by_std=False skips the division by (std + eps). Std uses Bessel's correction.
Readable reference: saw_verl.reference.reference_group_zscore.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import EPSILON, accumulator, tl_dtype

BLOCK_G = 32  # rows of one group per step; larger groups loop
NUM_WARPS = 2


def group_csr(group_ids: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """group_ids (N,) int64 in [0, G) -> (rows sorted by group (N,), offsets (G + 1,)), both int64."""
    sorted_ids, order = torch.sort(group_ids, stable=True)
    boundaries = torch.arange(num_groups + 1, device=group_ids.device, dtype=group_ids.dtype)
    return order, torch.searchsorted(sorted_ids, boundaries)


@triton.jit
def _group_values(
    rewards_ptr, stride_n, stride_k, rows, inside, keys, live, coef, ACC: tl.constexpr, GDPO: tl.constexpr
):
    """(BLOCK_G, BLOCK_K) rewards for GDPO, or (BLOCK_G, 1) weighted sums for GRPO."""
    mask = inside[:, None] & live[None, :]
    r = tl.load(rewards_ptr + rows[:, None] * stride_n + keys[None, :] * stride_k, mask=mask, other=0).to(ACC)
    if GDPO:
        values = r
    else:
        values = tl.sum(r * coef[None, :], axis=1, keep_dims=True)
    return values


@triton.jit
def _group_scores_kernel(
    rewards_ptr, stride_n, stride_k, coef_ptr, order_ptr, offsets_ptr, consts_ptr, scores_ptr, K,
    ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr, COLUMNS: tl.constexpr,
    GDPO: tl.constexpr, NORM_BY_STD: tl.constexpr,
):
    group = tl.program_id(0).to(tl.int64)
    begin = tl.load(offsets_ptr + group)
    end = tl.load(offsets_ptr + group + 1)
    count = (end - begin).to(ACC)  # 0 for an unused group id: nothing is stored then
    keys = tl.arange(0, BLOCK_K)
    live = keys < K
    coef = tl.load(coef_ptr + keys, mask=live, other=0).to(ACC)
    steps = tl.arange(0, BLOCK_G)

    total = tl.zeros((COLUMNS,), ACC)
    high = tl.full((COLUMNS,), float("-inf"), ACC)
    low = tl.full((COLUMNS,), float("inf"), ACC)
    for start in range(begin, end, BLOCK_G):
        inside = start + steps < end
        rows = tl.load(order_ptr + start + steps, mask=inside, other=0)
        v = _group_values(rewards_ptr, stride_n, stride_k, rows, inside, keys, live, coef, ACC, GDPO)
        total += tl.sum(tl.where(inside[:, None], v, 0), axis=0)
        high = tl.maximum(high, tl.max(tl.where(inside[:, None], v, float("-inf")), axis=0))
        low = tl.minimum(low, tl.min(tl.where(inside[:, None], v, float("inf")), axis=0))
    mean = total / tl.maximum(count, 1)
    squares = tl.zeros((COLUMNS,), ACC)
    for start in range(begin, end, BLOCK_G):
        inside = start + steps < end
        rows = tl.load(order_ptr + start + steps, mask=inside, other=0)
        v = _group_values(rewards_ptr, stride_n, stride_k, rows, inside, keys, live, coef, ACC, GDPO)
        centred = tl.where(inside[:, None], v - mean[None, :], 0)
        squares += tl.sum(centred * centred, axis=0)

    epsilon = tl.load(consts_ptr + EPSILON).to(ACC)
    if NORM_BY_STD:
        scale = tl.sqrt(squares / tl.maximum(count - 1, 1)) + epsilon
        single_scale = 1 + epsilon  # verl: a lone rollout has mean 0 and std 1
    else:
        scale = tl.full((COLUMNS,), 1, ACC)
        single_scale = 1
    constant = high == low
    for start in range(begin, end, BLOCK_G):
        inside = start + steps < end
        rows = tl.load(order_ptr + start + steps, mask=inside, other=0)
        v = _group_values(rewards_ptr, stride_n, stride_k, rows, inside, keys, live, coef, ACC, GDPO)
        z = tl.where(constant[None, :], 0, (v - mean[None, :]) / scale[None, :])
        z = tl.where(count == 1, v / single_scale, z)
        if GDPO:
            score = tl.sum(z * coef[None, :], axis=1)
        else:
            score = tl.sum(z, axis=1)
        tl.store(scores_ptr + rows, score, mask=inside)


def group_scores(
    rewards: torch.Tensor, group_ids: torch.Tensor, num_groups: int, coef: torch.Tensor, consts: torch.Tensor,
    mode: str, norm_by_std: bool,
) -> torch.Tensor:
    """rewards (N, K), group_ids (N,) int64, coef (K,) = weight * alpha -> scores (N,) in the accumulator dtype."""
    n, k = rewards.shape
    scores = torch.zeros(n, dtype=accumulator(rewards.dtype), device=rewards.device)  # zeros: no garbage, ever
    order, offsets = group_csr(group_ids, num_groups)
    block_k = triton.next_power_of_2(k)
    _group_scores_kernel[(num_groups,)](
        rewards, rewards.stride(0), rewards.stride(1), coef, order, offsets, consts, scores, k,
        ACC=tl_dtype(scores.dtype), BLOCK_G=BLOCK_G, BLOCK_K=block_k, COLUMNS=block_k if mode == "gdpo" else 1,
        GDPO=mode == "gdpo", NORM_BY_STD=norm_by_std, num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    return scores
