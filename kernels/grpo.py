"""SAW GRPO (docs/spec.md Step 1 + Step 2a) in 3 launches: torch.sort of the group ids, _grpo_stats_kernel,
_grpo_write_kernel. Float64 reference: saw_verl.reference.reference_saw_advantages (mode "grpo").

The group z-scores are those of R(j) = sum_k c_k r_k(j), with c = weight * alpha known only once the batch
statistics are complete, at the end of the statistics launch. So the statistics kernel reduces each group
without c: per piece (the part of a group inside one block of BLOCK_S sorted positions) it stores the moments
of the rewards about the group's first sorted row, its representative `rep`:
  y(j) = r(j) - r(rep)   (K,);   S = sum_j y(j)   (K,);   Q = sum_j y(j) y(j)^T   (K, K)
at the piece's last sorted position: moments (N, K + K * K) float64, S then Q row by row. The write kernel
knows c; it adds the pieces of a row's group in block order (a fixed order: same bits every run) and takes
  R(j) - mean_R = c.y(j) - c.S / n;   M2_R = sum_j (R(j) - mean_R)^2 = c^T Q c - (c.S)^2 / n.
Shifting by a member of the group keeps the cancellation in M2_R below a factor n (rep's own deviation is part
of M2_R); the statistics are float64 whatever the rewards' dtype.

Constant groups (docs/spec.md: exactly 0): a key constant in the group has y = 0 on every row, so Q_kk == 0 exactly (a
sum of squares); a group whose keys with c_k != 0 all have Q_kk == 0 gets exactly 0. A group whose weighted sum
is constant while its keys vary gets c.y(j) - c.S / n, exactly 0 when those products and sums are exact (e.g.
complementary 0/1 keys with equal weights), else rounding noise over (std + eps) (the reference's max == min of
the rounded R(j) draws the same line at rounding level).

Bytes per token, e = mask element size: e + 4 (read the mask once, write float32 once: the floor).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    DEFAULT_VARIANT, EPSILON, PARTIAL_STATS, STATS_WARPS, WRITE_WARPS, batch_summary, block_partials, bound,
    geometry, load_rewards, multiprocessors, run_flags, search_shape, store_summary, store_tile,
)


@triton.jit
def _segmented_sum(fa, sa, fb, sb):
    """Scan step over (starts a run, running sum): b restarts the sum where it starts a run."""
    return fa | fb, tl.where(fb, sb, sa + sb)


@triton.jit
def store_moments(y, starts, ends, moments_ptr, positions, keys, K):
    """y (BLOCK_S, BLOCK_K) float64 = r(j) - r(rep) at sorted positions (0 outside); starts / ends (BLOCK_S,):
    the runs of this block. Stores each piece's S and Q at its last position: moments (N, K + K * K)."""
    flags = tl.broadcast_to(starts[:, None], y.shape)
    keep = ends[:, None] & (keys < K)[None, :]
    base = moments_ptr + positions[:, None] * (K + K * K) + keys[None, :]
    _, sums = tl.associative_scan((flags, y), axis=0, combine_fn=_segmented_sum)
    tl.store(base, sums, mask=keep)
    key = 0
    while key < K:
        column = tl.sum(tl.where(keys[None, :] == key, y, 0), axis=1)
        _, products = tl.associative_scan((flags, column[:, None] * y), axis=0, combine_fn=_segmented_sum)
        tl.store(base + K + key * K, products, mask=keep)
        key += 1


@triton.jit
def summed_zscores(rewards_ptr, stride_n, stride_k, order_ptr, moments_ptr, rows, inside, first, stop, coef, keys,
                   K, epsilon, NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr):
    """(R,) float64 group z-scores of R(j) = sum_k coef_k r_k(j) for `rows` (inside: (R,) bool), whose group is
    the sorted run [first, stop). docs/spec.md, Conventions: a single-rollout group gives R / (1 + eps) (verl: mean 0,
    std 1), a constant group exactly 0; NORM_BY_STD False skips the division by (std + eps)."""
    stop = tl.where(inside, stop, first + 1)  # rows outside the batch: a harmless one-row group
    count = (stop - first).to(tl.float64)
    live = (keys < K)[None, :]
    x = load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K)
    rep = tl.load(order_ptr + first, mask=inside, other=0)
    y = x - load_rewards(rewards_ptr, stride_n, stride_k, rep, inside, keys, K)
    first_block = first // BLOCK_S
    span = (stop - 1) // BLOCK_S - first_block + 1
    widest = tl.max(span, axis=0)
    sums = tl.zeros(x.shape, tl.float64)  # S
    squares = tl.zeros(x.shape, tl.float64)  # diagonal of Q
    quadratic = tl.zeros(count.shape, tl.float64)  # c^T Q c
    step = 0
    while step < widest:
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        take = (inside & (step < span))[:, None] & live
        base = moments_ptr + (end - 1)[:, None] * (K + K * K)
        sums += tl.load(base + keys[None, :], mask=take, other=0)
        squares += tl.load(base + K + keys[None, :] * (K + 1), mask=take, other=0)
        if NORM_BY_STD:  # only the std needs the off-diagonal moments
            key = 0
            while key < K:
                q_row = tl.load(base + K + key * K + keys[None, :], mask=take, other=0)
                quadratic += tl.sum(tl.where(keys == key, coef, 0), axis=0) * tl.sum(q_row * coef[None, :], axis=1)
                key += 1
        step += 1
    weighted_sum = tl.sum(sums * coef[None, :], axis=1)  # c.S
    deviation = tl.sum(y * coef[None, :], axis=1) - weighted_sum / count
    varying = tl.max(tl.where(live & (coef != 0)[None, :] & (squares > 0), 1, 0), axis=1) > 0
    summed = tl.sum(x * coef[None, :], axis=1)
    if NORM_BY_STD:
        m2 = tl.maximum(quadratic - weighted_sum * weighted_sum / count, 0)
        z = deviation / (tl.sqrt(m2 / tl.maximum(count - 1, 1)) + epsilon)
        single = summed / (1 + epsilon)
    else:
        z = deviation
        single = summed
    return tl.where(count == 1, single, tl.where(varying, z, 0))


@triton.jit(do_not_specialize=["N", "K", "P"])  # sizes: no recompile per batch
def _grpo_stats_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, moments_ptr, bounds_ptr, N, K, P,
    BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr, WAYS: tl.constexpr, STEPS: tl.constexpr,
):
    """Program p, a block of BLOCK_S sorted positions: the block partials (common.block_partials), the moments
    of its group pieces (store_moments) and each row's group run [first, stop) of sorted positions into
    bounds (2, N) int64."""
    positions, inside, rows, keys, x = block_partials(
        rewards_ptr, stride_n, stride_k, order_ptr, partials_ptr, bad_ptr, N, K, P, tl.program_id(0), BLOCK_S,
        BLOCK_K)
    block_start = tl.program_id(0).to(tl.int64) * BLOCK_S
    ids, starts, ends = run_flags(sorted_ptr, positions, inside, block_start, N, BLOCK_S)
    first = bound(sorted_ptr, ids, N, False, WAYS, STEPS)
    rep = tl.load(order_ptr + first, mask=inside, other=0)
    y = x - load_rewards(rewards_ptr, stride_n, stride_k, rep, inside, keys, K)
    store_moments(y, starts, ends, moments_ptr, positions, keys, K)
    tl.store(bounds_ptr + rows, first, mask=inside)
    tl.store(bounds_ptr + N + rows, bound(sorted_ptr, ids, N, True, WAYS, STEPS), mask=inside)


@triton.jit(do_not_specialize=["N", "K", "P", "COLUMN_SPAN"])  # sizes: no recompile per batch (L is: alignment)
def _grpo_write_kernel(
    mask_ptr, stride_n, stride_l, out_ptr, status_ptr, consts_ptr, N, K, L, P, COLUMN_SPAN,
    rewards_ptr, reward_stride_n, reward_stride_k, order_ptr, partials_ptr, bad_ptr, summary_ptr, moments_ptr,
    bounds_ptr,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr,
):
    """Grid (row programs, column programs). Each program merges the batch partials once (program (0, 0) stores
    the summary (5, K) and status[0]); then for row blocks b = program_id(0), + row programs, ... it takes
    the BLOCK_R rows' z-scores from the moments (summed_zscores) and writes out[rows, t] = z * mask[rows, t]
    float32 for t in [program_id(1) * COLUMN_SPAN, + COLUMN_SPAN) in (BLOCK_R, BLOCK_C) tiles. Nothing is
    written when a reward is not finite."""
    keys = tl.arange(0, BLOCK_K)
    weights, cv, mean, std, coef, first_bad = batch_summary(
        partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER, DYNAMIC, False, BLOCK_K, BLOCK_S)
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad)
    good = first_bad >= N * K
    epsilon = tl.load(consts_ptr + EPSILON)
    column_start = tl.program_id(1).to(tl.int64) * COLUMN_SPAN
    column_stop = tl.minimum(column_start + COLUMN_SPAN, L)
    block = tl.program_id(0).to(tl.int64)
    while block * BLOCK_R < N:
        rows = block * BLOCK_R + tl.arange(0, BLOCK_R)
        inside = rows < N
        first = tl.load(bounds_ptr + rows, mask=inside, other=0)
        stop = tl.load(bounds_ptr + N + rows, mask=inside, other=1)
        z = summed_zscores(rewards_ptr, reward_stride_n, reward_stride_k, order_ptr, moments_ptr, rows, inside, first,
                           stop, coef, keys, K, epsilon, NORM_BY_STD, BLOCK_S).to(tl.float32)
        start = column_start
        while start < column_stop:
            # start is a multiple of BLOCK_C: the loads and stores can be vectorized
            cols = tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK_C), BLOCK_C), BLOCK_C)
            take = inside[:, None] & (cols < column_stop)[None, :]
            m = tl.load(mask_ptr + rows[:, None] * stride_n + cols[None, :] * stride_l, mask=take, other=0,
                        eviction_policy="evict_first")
            store_tile(out_ptr, rows, cols, L, take, z[:, None] * m.to(tl.float32), good)
            start += BLOCK_C
        block += tl.num_programs(0)


def grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, constants: torch.Tensor,
    preset: str, dynamic: bool, norm_by_std: bool, variant: str = DEFAULT_VARIANT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards (N, K) float (any float dtype / strides), group_ids (N,) integer (any values, unsorted),
    response_mask (N, L) any dtype / strides, constants (4 + 2K,) float64 (common.constants_vector); one
    device, shapes checked, N >= 2. variant: one of common.VARIANTS (the launch geometry, common.geometry).

    Returns (advantages (N, L) float32, summary (5, K) float64 rows weights / cv / mean / std / coef,
    status (1,) float64: the first non-finite reward as row * K + key, N * K if none). Read the status
    before trusting the rest. No host sync, no torch op besides the sort; outputs are torch.empty.
    """
    n, k = rewards.shape
    length = response_mask.shape[1]
    device = rewards.device
    f64 = dict(dtype=torch.float64, device=device)
    block_k = triton.next_power_of_2(k)
    shape = geometry(variant, n, length, block_k, multiprocessors(device))
    ways, steps = search_shape(n, shape.block_s)
    sorted_ids, order = torch.sort(group_ids, stable=True)
    partials = torch.empty(PARTIAL_STATS, shape.stats_programs, k, **f64)
    bad = torch.empty(shape.stats_programs, dtype=torch.int64, device=device)
    moments = torch.empty(n, k + k * k, **f64)
    bounds = torch.empty(2, n, dtype=torch.int64, device=device)
    summary = torch.empty(5, k, **f64)
    status = torch.empty(1, **f64)
    advantages = torch.empty(n, length, dtype=torch.float32, device=device)
    unfused = dict(enable_fp_fusion=False)  # no fma contraction: every kernel rounds a * b + c the same way
    reward_args = (rewards, rewards.stride(0), rewards.stride(1))
    _grpo_stats_kernel[(shape.stats_programs,)](
        *reward_args, sorted_ids, order, partials, bad, moments, bounds, n, k, shape.stats_programs,
        BLOCK_S=shape.block_s, BLOCK_K=block_k, WAYS=ways, STEPS=steps, num_warps=STATS_WARPS, **unfused,
    )
    _grpo_write_kernel[(shape.row_programs, shape.column_programs)](
        response_mask, response_mask.stride(0), response_mask.stride(1), advantages, status, constants,
        n, k, length, shape.stats_programs, shape.column_span, *reward_args, order, partials, bad, summary, moments,
        bounds, PAPER=preset == "paper", DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, BLOCK_R=shape.block_r,
        BLOCK_C=shape.block_c, BLOCK_K=block_k, BLOCK_S=shape.block_s, num_warps=WRITE_WARPS, **unfused,
    )
    return advantages, summary, status
