"""GDPO's stage 2: every program merges the batch partials (batch_summary), program 0 stores the summary
and the status word, then each program works on its block of BLOCK_S sorted positions.

_gdpo_scores_kernel: per-key group z-scores from the stage-1 pieces, S(j) = sum_k coef_k z_k(j) into
  scores (N,) float64, and per block the token-weighted partials of S for the whitening:
  (W_b = sum n_j, sum n_j S_j, M2_b about the block's weighted mean) -> whiten_partials (3, P).
(GRPO has no stage 2: its write pass takes the z-scores of the weighted sum from the stage-1 moments,
kernels/summed_moments.py.) Readable reference: saw_verl.reference.reference_group_zscore /
reference_saw_advantages.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .batch_stats import batch_summary, store_summary
from .common import EPSILON, bound, group_zscores, load_rewards

WHITEN_PARTIALS = 3


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

