"""Stage 1 of every SAW call: block partials of the batch statistics, the status word's inputs, the group
pieces, and (GDPO) the per-row token counts of the mask, all in ONE launch.

_stats_kernel, programs [0, P): a block of BLOCK_S sorted positions (rows gathered through the sort
  order) -> per key: sum, M2 about the block mean, max, min (partials (4, P, K)); the first non-finite
  reward of the block as a flat index row * K + key (N * K if none); then
  GDPO: per-key group pieces (mean, M2, max, min: common.store_pieces);
  GRPO: the weight-free moments of each group piece (summed_moments.store_moments) and each row's group
  run [first, stop) of sorted positions into bounds (2, N).
  Programs [P, P + T) (GDPO only): TOKEN_ROWS rows of the mask each -> n_j = sum_t mask (float64), the
  count of entries other than 0 / 1, and a bit copy of the mask (N, ceil(L / 8)) uint8.
batch_summary (jit, called by the kernels after stage 1): merges the P partials in a fixed order
  (mean = sum / N; M2 = sum_b M2_b + n_b (mean_b - mean)^2) and applies spec Step 1 -> weights, cv, mean,
  std, coef = weight * alpha. Every program that needs it computes it (same inputs, same order, same
  bits); one stores it and the status word. Readable reference: saw_verl.reference.reference_weights.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import DELTA, OFFICIAL_EPS_AT, PER_KEY, bound, load_rewards, run_flags, store_pieces
from .summed_moments import store_moments

PARTIAL_STATS = 4  # sum, M2, max, min
TOKEN_TILE = 4096  # mask elements per step of a token-counting program
MAX_BLOCK_L = 1024
NUM_WARPS = 8


@triton.jit
def _block_partials(rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, pieces_ptr,
                    bounds_ptr, N, K, P, STEPS, program, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr,
                    GDPO: tl.constexpr):
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
    ids, starts, ends = run_flags(sorted_ptr, positions, inside, block_start, N, BLOCK_S)
    if GDPO:
        store_pieces(x, starts, ends, pieces_ptr, N, positions, keys, K)
    else:  # the moments of the rewards about the group's first row (summed_moments), each row's group run
        first = bound(sorted_ptr, ids, N, STEPS, False)
        rep = tl.load(order_ptr + first, mask=inside, other=0)
        y = x - load_rewards(rewards_ptr, stride_n, stride_k, rep, inside, keys, K)
        store_moments(y, starts, ends, pieces_ptr, positions, keys, K)
        tl.store(bounds_ptr + rows, first, mask=inside)
        tl.store(bounds_ptr + N + rows, bound(sorted_ptr, ids, N, STEPS, True), mask=inside)


@triton.jit
def _count_tokens(mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, L, BYTES, program,
                  BLOCK_L: tl.constexpr, TOKEN_ROWS: tl.constexpr):
    rows = program.to(tl.int64) * TOKEN_ROWS + tl.arange(0, TOKEN_ROWS)
    inside = rows < N
    steps = tl.arange(0, BLOCK_L)
    shifts = tl.arange(0, 8)
    count = tl.zeros((TOKEN_ROWS, BLOCK_L), tl.float32)  # exact: each lane adds at most L / BLOCK_L values
    odd = tl.zeros((TOKEN_ROWS, BLOCK_L), tl.int32)
    for start in range(0, L, BLOCK_L):
        cols = start + steps.to(tl.int64)
        take = inside[:, None] & (cols < L)[None, :]
        m = tl.load(mask_ptr + rows[:, None] * mask_stride_n + cols[None, :] * mask_stride_l, mask=take, other=0)
        count += m.to(tl.float32)
        odd += ((m != 0) & (m != 1)).to(tl.int32)
        bits = tl.reshape((m != 0).to(tl.int32), (TOKEN_ROWS, BLOCK_L // 8, 8)) << shifts[None, None, :]
        byte = start // 8 + tl.arange(0, BLOCK_L // 8)
        where = bits_ptr + rows[:, None] * BYTES + byte[None, :]
        tl.store(where, tl.sum(bits, axis=2).to(tl.uint8), mask=inside[:, None] & (byte < BYTES)[None, :])
    tl.store(tokens_ptr + rows, tl.sum(count.to(tl.float64), axis=1), mask=inside)
    tl.store(odd_ptr + rows, tl.sum(odd, axis=1), mask=inside)


@triton.jit(do_not_specialize=["N", "K", "P", "BYTES", "STEPS"])  # sizes: no recompile per batch
def _stats_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, pieces_ptr, bounds_ptr,
    mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, K, L, BYTES, P, STEPS,
    BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr, GDPO: tl.constexpr, BLOCK_L: tl.constexpr,
    TOKEN_ROWS: tl.constexpr,
):
    program = tl.program_id(0)
    if program < P:
        _block_partials(rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, pieces_ptr,
                        bounds_ptr, N, K, P, STEPS, program, BLOCK_S, BLOCK_K, GDPO)
    elif GDPO:
        _count_tokens(mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, L, BYTES,
                      program - P, BLOCK_L, TOKEN_ROWS)


@triton.jit
def batch_summary(partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER: tl.constexpr, DYNAMIC: tl.constexpr,
                  GDPO: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr, FINAL_BLOCK: tl.constexpr):
    """Merge the P block partials (fixed order) -> (weights, cv, mean, std, coef) (BLOCK_K,) and the first
    non-finite flat index (N * K if none)."""
    live = keys < K
    steps = tl.arange(0, FINAL_BLOCK)
    total = tl.zeros((FINAL_BLOCK, BLOCK_K), tl.float64)
    high = tl.full((FINAL_BLOCK, BLOCK_K), float("-inf"), tl.float64)
    low = tl.full((FINAL_BLOCK, BLOCK_K), float("inf"), tl.float64)
    first_bad = tl.full((FINAL_BLOCK,), N * K, tl.int64)
    for start in range(0, P, FINAL_BLOCK):
        blocks = start + steps
        take = (blocks < P)[:, None] & live[None, :]
        where = partials_ptr + blocks[:, None] * K + keys[None, :]
        total += tl.load(where, mask=take, other=0)
        high = tl.maximum(high, tl.load(where + 2 * P * K, mask=take, other=float("-inf")))
        low = tl.minimum(low, tl.load(where + 3 * P * K, mask=take, other=float("inf")))
        first_bad = tl.minimum(first_bad, tl.load(bad_ptr + blocks, mask=blocks < P, other=N * K))
    mean = tl.sum(total, axis=0) / N
    squares = tl.zeros((FINAL_BLOCK, BLOCK_K), tl.float64)
    for start in range(0, P, FINAL_BLOCK):
        blocks = start + steps
        take = (blocks < P)[:, None] & live[None, :]
        where = partials_ptr + blocks[:, None] * K + keys[None, :]
        count = tl.maximum(tl.minimum(N - blocks.to(tl.int64) * BLOCK_S, BLOCK_S), 1).to(tl.float64)[:, None]
        shift = tl.where(take, tl.load(where, mask=take, other=0) / count - mean[None, :], 0)
        squares += tl.load(where + P * K, mask=take, other=0) + tl.where(take, count, 0) * shift * shift
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


def token_tile(length: int) -> tuple[int, int]:
    """(TOKEN_ROWS, BLOCK_L) of a token-counting program: short rows make taller tiles. BLOCK_L >= 8."""
    block_l = min(MAX_BLOCK_L, max(8, triton.next_power_of_2(length)))
    return TOKEN_TILE // block_l, block_l


def stats_grid(n: int, length: int, block_s: int, gdpo: bool) -> tuple[int, int]:
    """(P stats programs, grid size): GDPO adds one program per TOKEN_ROWS mask rows."""
    blocks = triton.cdiv(n, block_s)
    return blocks, blocks + (triton.cdiv(n, token_tile(length)[0]) if gdpo else 0)
