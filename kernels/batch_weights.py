"""Step 1 of the SAW spec: batch statistics of every reward dimension and the CV weights.

One program reads the (N, K) rewards twice (sums, max and min, then centred squares: two passes for accuracy)
and writes a (5, K) summary: weights, cv, raw mean, raw std, and coef = weight * alpha, which is
what step 2 multiplies with. Readable reference: saw_verl.reference.reference_weights.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import DELTA, OFFICIAL_EPS_AT, PER_KEY, accumulator, tl_dtype

SUMMARY_ROWS = ("weights", "cv", "mean", "std", "coef")
TILE_ELEMENTS = 4096
NUM_WARPS = 8


def block_sizes(num_keys: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_K): all keys in one tile, about TILE_ELEMENTS rewards per step."""
    block_k = triton.next_power_of_2(num_keys)
    return max(16, TILE_ELEMENTS // block_k), block_k


@triton.jit
def _batch_weights_kernel(
    rewards_ptr, stride_n, stride_k, consts_ptr, summary_ptr, N, K,
    ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, GDPO: tl.constexpr,
):
    keys = tl.arange(0, BLOCK_K)
    live = keys < K
    steps = tl.arange(0, BLOCK_N)
    total = tl.zeros((BLOCK_K,), ACC)
    high = tl.full((BLOCK_K,), float("-inf"), ACC)
    low = tl.full((BLOCK_K,), float("inf"), ACC)
    for start in range(0, N, BLOCK_N):
        rows = start + steps.to(tl.int64)
        inside = (rows < N)[:, None] & live[None, :]
        x = tl.load(rewards_ptr + rows[:, None] * stride_n + keys[None, :] * stride_k, mask=inside, other=0).to(ACC)
        total += tl.sum(x, axis=0)
        high = tl.maximum(high, tl.max(tl.where(inside, x, float("-inf")), axis=0))
        low = tl.minimum(low, tl.min(tl.where(inside, x, float("inf")), axis=0))
    mean = total / N
    squares = tl.zeros((BLOCK_K,), ACC)
    for start in range(0, N, BLOCK_N):
        rows = start + steps.to(tl.int64)
        inside = (rows < N)[:, None] & live[None, :]
        x = tl.load(rewards_ptr + rows[:, None] * stride_n + keys[None, :] * stride_k, mask=inside, other=0)
        centred = tl.where(inside, x.to(ACC) - mean[None, :], 0)
        squares += tl.sum(centred * centred, axis=0)
    std = tl.where(high == low, 0, tl.sqrt(squares / (N - 1)))  # a constant key: exactly 0, whatever the mean's rounding

    delta = tl.load(consts_ptr + DELTA).to(ACC)
    official_eps = tl.load(consts_ptr + OFFICIAL_EPS_AT).to(ACC)
    reward_min = tl.load(consts_ptr + PER_KEY + keys, mask=live, other=0).to(ACC)
    alpha = tl.load(consts_ptr + PER_KEY + K + keys, mask=live, other=0).to(ACC)
    if PAPER:  # shifted rewards s = r - m + delta have the raw std
        cv = std / (tl.abs(mean - reward_min + delta) + delta)
    else:
        cv = std / (tl.abs(mean - reward_min) + official_eps)
    cv = tl.where(live, cv, 0)
    cv_sum = tl.sum(cv, axis=0)
    ones = tl.full((BLOCK_K,), 1, ACC)
    if not DYNAMIC:
        weights = ones
    elif PAPER:
        share = tl.where(cv_sum < delta, ones / K, cv / tl.maximum(cv_sum, delta))
        weights = share * K if GDPO else share
    else:
        weights = K * cv / (cv_sum + official_eps)
    tl.store(summary_ptr + 0 * K + keys, weights, mask=live)
    tl.store(summary_ptr + 1 * K + keys, cv, mask=live)
    tl.store(summary_ptr + 2 * K + keys, mean, mask=live)
    tl.store(summary_ptr + 3 * K + keys, std, mask=live)
    tl.store(summary_ptr + 4 * K + keys, weights * alpha, mask=live)


def batch_weights(rewards: torch.Tensor, consts: torch.Tensor, mode: str, preset: str, dynamic: bool) -> torch.Tensor:
    """rewards (N, K) float, consts from common.device_constants -> summary (5, K) float64, rows SUMMARY_ROWS."""
    n, k = rewards.shape
    summary = torch.empty(len(SUMMARY_ROWS), k, dtype=torch.float64, device=rewards.device)
    block_n, block_k = block_sizes(k)
    _batch_weights_kernel[(1,)](
        rewards, rewards.stride(0), rewards.stride(1), consts, summary, n, k,
        ACC=tl_dtype(accumulator(rewards.dtype)), BLOCK_N=block_n, BLOCK_K=block_k,
        PAPER=preset == "paper", DYNAMIC=dynamic, GDPO=mode == "gdpo",
        num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    return summary
