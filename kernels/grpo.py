"""SAW GRPO (docs/spec.md Step 1 + Step 2a) in two launches, plus torch.sort of the group ids unless the caller
says they are non-decreasing: _grpo_stats_kernel -> v (N,) float32, then common._write_kernel out = v * mask.
Float64 reference: naive.naive_grpo.

Every statistics program computes Step 1 from the whole batch (the same bits in each), so the weighted sum
R(j) = sum_k w_k alpha_k r_k(j) is known in each; it then z-scores R within the groups it owns
(common.group_zscores). Bytes per token, e = mask element size: e + 4 (the mask read once, float32 written once).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    STATS_WARPS, UNSORTED_AT, allocate, condition_levels, plan, results, workspace_regions, write_advantages,
)
from .statistics import group_zscores, step1


@triton.jit(do_not_specialize=["N", "K", "BLOCK"])  # sizes: no recompile per batch
def _grpo_stats_kernel(
    rewards_ptr, stride_n, stride_k, ids_ptr, order_ptr, consts_ptr, ws_ptr, pool_ptr, pool_out_ptr, N, K, BLOCK,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, SORTED: tl.constexpr,
    HISTORY: tl.constexpr, LEVELS: tl.constexpr, BATCH_CHUNK: tl.constexpr, GROUP_CHUNK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Program p: Step 1 (program 0 stores the summary and the first non-finite reward), then v = z(R) (N,) float32
    for the rows of the runs that start in sorted positions [p * BLOCK, (p + 1) * BLOCK); status word
    UNSORTED_AT + p: the bits UNSORTED (the ids it read descend; SORTED: the caller's order was wrong) and
    OWNS_A_GROUP. LEVELS: the rounds of the conditions (statistics.condition), 0 without."""
    values, status, summary, scratch, _ = workspace_regions(ws_ptr, N, K, tl.num_programs(0), 1)
    coef = step1(rewards_ptr, stride_n, stride_k, consts_ptr, status, summary, pool_ptr, pool_out_ptr, N, K, PAPER,
                 DYNAMIC, HISTORY, LEVELS, BATCH_CHUNK, BLOCK_K)
    flags = group_zscores(rewards_ptr, stride_n, stride_k, ids_ptr, order_ptr, consts_ptr, values, scratch, coef,
                          N, K, BLOCK, NORM_BY_STD, SORTED, False, LEVELS, GROUP_CHUNK, BLOCK_K)
    tl.store(status + UNSORTED_AT + tl.program_id(0), flags.to(tl.float64))


def grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, constants: torch.Tensor,
    preset: str, dynamic: bool, norm_by_std: bool, ids_sorted: bool = False, pool: torch.Tensor | None = None,
    pool_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAW GRPO advantages on the inputs' device, no host sync.

    Args:
        rewards: (N, K) float, any float dtype and strides; N >= 2.
        group_ids: (N,) integer, any values; ids_sorted: the caller says they are non-decreasing (no sort; checked).
        response_mask: (N, L), any dtype and strides.
        constants: (5 + (2 + 3 levels) K,) float64 on the device (common.constants_vector): the levels of
            conditions it holds (common.condition_levels, 0: none) gate the rewards wherever the kernels read them.
        preset: "paper" or "official"; dynamic, norm_by_std: docs/spec.md Step 1 / Conventions.
        pool, pool_out: a history pool (common.POOL_ROWS, K) float64 on the device, and where the pool with this
            batch merged in is written (same shape); None: this batch alone (docs/spec.md, "History").
    Returns:
        advantages (N, L) float32; summary (common.SUMMARY_ROWS, K) float64 rows weights / cv / mean / std /
        batch_cv, then (levels > 0) gated_fraction; status words float64
        (common: FIRST_BAD, BELOW_MIN_KEY / _VALUE, then from UNSORTED_AT one word per statistics
        program, bits UNSORTED and OWNS_A_GROUP).
        Read the status before trusting the rest: a descent means ids_sorted was wrong, so is everything else.
    """
    n, k = rewards.shape
    levels = condition_levels(constants, k)
    shape = plan(n, response_mask.shape[1], k, response_mask.element_size(), False)
    workspace, advantages, ids, order = allocate(rewards, group_ids, response_mask, shape, ids_sorted)
    _grpo_stats_kernel[(shape.programs,)](
        rewards, rewards.stride(0), rewards.stride(1), ids, order, constants, workspace, pool, pool_out, n, k,
        shape.block, PAPER=preset == "paper", DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, SORTED=ids_sorted,
        HISTORY=pool is not None, LEVELS=levels,
        BATCH_CHUNK=shape.batch_chunk, GROUP_CHUNK=shape.group_chunk, BLOCK_K=shape.block_k,
        num_warps=STATS_WARPS, enable_fp_fusion=False,
    )
    write_advantages(workspace, response_mask, advantages, shape)
    return results(workspace, advantages, shape, k, levels > 0)
