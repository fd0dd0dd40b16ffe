"""SAW GDPO (docs/spec.md Step 1 + Step 2b) in three launches, plus torch.sort of the group ids unless the caller
says they are non-decreasing: _gdpo_stats_kernel -> S (N,) float64 and the token counts n (N,), _gdpo_whiten_kernel
-> v (N,) float32, then common._write_kernel out = v * mask. Float64 reference: naive.naive_gdpo.

Bytes per token, e = mask element size: 2e + 4 (the mask read by the token count and by the write, float32
written once).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    STATS_WARPS, TOKENS, UNSORTED_AT, WHITEN_EPS, allocate, condition_levels, plan, results, vector_rows,
    workspace_regions, write_advantages,
)
from .statistics import chunk_moments, group_zscores, merge_moments, step1


@triton.jit
def count_tokens(mask_ptr, stride_n, stride_l, tokens_ptr, N, L, tile, FLOAT_MASK: tl.constexpr,
                 ROWS: tl.constexpr, COLS: tl.constexpr):
    """tokens[j] = sum_t mask[j, t] (float64) for rows j in [tile * ROWS, + ROWS): a stream over the mask in
    (ROWS, COLS) tiles; each row's sum stays inside its warp (COLS spans at most 32 threads)."""
    if mask_ptr.dtype.element_ty == tl.int1:  # summed as the bytes they are
        mask_ptr = mask_ptr.to(tl.pointer_type(tl.uint8))
    rows = tile.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    inside = rows < N
    cols = tl.arange(0, COLS)
    total = tl.zeros((ROWS,), tl.float64 if FLOAT_MASK else tl.int32)
    row_ptr = mask_ptr + rows[:, None] * stride_n
    m = tl.load(row_ptr + cols[None, :] * stride_l, mask=inside[:, None] & (cols < L)[None, :], other=0)
    start = 0
    while start < L:  # the next tile's loads are issued before this tile is summed
        ahead = start + COLS + cols
        following = tl.load(row_ptr + ahead[None, :] * stride_l, mask=inside[:, None] & (ahead < L)[None, :], other=0)
        total += tl.sum(m.to(total.dtype), 1)
        m = following
        start += COLS
    tl.store(tokens_ptr + rows, total.to(tl.float64), mask=inside)


@triton.jit(do_not_specialize=["N", "K", "BLOCK", "PROGRAMS"])  # sizes: no recompile per batch (L is: alignment)
def _gdpo_stats_kernel(
    rewards_ptr, stride_n, stride_k, ids_ptr, order_ptr, consts_ptr, ws_ptr, pool_ptr, pool_out_ptr, mask_ptr,
    mask_stride_n, mask_stride_l, N, K, L, BLOCK, PROGRAMS,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, SORTED: tl.constexpr, HISTORY: tl.constexpr,
    LEVELS: tl.constexpr, BATCH_CHUNK: tl.constexpr, GROUP_CHUNK: tl.constexpr, BLOCK_K: tl.constexpr,
    FLOAT_MASK: tl.constexpr, TOKEN_ROWS: tl.constexpr, TOKEN_COLS: tl.constexpr,
):
    """Programs p < PROGRAMS: Step 1 (program 0 stores the summary and the first non-finite reward), then
    S(j) = sum_k w_k alpha_k z(r_k)(j) (N,) float64 for the rows of the runs that start in sorted positions
    [p * BLOCK, (p + 1) * BLOCK), and status word UNSORTED_AT + p as in grpo. Programs from PROGRAMS: the token
    counts n (N,) float64 of TOKEN_ROWS rows each (count_tokens). LEVELS: the rounds of the conditions
    (statistics.condition), 0 without."""
    _, status, summary, scratch, scores = workspace_regions(ws_ptr, N, K, PROGRAMS, BLOCK_K)
    program = tl.program_id(0)
    if program < PROGRAMS:
        coef = step1(rewards_ptr, stride_n, stride_k, consts_ptr, status, summary, pool_ptr, pool_out_ptr, N, K,
                     PAPER, DYNAMIC, HISTORY, LEVELS, BATCH_CHUNK, BLOCK_K)
        flags = group_zscores(rewards_ptr, stride_n, stride_k, ids_ptr, order_ptr, consts_ptr, scores, scratch,
                              coef, N, K, BLOCK, NORM_BY_STD, SORTED, True, LEVELS, GROUP_CHUNK, BLOCK_K)
        tl.store(status + UNSORTED_AT + program, flags.to(tl.float64))
    else:
        count_tokens(mask_ptr, mask_stride_n, mask_stride_l, scores + N, N, L, program - PROGRAMS, FLOAT_MASK,
                     TOKEN_ROWS, TOKEN_COLS)


@triton.jit(do_not_specialize=["N", "K", "BLOCK", "PROGRAMS"])
def _gdpo_whiten_kernel(consts_ptr, ws_ptr, N, K, BLOCK, PROGRAMS, CHUNK: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md Step 2b's token-weighted whitening. Every program merges (n_j, S_j) over the whole batch in
    row order (the same bits in each; program 0 stores M in the status), then writes v = (S - mean) /
    sqrt(var + 1e-8) (N,) float32 for rows [p * BLOCK, (p + 1) * BLOCK)."""
    values, status, _, _, scores = workspace_regions(ws_ptr, N, K, PROGRAMS, BLOCK_K)
    tokens = scores + N
    steps = tl.arange(0, CHUNK)
    total = tl.zeros((), tl.float64)
    mean = tl.zeros((), tl.float64)
    m2 = tl.zeros((), tl.float64)
    n = tl.load(tokens + steps, mask=steps < N, other=0)
    s = tl.load(scores + steps, mask=steps < N, other=0)
    start = 0
    while start < N:  # the next step's loads are issued before this step is summarised
        ahead = start + CHUNK + steps < N
        following_n = tl.load(tokens + start + CHUNK + steps, mask=ahead, other=0)
        following_s = tl.load(scores + start + CHUNK + steps, mask=ahead, other=0)
        total, mean, m2 = merge_moments(total, mean, m2, *chunk_moments(n, s))
        n, s = following_n, following_s
        start += CHUNK
    scale = tl.sqrt(m2 / tl.maximum(total - 1, 1) + tl.load(consts_ptr + WHITEN_EPS))
    if tl.program_id(0) == 0:
        tl.store(status + TOKENS, total)
    start = tl.program_id(0).to(tl.int64) * BLOCK
    stop = tl.minimum(start + BLOCK, N)
    while start < stop:
        rows = start + steps
        own = rows < stop
        tl.store(values + rows, ((tl.load(scores + rows, mask=own, other=0) - mean) / scale).to(tl.float32), mask=own)
        start += CHUNK


def gdpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, constants: torch.Tensor,
    preset: str, dynamic: bool, norm_by_std: bool, ids_sorted: bool = False, pool: torch.Tensor | None = None,
    pool_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAW GDPO advantages on the inputs' device, no host sync.

    Args:
        rewards: (N, K) float, any float dtype and strides; N >= 2.
        group_ids: (N,) integer, any values; ids_sorted: the caller says they are non-decreasing (no sort; checked).
        response_mask: (N, L), L >= 1, any dtype and strides.
        constants: (5 + (2 + 3 levels) K,) float64 on the device (common.constants_vector): the levels of
            conditions it holds (common.condition_levels, 0: none) gate the rewards wherever the kernels read them.
        preset: "paper" or "official"; dynamic, norm_by_std: docs/spec.md Step 1 / Conventions.
        pool, pool_out: as grpo.grpo_advantages.
    Returns:
        advantages (N, L) float32; summary (common.SUMMARY_ROWS, K) float64 rows weights / cv / mean / std /
        batch_cv, then (levels > 0) gated_fraction; status words float64
        (common: FIRST_BAD, TOKENS = M, BELOW_MIN_KEY / _VALUE, then from UNSORTED_AT one word per
        statistics program, bits UNSORTED and OWNS_A_GROUP). Read the status
        before trusting the rest: a descent means ids_sorted was wrong, M < 2 that the whitening is undefined.
    """
    n, k = rewards.shape
    levels = condition_levels(constants, k)
    length = response_mask.shape[1]
    shape = plan(n, length, k, response_mask.element_size(), True, vector_rows(response_mask))
    workspace, advantages, ids, order = allocate(rewards, group_ids, response_mask, shape, ids_sorted)
    _gdpo_stats_kernel[(shape.programs + shape.token_programs,)](
        rewards, rewards.stride(0), rewards.stride(1), ids, order, constants, workspace, pool, pool_out, response_mask,
        response_mask.stride(0), response_mask.stride(1), n, k, length, shape.block, shape.programs,
        PAPER=preset == "paper", DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, SORTED=ids_sorted, HISTORY=pool is not None,
        LEVELS=levels, BATCH_CHUNK=shape.batch_chunk, GROUP_CHUNK=shape.group_chunk, BLOCK_K=shape.block_k,
        FLOAT_MASK=response_mask.dtype.is_floating_point, TOKEN_ROWS=shape.token_rows, TOKEN_COLS=shape.token_cols,
        num_warps=STATS_WARPS, enable_fp_fusion=False,
    )
    _gdpo_whiten_kernel[(shape.programs,)](
        constants, workspace, n, k, shape.block, shape.programs, CHUNK=shape.row_chunk, BLOCK_K=shape.block_k,
        num_warps=STATS_WARPS, enable_fp_fusion=False,
    )
    write_advantages(workspace, response_mask, advantages, shape)
    return results(workspace, advantages, shape, k, levels > 0)
