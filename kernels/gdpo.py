"""SAW GDPO (docs/spec.md Step 1 + Step 2b) in 4 launches: torch.sort of the group ids, _gdpo_stats_kernel,
_gdpo_scores_kernel, _gdpo_write_kernel. Float64 reference: saw_verl.reference.reference_saw_advantages
(mode "gdpo"; per-key z-scores: reference_group_zscore).

_gdpo_stats_kernel, programs [0, P): a block of BLOCK_S sorted positions -> the block partials
  (common.block_partials) and per key the (mean, M2, max, min) of each group piece (store_pieces).
  Programs [P, P + T): TOKEN_ROWS rows of the mask each -> n_j = sum_t mask (float64), the count of entries
  other than 0 / 1, and a bit copy of the mask (N, ceil(L / 8)) uint8.
_gdpo_scores_kernel, programs [0, P): merges the batch partials (program 0 stores the summary and status[0]),
  then per block: per-key group z-scores from the pieces, S(j) = sum_k coef_k z_k(j) into scores (N,) float64,
  and the token-weighted partials of S for the whitening (W_b = sum n_j, sum n_j S_j, M2_b about the block's
  weighted mean) -> whiten (3, P).
_gdpo_write_kernel: advantages[j, t] = (S(j) - mean) / sqrt(var + 1e-8) * mask[j, t], from the bit copy of a row
  whose mask is 0 / 1, else from the mask; program (0, 0) stores M in status[1].

Bytes per token, e = mask element size: e + 1/8 (statistics: read the mask, write the bits) + 1/8 + 4 (write:
read the bits, write float32) = e + 4.25; a row with other mask values: 2e + 4.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (
    DEFAULT_VARIANT, EPSILON, FINAL_BLOCK, PARTIAL_STATS, STATS_WARPS, WHITEN_EPS_AT, WRITE_WARPS, batch_summary,
    block_partials, bound, geometry, load_rewards, multiprocessors, run_flags, search_shape, store_summary,
    store_tile,
)

PIECE_STATS = 4  # mean, M2, max, min
WHITEN_PARTIALS = 3
TOKEN_TILE = 4096  # mask elements per step of a token-counting program
MAX_BLOCK_L = 1024


def token_tile(length: int) -> tuple[int, int]:
    """(TOKEN_ROWS, BLOCK_L) of a token-counting program: short rows make taller tiles. BLOCK_L >= 8."""
    block_l = min(MAX_BLOCK_L, max(8, triton.next_power_of_2(length)))
    return TOKEN_TILE // block_l, block_l


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
    """values (BLOCK_S, C') float64 at sorted positions; starts / ends (BLOCK_S,): run starts / last positions
    in this block. Stores each piece's (mean, M2, max, min) at its last position: pieces (PIECE_STATS, N, C)."""
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
def group_zscores(values, inside, first, stop, pieces_ptr, N, cols, C, epsilon,
                  NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr):
    """Group z-scores of values (R, C') for rows (inside (R,)) whose group is the sorted run [first, stop).

    Merges the group's pieces in block order (two passes: mean, then M2 about it). docs/spec.md, Conventions:
    a single-rollout group gives x / (1 + eps) (verl: mean 0, std 1), a constant group (max == min)
    exactly 0; NORM_BY_STD False skips the division by (std + eps).
    """
    stop = tl.where(inside, stop, first + 1)  # rows outside the batch: a harmless one-row group
    count = (stop - first).to(tl.float64)[:, None]
    first_block = first // BLOCK_S
    span = (stop - 1) // BLOCK_S - first_block + 1
    widest = tl.max(span, axis=0)
    live = (cols < C)[None, :]
    total = tl.zeros(values.shape, tl.float64)
    high = tl.full(values.shape, float("-inf"), tl.float64)
    low = tl.full(values.shape, float("inf"), tl.float64)
    step = 0
    while step < widest:
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        n = end - tl.maximum((first_block + step) * BLOCK_S, first)
        take = (inside & (step < span))[:, None] & live
        where = (end - 1)[:, None] * C + cols[None, :]
        total += tl.where(take, n.to(tl.float64)[:, None], 0) * tl.load(pieces_ptr + where, mask=take, other=0)
        high = tl.maximum(high, tl.load(pieces_ptr + 2 * N * C + where, mask=take, other=float("-inf")))
        low = tl.minimum(low, tl.load(pieces_ptr + 3 * N * C + where, mask=take, other=float("inf")))
        step += 1
    mean = total / count
    squares = tl.zeros(values.shape, tl.float64)
    step = 0
    while step < widest:
        end = tl.minimum((first_block + step + 1) * BLOCK_S, stop)
        n = end - tl.maximum((first_block + step) * BLOCK_S, first)
        take = (inside & (step < span))[:, None] & live
        where = (end - 1)[:, None] * C + cols[None, :]
        shift = tl.where(take, tl.load(pieces_ptr + where, mask=take, other=0) - mean, 0)
        moment = tl.load(pieces_ptr + N * C + where, mask=take, other=0)
        squares += moment + tl.where(take, n.to(tl.float64)[:, None], 0) * shift * shift
        step += 1
    if NORM_BY_STD:
        scale = tl.sqrt(squares / tl.maximum(count - 1, 1)) + epsilon
        single_scale = 1 + epsilon
    else:
        scale = tl.full(values.shape, 1.0, tl.float64)
        single_scale = 1.0
    z = tl.where(high == low, 0, (values - mean) / scale)
    return tl.where(count == 1, values / single_scale, z)


@triton.jit
def _count_tokens(mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, L, BYTES, program,
                  BLOCK_L: tl.constexpr, TOKEN_ROWS: tl.constexpr):
    """Rows [program * TOKEN_ROWS, + TOKEN_ROWS): tokens (N,) float64 = sum_t mask, odd (N,) int32 = entries
    other than 0 / 1, bits (N, BYTES) uint8 = the mask's nonzero entries, 8 tokens a byte, lowest bit first."""
    rows = program.to(tl.int64) * TOKEN_ROWS + tl.arange(0, TOKEN_ROWS)
    inside = rows < N
    steps = tl.arange(0, BLOCK_L)
    shifts = tl.arange(0, 8)
    count = tl.zeros((TOKEN_ROWS, BLOCK_L), tl.float32)  # exact: each lane adds at most L / BLOCK_L values
    odd = tl.zeros((TOKEN_ROWS, BLOCK_L), tl.int32)
    start = 0
    while start < L:
        cols = start + steps
        take = inside[:, None] & (cols < L)[None, :]
        m = tl.load(mask_ptr + rows[:, None] * mask_stride_n + cols[None, :] * mask_stride_l, mask=take, other=0)
        count += m.to(tl.float32)
        odd += ((m != 0) & (m != 1)).to(tl.int32)
        bits = tl.reshape((m != 0).to(tl.int32), (TOKEN_ROWS, BLOCK_L // 8, 8)) << shifts[None, None, :]
        byte = start // 8 + tl.arange(0, BLOCK_L // 8)
        where = bits_ptr + rows[:, None] * BYTES + byte[None, :]
        tl.store(where, tl.sum(bits, axis=2).to(tl.uint8), mask=inside[:, None] & (byte < BYTES)[None, :])
        start += BLOCK_L
    tl.store(tokens_ptr + rows, tl.sum(count.to(tl.float64), axis=1), mask=inside)
    tl.store(odd_ptr + rows, tl.sum(odd, axis=1), mask=inside)


@triton.jit(do_not_specialize=["N", "K", "P", "BYTES"])  # sizes: no recompile per batch
def _gdpo_stats_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, pieces_ptr,
    mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, K, L, BYTES, P,
    BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_L: tl.constexpr, TOKEN_ROWS: tl.constexpr,
):
    """Programs [0, P): block partials and group pieces; programs [P, P + ceil(N / TOKEN_ROWS)): token counts,
    odd counts and the bit copy of the mask (_count_tokens)."""
    program = tl.program_id(0)
    if program < P:
        positions, inside, rows, keys, x = block_partials(
            rewards_ptr, stride_n, stride_k, order_ptr, partials_ptr, bad_ptr, N, K, P, program, BLOCK_S, BLOCK_K)
        _, starts, ends = run_flags(sorted_ptr, positions, inside, program.to(tl.int64) * BLOCK_S, N, BLOCK_S)
        store_pieces(x, starts, ends, pieces_ptr, N, positions, keys, K)
    else:
        _count_tokens(mask_ptr, mask_stride_n, mask_stride_l, tokens_ptr, odd_ptr, bits_ptr, N, L, BYTES,
                      program - P, BLOCK_L, TOKEN_ROWS)


@triton.jit(do_not_specialize=["N", "K", "P"])  # sizes: no recompile per batch
def _gdpo_scores_kernel(
    rewards_ptr, stride_n, stride_k, sorted_ptr, order_ptr, partials_ptr, bad_ptr, consts_ptr,
    summary_ptr, status_ptr, pieces_ptr, tokens_ptr, scores_ptr, whiten_ptr, N, K, P,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_K: tl.constexpr, WAYS: tl.constexpr, STEPS: tl.constexpr,
):
    """Program p, block p of BLOCK_S sorted positions: S(j) of its rows into scores (N,), whitening partials of
    the block into whiten (3, P): sum n_j, sum n_j S_j, sum n_j (S_j - block mean)^2."""
    program = tl.program_id(0)
    keys = tl.arange(0, BLOCK_K)
    weights, cv, mean, std, coef, first_bad = batch_summary(
        partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER, DYNAMIC, True, BLOCK_K, BLOCK_S)
    if program == 0:
        store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad)
    positions = program.to(tl.int64) * BLOCK_S + tl.arange(0, BLOCK_S)
    inside = positions < N
    rows = tl.load(order_ptr + positions, mask=inside, other=0)
    ids = tl.load(sorted_ptr + positions, mask=inside, other=0)
    first = bound(sorted_ptr, ids, N, False, WAYS, STEPS)
    stop = bound(sorted_ptr, ids, N, True, WAYS, STEPS)
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


@triton.jit
def whitening(whiten_ptr, P):
    """Merge the (3, P) whitening partials in a fixed order -> (M, mean, M2) float64 scalars."""
    steps = tl.arange(0, FINAL_BLOCK)
    weight = tl.zeros((FINAL_BLOCK,), tl.float64)
    weighted = tl.zeros((FINAL_BLOCK,), tl.float64)
    start = 0
    while start < P:
        blocks = start + steps
        weight += tl.load(whiten_ptr + blocks, mask=blocks < P, other=0)
        weighted += tl.load(whiten_ptr + P + blocks, mask=blocks < P, other=0)
        start += FINAL_BLOCK
    total = tl.sum(weight, axis=0)
    mean = tl.sum(weighted, axis=0) / tl.maximum(total, 1e-300)
    squares = tl.zeros((FINAL_BLOCK,), tl.float64)
    start = 0
    while start < P:
        blocks = start + steps
        w = tl.load(whiten_ptr + blocks, mask=blocks < P, other=0)
        shift = tl.where(w > 0, tl.load(whiten_ptr + P + blocks, mask=blocks < P, other=0) / tl.maximum(w, 1e-300)
                         - mean, 0)
        squares += tl.load(whiten_ptr + 2 * P + blocks, mask=blocks < P, other=0) + w * shift * shift
        start += FINAL_BLOCK
    return total, mean, tl.sum(squares, axis=0)


@triton.jit(do_not_specialize=["N", "K", "P", "COLUMN_SPAN", "BYTES"])  # sizes: no recompile per batch
def _gdpo_write_kernel(
    mask_ptr, stride_n, stride_l, out_ptr, status_ptr, consts_ptr, N, K, L, P, COLUMN_SPAN,
    scores_ptr, whiten_ptr, bits_ptr, odd_ptr, BYTES,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Grid (row programs, column programs). Each program merges the whitening partials once; then for row
    blocks b = program_id(0), + row programs, ... it writes out[rows, t] = (S - mean) / sqrt(var + eps) *
    mask[rows, t] float32 for t in [program_id(1) * COLUMN_SPAN, + COLUMN_SPAN) in (BLOCK_R, BLOCK_C) tiles.
    Nothing is written unless every reward is finite (status[0]) and M >= 2."""
    tokens, mean, squares = whitening(whiten_ptr, P)
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        tl.store(status_ptr + 1, tokens)
    good = (tl.load(status_ptr) >= (N * K).to(tl.float64)) & (tokens >= 2)  # status[0]: first non-finite, N * K if none
    inv_std = 1 / tl.sqrt(squares / tl.maximum(tokens - 1, 1) + tl.load(consts_ptr + WHITEN_EPS_AT))
    column_start = tl.program_id(1).to(tl.int64) * COLUMN_SPAN  # a multiple of 8: whole bytes of the bit copy
    column_stop = tl.minimum(column_start + COLUMN_SPAN, L)
    block = tl.program_id(0).to(tl.int64)
    while block * BLOCK_R < N:
        rows = block * BLOCK_R + tl.arange(0, BLOCK_R)
        inside = rows < N
        value = ((tl.load(scores_ptr + rows, mask=inside, other=0) - mean) * inv_std).to(tl.float32)
        binary = tl.max(tl.load(odd_ptr + rows, mask=inside, other=0), axis=0) == 0  # only 0 / 1 in these rows
        start = column_start
        while start < column_stop:
            # start is a multiple of BLOCK_C: the loads and stores can be vectorized
            cols = tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK_C), BLOCK_C), BLOCK_C)
            take = inside[:, None] & (cols < column_stop)[None, :]
            if binary:  # each byte of the bit copy read by its 8 tokens' lanes (one transaction)
                packed = tl.load(bits_ptr + rows[:, None] * BYTES + (cols // 8)[None, :], mask=take, other=0)
                m = ((packed.to(tl.int32) >> (cols % 8).to(tl.int32)[None, :]) & 1).to(tl.float32)
            else:
                m = tl.load(mask_ptr + rows[:, None] * stride_n + cols[None, :] * stride_l, mask=take, other=0,
                            eviction_policy="evict_first").to(tl.float32)
            store_tile(out_ptr, rows, cols, L, take, value[:, None] * m, good)
            start += BLOCK_C
        block += tl.num_programs(0)


def gdpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, constants: torch.Tensor,
    preset: str, dynamic: bool, norm_by_std: bool, variant: str = DEFAULT_VARIANT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards (N, K) float (any float dtype / strides), group_ids (N,) integer (any values, unsorted),
    response_mask (N, L) any dtype / strides, L >= 1, constants (4 + 2K,) float64 (common.constants_vector);
    one device, shapes checked, N >= 2. variant: one of common.VARIANTS (the launch geometry, common.geometry).

    Returns (advantages (N, L) float32, summary (5, K) float64 rows weights / cv / mean / std / coef,
    status (2,) float64: the first non-finite reward as row * K + key (N * K if none), and M = sum of the
    mask). Read the status before trusting the rest. No host sync, no torch op besides the sort; outputs are
    torch.empty.
    """
    n, k = rewards.shape
    length = response_mask.shape[1]
    device = rewards.device
    f64 = dict(dtype=torch.float64, device=device)
    block_k = triton.next_power_of_2(k)
    shape = geometry(variant, n, length, 1, multiprocessors(device))
    ways, steps = search_shape(n, shape.block_s)
    token_rows, block_l = token_tile(length)
    blocks = shape.stats_programs
    sorted_ids, order = torch.sort(group_ids, stable=True)
    partials = torch.empty(PARTIAL_STATS, blocks, k, **f64)
    bad = torch.empty(blocks, dtype=torch.int64, device=device)
    pieces = torch.empty(PIECE_STATS, n, k, **f64)
    tokens = torch.empty(n, **f64)
    odd = torch.empty(n, dtype=torch.int32, device=device)
    bits = torch.empty(n, triton.cdiv(length, 8), dtype=torch.uint8, device=device)
    scores = torch.empty(n, **f64)
    whiten = torch.empty(WHITEN_PARTIALS, blocks, **f64)
    summary = torch.empty(5, k, **f64)
    status = torch.empty(2, **f64)
    advantages = torch.empty(n, length, dtype=torch.float32, device=device)
    unfused = dict(enable_fp_fusion=False)  # no fma contraction: every kernel rounds a * b + c the same way
    reward_args = (rewards, rewards.stride(0), rewards.stride(1))
    mask_args = (response_mask, response_mask.stride(0), response_mask.stride(1))
    _gdpo_stats_kernel[(blocks + triton.cdiv(n, token_rows),)](
        *reward_args, sorted_ids, order, partials, bad, pieces, *mask_args, tokens, odd, bits,
        n, k, length, bits.shape[1], blocks, BLOCK_S=shape.block_s, BLOCK_K=block_k, BLOCK_L=block_l,
        TOKEN_ROWS=token_rows, num_warps=STATS_WARPS, **unfused,
    )
    _gdpo_scores_kernel[(blocks,)](
        *reward_args, sorted_ids, order, partials, bad, constants, summary, status, pieces, tokens, scores, whiten,
        n, k, blocks, PAPER=preset == "paper", DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, BLOCK_S=shape.block_s,
        BLOCK_K=block_k, WAYS=ways, STEPS=steps, num_warps=STATS_WARPS, **unfused,
    )
    _gdpo_write_kernel[(shape.row_programs, shape.column_programs)](
        *mask_args, advantages, status, constants, n, k, length, blocks, shape.column_span, scores, whiten, bits, odd,
        bits.shape[1], BLOCK_R=shape.block_r, BLOCK_C=shape.block_c,
        num_warps=WRITE_WARPS, **unfused,
    )
    return advantages, summary, status
