"""What the SAW kernels share: the constants layout, group bounds by binary search, Chan merges.

A leaf: imports torch and triton only (nothing of saw_verl). Every statistic is accumulated in float64,
whatever the rewards' dtype: the (N, K) work is tiny next to the (N, L) pass, and float64 keeps the
statistics within ~1e-12 of the float64 reference for fp64 / fp32 / bf16 / fp16 rewards alike.

Groups: the caller sorts the group ids (any int64 values) once. A group is a run [s, e) of equal ids
in the sorted order, found by binary search; no array is ever sized by an id value. Each block of
BLOCK_S sorted positions stores, at the last position of every run it holds, that piece's
(mean, M2, max, min) per key ("pieces", from a segmented scan; GRPO stores moments instead,
summed_moments.py); a group's statistics merge its pieces in block order, so a group of any size is
reduced in parallel, in a fixed order, without atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Layout of the float64 constants vector (built once per configuration and device by the caller):
# 4 scalars, then reward_min (K), then static weights alpha (K). float64 so 1e-8 arrives exactly.
DELTA = tl.constexpr(0)
EPSILON = tl.constexpr(1)
OFFICIAL_EPS_AT = tl.constexpr(2)
WHITEN_EPS_AT = tl.constexpr(3)
PER_KEY = tl.constexpr(4)
BLOCK_S = 512  # sorted positions per program of the statistics kernels (one piece block)
SMALL_BLOCK_S = 64  # ... for batches of at most 64 rows
FINAL_BLOCK = 256  # partials merged per step when a kernel finalises a two-stage reduction
PIECE_STATS = 4  # mean, M2, max, min


def constants_vector(delta: float, epsilon: float, official_eps: float, whiten_eps: float,
                     reward_min, static_weights) -> list[float]:
    """The values of the constants vector, in layout order (the caller makes the device tensor)."""
    return [delta, epsilon, official_eps, whiten_eps, *reward_min, *static_weights]


def search_steps(n: int) -> int:
    """Bisection steps that narrow any range [0, n] to one point."""
    return max(1, n.bit_length() + 1)


@triton.jit
def load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K):
    """(R, BLOCK_K) rewards of `rows` as float64, 0 outside."""
    take = inside[:, None] & (keys < K)[None, :]
    return tl.load(rewards_ptr + rows[:, None] * stride_n + keys[None, :] * stride_k, mask=take, other=0).to(tl.float64)


@triton.jit
def bound(sorted_ptr, key, N, STEPS, UPPER: tl.constexpr):
    """First index in sorted[0:N] whose value is > key (UPPER) or >= key; key: a vector of ids."""
    low = tl.zeros(key.shape, tl.int64)
    high = low + N
    for _ in range(0, STEPS):
        active = low < high
        middle = (low + high) // 2
        value = tl.load(sorted_ptr + middle, mask=active, other=0)
        if UPPER:
            right = value <= key
        else:
            right = value < key
        low = tl.where(active & right, middle + 1, low)
        high = tl.where(active & ~right, middle, high)
    return low


@triton.jit
def _segmented_chan(fa, na, ma, qa, ha, la, fb, nb, mb, qb, hb, lb):
    """Scan step: (starts a run, count, mean, M2, max, min); b restarts the run where it starts one."""
    n = na + nb
    d = mb - ma
    mean = ma + d * (nb / n)
    m2 = qa + qb + d * d * (na * nb / n)
    return (fa | fb, tl.where(fb, nb, n), tl.where(fb, mb, mean), tl.where(fb, qb, m2),
            tl.where(fb, hb, tl.maximum(ha, hb)), tl.where(fb, lb, tl.minimum(la, lb)))


@triton.jit
def store_pieces(values, starts, ends, pieces_ptr, N, positions, cols, C):
    """values (BLOCK, C') float64 at sorted positions; starts/ends: run starts / last positions in this block.

    Stores each piece's (mean, M2, max, min) at its last position: pieces (PIECE_STATS, N, C).
    """
    flags = tl.broadcast_to(starts[:, None], values.shape)
    ones = tl.full(values.shape, 1.0, tl.float64)
    zeros = tl.zeros(values.shape, tl.float64)
    _, _, mean, m2, high, low = tl.associative_scan(
        (flags, ones, values, zeros, values, values), axis=0, combine_fn=_segmented_chan)
    where = positions[:, None] * C + cols[None, :]
    keep = ends[:, None] & (cols < C)[None, :]
    tl.store(pieces_ptr + where, mean, mask=keep)
    tl.store(pieces_ptr + N * C + where, m2, mask=keep)
    tl.store(pieces_ptr + 2 * N * C + where, high, mask=keep)
    tl.store(pieces_ptr + 3 * N * C + where, low, mask=keep)


@triton.jit
def run_flags(sorted_ptr, positions, inside, block_start, N, BLOCK_S: tl.constexpr):
    """(starts, ends) of the runs of equal ids within this block of sorted positions."""
    ids = tl.load(sorted_ptr + positions, mask=inside, other=0)
    before = tl.load(sorted_ptr + positions - 1, mask=inside & (positions > block_start), other=0)
    after = tl.load(sorted_ptr + positions + 1, mask=inside & (positions + 1 < N), other=0)
    block_end = block_start + BLOCK_S
    starts = (positions == block_start) | (ids != before) | ~inside
    ends = inside & ((positions + 1 == block_end) | (positions + 1 == N) | (ids != after))
    return ids, starts, ends


@triton.jit
def group_zscores(values, inside, first, stop, pieces_ptr, N, cols, C, epsilon,
                  NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr):
    """Group z-scores of values (R, C') for rows (inside (R,)) whose group is the sorted run [first, stop).

    Merges the group's pieces in block order (two passes: mean, then M2 about it). Spec conventions:
    a single-rollout group gives x / (1 + eps) (verl: mean 0, std 1), a constant group (max == min)
    exactly 0; NORM_BY_STD False skips the division by (std + eps).
    """
    stop = tl.where(inside, stop, first + 1)  # rows outside the batch: a harmless one-row group
    count = (stop - first).to(tl.float64)[:, None]
    first_block = first // BLOCK_S
    span = (stop - 1) // BLOCK_S - first_block + 1
    live = (cols < C)[None, :]
    total = tl.zeros(values.shape, tl.float64)
    high = tl.full(values.shape, float("-inf"), tl.float64)
    low = tl.full(values.shape, float("inf"), tl.float64)
    for step in range(0, tl.max(span, axis=0)):
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        n = end - tl.maximum((first_block + step) * BLOCK_S, first)
        take = (inside & (step < span))[:, None] & live
        where = (end - 1)[:, None] * C + cols[None, :]
        total += tl.where(take, n.to(tl.float64)[:, None], 0) * tl.load(pieces_ptr + where, mask=take, other=0)
        high = tl.maximum(high, tl.load(pieces_ptr + 2 * N * C + where, mask=take, other=float("-inf")))
        low = tl.minimum(low, tl.load(pieces_ptr + 3 * N * C + where, mask=take, other=float("inf")))
    mean = total / count
    squares = tl.zeros(values.shape, tl.float64)
    for step in range(0, tl.max(span, axis=0)):
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        n = end - tl.maximum((first_block + step) * BLOCK_S, first)
        take = (inside & (step < span))[:, None] & live
        where = (end - 1)[:, None] * C + cols[None, :]
        shift = tl.where(take, tl.load(pieces_ptr + where, mask=take, other=0) - mean, 0)
        moment = tl.load(pieces_ptr + N * C + where, mask=take, other=0)
        squares += moment + tl.where(take, n.to(tl.float64)[:, None], 0) * shift * shift
    if NORM_BY_STD:
        scale = tl.sqrt(squares / tl.maximum(count - 1, 1)) + epsilon
        single_scale = 1 + epsilon
    else:
        scale = tl.full(values.shape, 1.0, tl.float64)
        single_scale = 1.0
    z = tl.where(high == low, 0, (values - mean) / scale)
    return tl.where(count == 1, values / single_scale, z)
