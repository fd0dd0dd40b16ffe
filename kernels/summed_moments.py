"""GRPO's group z-scores of R(j) = sum_k c_k r_k(j), with c known only after the batch statistics.

The weights c come from the batch statistics, complete only when stage 1 ends. So stage 1 reduces each group
without c: per piece (the part of a group inside one block of BLOCK_S sorted positions) it stores the moments
of the rewards about the group's first sorted row, its representative `rep`:
  y(j) = r(j) - r(rep)   (K,);   S = sum_j y(j)   (K,);   Q = sum_j y(j) y(j)^T   (K, K)
at the piece's last sorted position: moments (N, K + K * K) float64, S then Q row by row. The write pass knows
c; it adds the pieces of a row's group in block order (a fixed order: same bits every run) and takes
  R(j) - mean_R = c.y(j) - c.S / n;   M2_R = sum_j (R(j) - mean_R)^2 = c^T Q c - (c.S)^2 / n.
Shifting by a member of the group keeps the cancellation in M2_R below a factor n (rep's own deviation is part
of M2_R); the statistics are float64 whatever the rewards' dtype.

Constant groups (spec: exactly 0): a key constant in the group has y = 0 on every row, so Q_kk == 0 exactly (a
sum of squares); a group whose keys with c_k != 0 all have Q_kk == 0 gets exactly 0. A group whose weighted sum
is constant while its keys vary gets c.y(j) - c.S / n, exactly 0 when those products and sums are exact (e.g.
complementary 0/1 keys with equal weights), else rounding noise over (std + eps) (the reference's max == min of
the rounded R(j) draws the same line at rounding level). Readable reference: saw_verl.reference.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import load_rewards


@triton.jit
def _segmented_sum(fa, sa, fb, sb):
    """Scan step over (starts a run, running sum): b restarts the sum where it starts a run."""
    return fa | fb, tl.where(fb, sb, sa + sb)


@triton.jit
def store_moments(y, starts, ends, moments_ptr, positions, keys, K):
    """y (BLOCK_S, BLOCK_K) float64 = r(j) - r(rep) at sorted positions (0 outside); starts / ends: the runs of
    this block. Stores each piece's S and Q at its last position: moments (N, K + K * K)."""
    flags = tl.broadcast_to(starts[:, None], y.shape)
    keep = ends[:, None] & (keys < K)[None, :]
    base = moments_ptr + positions[:, None] * (K + K * K) + keys[None, :]
    _, sums = tl.associative_scan((flags, y), axis=0, combine_fn=_segmented_sum)
    tl.store(base, sums, mask=keep)
    for key in range(0, K):
        column = tl.sum(tl.where(keys[None, :] == key, y, 0), axis=1)
        _, products = tl.associative_scan((flags, column[:, None] * y), axis=0, combine_fn=_segmented_sum)
        tl.store(base + K + key * K, products, mask=keep)


@triton.jit
def summed_zscores(rewards_ptr, stride_n, stride_k, order_ptr, moments_ptr, rows, inside, first, stop, coef, keys,
                   K, epsilon, NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr):
    """(R,) float64 group z-scores of R(j) = sum_k coef_k r_k(j) for `rows` (inside: (R,) bool), whose group is
    the sorted run [first, stop). Spec conventions: a single-rollout group gives R / (1 + eps) (verl: mean 0,
    std 1), a constant group exactly 0; NORM_BY_STD False skips the division by (std + eps)."""
    stop = tl.where(inside, stop, first + 1)  # rows outside the batch: a harmless one-row group
    count = (stop - first).to(tl.float64)
    live = (keys < K)[None, :]
    x = load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K)
    rep = tl.load(order_ptr + first, mask=inside, other=0)
    y = x - load_rewards(rewards_ptr, stride_n, stride_k, rep, inside, keys, K)
    first_block = first // BLOCK_S
    span = (stop - 1) // BLOCK_S - first_block + 1
    sums = tl.zeros(x.shape, tl.float64)  # S
    squares = tl.zeros(x.shape, tl.float64)  # diagonal of Q
    quadratic = tl.zeros(count.shape, tl.float64)  # c^T Q c
    for step in range(0, tl.max(span, axis=0)):
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        take = (inside & (step < span))[:, None] & live
        base = moments_ptr + (end - 1)[:, None] * (K + K * K)
        sums += tl.load(base + keys[None, :], mask=take, other=0)
        squares += tl.load(base + K + keys[None, :] * (K + 1), mask=take, other=0)
        if NORM_BY_STD:  # only the std needs the off-diagonal moments
            for key in range(0, K):
                q_row = tl.load(base + K + key * K + keys[None, :], mask=take, other=0)
                quadratic += tl.sum(tl.where(keys == key, coef, 0), axis=0) * tl.sum(q_row * coef[None, :], axis=1)
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
