"""Stage 2: every program merges the batch partials (batch_summary), program 0 stores the summary and
the status word, then each program works on its block of BLOCK_S sorted positions.

_grpo_pieces_kernel: R(j) = sum_k coef_k r_k(j) (weighted_sum: a fixed key order, so the write kernel
  recomputes the same bits), stored as group pieces of R, and each row's group run [first, stop) into
  bounds (2, N); the z-score itself is taken in the write pass, once the pieces are complete.
_gdpo_scores_kernel: per-key group z-scores from the stage-1 pieces, S(j) = sum_k coef_k z_k(j) into
  scores (N,) float64, and per block the token-weighted partials of S for the whitening:
  (W_b = sum n_j, sum n_j S_j, M2_b about the block's weighted mean) -> whiten_partials (3, P).
Readable reference: saw_verl.reference.reference_group_zscore / reference_saw_advantages.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .batch_stats import batch_summary, load_rewards, store_summary
from .common import EPSILON, bound, group_zscores, run_flags, store_pieces

WHITEN_PARTIALS = 3


@triton.jit
def weighted_sum(rewards_ptr, stride_n, stride_k, rows, inside, coef, keys, K, BLOCK_K: tl.constexpr):
    """(R, 1) float64: sum_k coef_k r_k(row), keys added in order 0..K-1 (the same bits in every kernel)."""
    total = tl.zeros((rows.shape[0], 1), tl.float64)
    for key in tl.static_range(BLOCK_K):
        if key < K:
            r = tl.load(rewards_ptr + rows * stride_n + key * stride_k, mask=inside, other=0).to(tl.float64)
            total += (r * tl.sum(tl.where(keys == key, coef, 0), axis=0))[:, None]
    return total


@triton.jit(do_not_specialize=["N", "K", "P", "STEPS"])  # sizes: no recompile per batch
def _grpo_pieces_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, consts_ptr,
    summary_ptr, status_ptr, pieces_ptr, bounds_ptr, N, K, P, STEPS,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr,
    FINAL_BLOCK: tl.constexpr,
):
    program = tl.program_id(0)
    keys = tl.arange(0, BLOCK_K)
    weights, cv, mean, std, coef, first_bad = batch_summary(
        partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER, DYNAMIC, False, BLOCK_K, BLOCK_S, FINAL_BLOCK)
    if program == 0:
        store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad)
    block_start = program.to(tl.int64) * BLOCK_S
    positions = block_start + tl.arange(0, BLOCK_S)
    inside = positions < N
    rows = tl.load(order_ptr + positions, mask=inside, other=0)
    values = weighted_sum(rewards_ptr, stride_n, stride_k, rows, inside, coef, keys, K, BLOCK_K)
    ids, starts, ends = run_flags(sorted_ptr, positions, inside, block_start, N, BLOCK_S)
    store_pieces(values, starts, ends, pieces_ptr, N, positions, tl.arange(0, 1), 1)
    tl.store(bounds_ptr + rows, bound(sorted_ptr, ids, N, STEPS, False), mask=inside)
    tl.store(bounds_ptr + N + rows, bound(sorted_ptr, ids, N, STEPS, True), mask=inside)


@triton.jit(do_not_specialize=["N", "K", "P", "STEPS"])  # sizes: no recompile per batch
def _gdpo_scores_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, consts_ptr,
    summary_ptr, status_ptr, pieces_ptr, tokens_ptr, scores_ptr, whiten_ptr, N, K, P, STEPS,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_K: tl.constexpr, FINAL_BLOCK: tl.constexpr,
):
    program = tl.program_id(0)
    keys = tl.arange(0, BLOCK_K)
    weights, cv, mean, std, coef, first_bad = batch_summary(
        partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER, DYNAMIC, True, BLOCK_K, BLOCK_S, FINAL_BLOCK)
    if program == 0:
        store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad)
    block_start = program.to(tl.int64) * BLOCK_S
    positions = block_start + tl.arange(0, BLOCK_S)
    inside = positions < N
    rows = tl.load(order_ptr + positions, mask=inside, other=0)
    ids = tl.load(sorted_ptr + positions, mask=inside, other=0)
    first = bound(sorted_ptr, ids, N, STEPS, False)
    stop = bound(sorted_ptr, ids, N, STEPS, True)
    x = load_rewards(rewards_ptr, stride_n, stride_k, rows, inside, keys, K)
    epsilon = tl.load(consts_ptr + EPSILON)
    z = group_zscores(x, inside, first, stop, pieces_ptr, N, keys, K, epsilon, NORM_BY_STD, BLOCK_S)
    scores = tl.sum(tl.where((keys < K)[None, :], z * coef[None, :], 0), axis=1)
    tl.store(scores_ptr + rows, scores, mask=inside)

    tokens = tl.load(tokens_ptr + rows, mask=inside, other=0)
    weight = tl.sum(tokens, axis=0)
    weighted = tl.sum(tokens * scores, axis=0)
    centred = tl.where(inside, scores - weighted / tl.maximum(weight, 1e-300), 0)
    tl.store(whiten_ptr + program, weight)
    tl.store(whiten_ptr + P + program, weighted)
    tl.store(whiten_ptr + 2 * P + program, tl.sum(tokens * centred * centred, axis=0))


def block_k(num_keys: int) -> int:
    return triton.next_power_of_2(num_keys)
