"""What the GRPO and GDPO kernels share: the constants layout, the launch geometry of each variant, group bounds
by a many-way search, the block partials of the batch statistics and their merge (docs/spec.md Step 1), the tile store.

A leaf: imports torch and triton only (nothing of saw_verl). Every statistic is accumulated in float64,
whatever the rewards' dtype: the (N, K) work is tiny next to the (N, L) pass, and float64 keeps the
statistics within ~1e-12 of the float64 reference for fp64 / fp32 / bf16 / fp16 rewards alike.

Groups: the caller sorts the group ids (any int64 values) once. A group is a run [s, e) of equal ids in the
sorted order, found by search; no array is ever sized by an id value. Each block of BLOCK_S sorted positions
stores, at the last position of every run it holds, that piece's statistics; a group's statistics merge its
pieces in block order, so a group of any size is reduced in parallel, in a fixed order, without atomics.

Loops whose trip count is only known at run time are `while` loops: the interpreter of triton 3.6 turns
every runtime scalar into a shape-(1,) array, which `range()` cannot take.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# Layout of the float64 constants vector (built once per configuration and device by the caller):
# 4 scalars, then reward_min (K), then static weights alpha (K). float64 so 1e-8 arrives exactly.
DELTA = tl.constexpr(0)
EPSILON = tl.constexpr(1)
OFFICIAL_EPS_AT = tl.constexpr(2)
WHITEN_EPS_AT = tl.constexpr(3)
PER_KEY = tl.constexpr(4)

PARTIAL_STATS = 4  # sum, M2, max, min per key and block
FINAL_BLOCK = tl.constexpr(256)  # partials merged per step when a kernel finalises a two-stage reduction
SEARCH_PROBES = 2048  # probes per step of the group-bound search over a block of positions (registers)
MAX_SEARCH_WAYS = 16
STATS_WARPS = 8
WRITE_WARPS = 8

VARIANTS = ("persistent", "tiled")
DEFAULT_VARIANT = "persistent"
TILE = 8192  # tiled: mask elements a write program streams
MAX_BLOCK_C = 2048
TILED_ROWS = 16  # tiled: at most this many rows per write tile (short rows: no spills)
STREAM_TILE = 2048  # persistent: mask elements a write program streams per step
STREAM_ROWS = 8  # persistent: at most this many rows per write tile
ROW_KEYS = 1024  # GRPO: at most BLOCK_R * BLOCK_K float64 per (rows, keys) temporary
TILED_BLOCK_S, SMALL_BLOCK_S = 512, 64  # tiled: positions per statistics program (N <= 64: one small block)
MIN_BLOCK_S, MAX_BLOCK_S = 16, 512
WRITE_PROGRAMS_PER_SM = 2  # persistent: resident write programs per multiprocessor
INTERPRETER_MULTIPROCESSORS = 4  # what the persistent geometry assumes on a CPU (TRITON_INTERPRET=1)


def constants_vector(delta: float, epsilon: float, official_eps: float, whiten_eps: float,
                     reward_min, static_weights) -> list[float]:
    """The values of the constants vector, in layout order (the caller makes the device tensor)."""
    return [delta, epsilon, official_eps, whiten_eps, *reward_min, *static_weights]


def search_shape(n: int, block_s: int) -> tuple[int, int]:
    """(ways, steps) of the group-bound search for a block of block_s positions: up to MAX_SEARCH_WAYS probes
    per position and step, SEARCH_PROBES per block; steps such that ways^steps > n (any range [0, n] narrows
    to one point)."""
    ways = max(2, min(MAX_SEARCH_WAYS, SEARCH_PROBES // block_s))
    steps = 1
    while ways**steps <= n:
        steps += 1
    return ways, steps


@functools.lru_cache(maxsize=16)
def multiprocessors(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (a property read, no sync); INTERPRETER_MULTIPROCESSORS on CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return INTERPRETER_MULTIPROCESSORS


@dataclass(frozen=True)
class Geometry:
    """How one call is cut into programs.

    block_s / stats_programs: sorted positions per statistics program and their number P = ceil(N / block_s).
    block_r x block_c: the write tile; row_programs x column_programs: the write grid; column_span: tokens of a
    row one write program covers. A write program merges the batch partials once, then for each of its row
    blocks (block index = program, program + row_programs, ...) computes the rows' values once and streams
    value * mask over its column span in tiles.
    """

    block_s: int
    stats_programs: int
    block_r: int
    block_c: int
    row_programs: int
    column_programs: int
    column_span: int


def geometry(variant: str, n: int, length: int, block_k: int, sms: int) -> Geometry:
    """The launch geometry of `variant` for N rows of L tokens on a device with `sms` multiprocessors (block_k:
    the key block, 1 for GDPO's write).

    tiled: 512 positions per statistics program; one write program per tile of TILE tokens (up to 2048 of a
        row, up to TILED_ROWS rows), each with its own prologue (batch merge, the rows' values).
    persistent: statistics programs sized from N (about one per multiprocessor); at most
        WRITE_PROGRAMS_PER_SM write programs per multiprocessor, each streaming whole rows in tiles of
        STREAM_TILE tokens over up to STREAM_ROWS rows (tiles whose registers let several programs share a
        multiprocessor without spilling).
    """
    longest = min(MAX_BLOCK_C, max(16, triton.next_power_of_2(length)))
    if variant == "tiled":
        block_s = SMALL_BLOCK_S if n <= SMALL_BLOCK_S else TILED_BLOCK_S
        block_r = min(TILE // longest, TILED_ROWS, ROW_KEYS // block_k)
        return Geometry(block_s, triton.cdiv(n, block_s), block_r, longest, triton.cdiv(n, block_r),
                        max(1, triton.cdiv(length, longest)), longest)
    if variant != "persistent":
        raise ValueError(f"unknown kernel variant {variant!r}; expected one of {VARIANTS}")
    block_s = min(MAX_BLOCK_S, max(MIN_BLOCK_S, triton.next_power_of_2(triton.cdiv(n, sms))))
    programs = WRITE_PROGRAMS_PER_SM * sms
    block_r = min(STREAM_ROWS, triton.next_power_of_2(triton.cdiv(n, programs)))
    block_c = max(16, min(longest, STREAM_TILE // block_r))
    return Geometry(block_s, triton.cdiv(n, block_s), block_r, block_c, min(triton.cdiv(n, block_r), programs), 1,
                    max(1, length))


@triton.jit
def load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K):
    """(R, BLOCK_K) rewards of `rows` (R,) as float64, 0 outside."""
    take = inside[:, None] & (keys < K)[None, :]
    return tl.load(rewards_ptr + rows[:, None] * stride_n + keys[None, :] * stride_k, mask=take, other=0).to(tl.float64)


@triton.jit
def bound(sorted_ptr, key, N, UPPER: tl.constexpr, WAYS: tl.constexpr, STEPS: tl.constexpr):
    """(R,) first index in sorted[0:N] whose value is > key (UPPER) or >= key, for a vector of ids key (R,).

    Each step probes WAYS evenly spaced positions of the range [low, high] that holds the answer and keeps the
    stretch between the last probe on the left of the answer and the first one on its right: the range shrinks
    by WAYS per step, STEPS dependent loads in all ((WAYS, STEPS) = search_shape(N, R)).
    """
    low = tl.zeros(key.shape, tl.int64)
    high = low + N
    ways = tl.arange(0, WAYS)
    for _ in range(0, STEPS):
        width = (high - low + WAYS - 1) // WAYS
        probes = low[:, None] + ways[None, :] * width[:, None]
        inside = probes < high[:, None]
        value = tl.load(sorted_ptr + probes, mask=inside, other=0)
        if UPPER:
            left = inside & (value <= key[:, None])
        else:
            left = inside & (value < key[:, None])
        count = tl.sum(left.to(tl.int64), axis=1)  # probes left of the answer: a prefix of the probes
        high = tl.minimum(low + count * width, high)
        low = tl.where(count > 0, low + (count - 1) * width + 1, low)
    return low


@triton.jit
def run_flags(sorted_ptr, positions, inside, block_start, N, BLOCK_S: tl.constexpr):
    """(ids, starts, ends) (BLOCK_S,): the sorted ids of this block, where its runs of equal ids start / end."""
    ids = tl.load(sorted_ptr + positions, mask=inside, other=0)
    before = tl.load(sorted_ptr + positions - 1, mask=inside & (positions > block_start), other=0)
    after = tl.load(sorted_ptr + positions + 1, mask=inside & (positions + 1 < N), other=0)
    block_end = block_start + BLOCK_S
    starts = (positions == block_start) | (ids != before) | ~inside
    ends = inside & ((positions + 1 == block_end) | (positions + 1 == N) | (ids != after))
    return ids, starts, ends


@triton.jit
def block_partials(rewards_ptr, stride_n, stride_k, order_ptr, partials_ptr, bad_ptr, N, K, P, program,
                   BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """Block `program` of BLOCK_S sorted positions: per key sum, M2 about the block mean, max, min into
    partials (4, P, K); the block's first non-finite reward as a flat index row * K + key (N * K if none) into
    bad (P,). Returns (positions, inside, rows, keys, x): the block's sorted positions (BLOCK_S,), which are in
    the batch, their rows, the key lanes (BLOCK_K,) and the rewards (BLOCK_S, BLOCK_K) float64 (0 outside)."""
    block_start = program.to(tl.int64) * BLOCK_S
    positions = block_start + tl.arange(0, BLOCK_S)
    inside = positions < N
    keys = tl.arange(0, BLOCK_K)
    live = inside[:, None] & (keys < K)[None, :]
    rows = tl.load(order_ptr + positions, mask=inside, other=0)
    x = load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K)
    count = tl.minimum(N - block_start, BLOCK_S).to(tl.float64)
    total = tl.sum(x, axis=0)
    centred = tl.where(live, x - (total / count)[None, :], 0)
    out = partials_ptr + program * K + keys
    tl.store(out, total, mask=keys < K)
    tl.store(out + P * K, tl.sum(centred * centred, axis=0), mask=keys < K)
    tl.store(out + 2 * P * K, tl.max(tl.where(live, x, float("-inf")), axis=0), mask=keys < K)
    tl.store(out + 3 * P * K, tl.min(tl.where(live, x, float("inf")), axis=0), mask=keys < K)
    flat = rows[:, None] * K + keys[None, :]
    bad = live & ((x != x) | (tl.abs(x) == float("inf")))
    tl.store(bad_ptr + program, tl.min(tl.min(tl.where(bad, flat, N * K), axis=1), axis=0))
    return positions, inside, rows, keys, x


@triton.jit
def batch_summary(partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER: tl.constexpr, DYNAMIC: tl.constexpr,
                  GDPO: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
    """Merge the P block partials in a fixed order (mean = sum / N; M2 = sum_b M2_b + n_b (mean_b - mean)^2) and
    apply docs/spec.md Step 1 -> (weights, cv, mean, std, coef = weight * alpha) (BLOCK_K,) float64 and the first
    non-finite flat index (N * K if none). Float64 reference: saw_verl.reference.reference_weights."""
    live = keys < K
    steps = tl.arange(0, FINAL_BLOCK)
    total = tl.zeros((FINAL_BLOCK, BLOCK_K), tl.float64)
    high = tl.full((FINAL_BLOCK, BLOCK_K), float("-inf"), tl.float64)
    low = tl.full((FINAL_BLOCK, BLOCK_K), float("inf"), tl.float64)
    first_bad = tl.full((FINAL_BLOCK,), N * K, tl.int64)
    start = 0
    while start < P:
        blocks = start + steps
        take = (blocks < P)[:, None] & live[None, :]
        where = partials_ptr + blocks[:, None] * K + keys[None, :]
        total += tl.load(where, mask=take, other=0)
        high = tl.maximum(high, tl.load(where + 2 * P * K, mask=take, other=float("-inf")))
        low = tl.minimum(low, tl.load(where + 3 * P * K, mask=take, other=float("inf")))
        first_bad = tl.minimum(first_bad, tl.load(bad_ptr + blocks, mask=blocks < P, other=N * K))
        start += FINAL_BLOCK
    mean = tl.sum(total, axis=0) / N
    squares = tl.zeros((FINAL_BLOCK, BLOCK_K), tl.float64)
    start = 0
    while start < P:
        blocks = start + steps
        take = (blocks < P)[:, None] & live[None, :]
        where = partials_ptr + blocks[:, None] * K + keys[None, :]
        count = tl.maximum(tl.minimum(N - blocks.to(tl.int64) * BLOCK_S, BLOCK_S), 1).to(tl.float64)[:, None]
        shift = tl.where(take, tl.load(where, mask=take, other=0) / count - mean[None, :], 0)
        squares += tl.load(where + P * K, mask=take, other=0) + tl.where(take, count, 0) * shift * shift
        start += FINAL_BLOCK
    high = tl.max(high, axis=0)
    low = tl.min(low, axis=0)
    std = tl.where(high == low, 0, tl.sqrt(tl.sum(squares, axis=0) / (N - 1)))  # a constant key: exactly 0

    delta = tl.load(consts_ptr + DELTA)
    official_eps = tl.load(consts_ptr + OFFICIAL_EPS_AT)
    reward_min = tl.load(consts_ptr + PER_KEY + keys, mask=live, other=0)
    alpha = tl.load(consts_ptr + PER_KEY + K + keys, mask=live, other=0)
    if PAPER:  # shifted rewards s = r - m + delta have the raw std
        cv = std / (tl.abs(mean - reward_min + delta) + delta)
    else:
        cv = std / (tl.abs(mean - reward_min) + official_eps)
    cv = tl.where(live, cv, 0)
    cv_sum = tl.sum(cv, axis=0)
    ones = tl.full((BLOCK_K,), 1, tl.float64)
    if not DYNAMIC:
        weights = ones
    elif PAPER:
        share = tl.where(cv_sum < delta, ones / K, cv / tl.maximum(cv_sum, delta))
        weights = share * K if GDPO else share
    else:
        weights = K * cv / (cv_sum + official_eps)
    return weights, cv, mean, std, weights * alpha, tl.min(first_bad, axis=0)


@triton.jit
def store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad):
    """summary (5, K) float64 rows (weights, cv, mean, std, coef); status[0] = first non-finite flat index."""
    live = keys < K
    tl.store(summary_ptr + keys, weights, mask=live)
    tl.store(summary_ptr + K + keys, cv, mask=live)
    tl.store(summary_ptr + 2 * K + keys, mean, mask=live)
    tl.store(summary_ptr + 3 * K + keys, std, mask=live)
    tl.store(summary_ptr + 4 * K + keys, coef, mask=live)
    tl.store(status_ptr, first_bad.to(tl.float64))


@triton.jit
def store_tile(out_ptr, rows, cols, L, take, values, good):
    """out[rows, cols] = values (BLOCK_R, BLOCK_C) float32 where take, if good (a scalar); streamed past the
    caches (written once, read by the next kernel of the training step)."""
    good = good.to(tl.int32) + tl.zeros(take.shape, tl.int32) != 0  # broadcast (the interpreter rejects tile & scalar)
    tl.store(out_ptr + rows[:, None] * L + cols[None, :], values, mask=take & good, eviction_policy="evict_first")
