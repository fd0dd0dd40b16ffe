"""The last launch: the one pass that writes advantages[j, t] = value(j) * mask[j, t] in float32.

Tiles of BLOCK_R rows x BLOCK_C tokens (about TILE elements, so short rows still make wide tiles). Each
program first finishes its rows' values (cheap next to the tile), then streams the tile:
  _grpo_write_kernel: merges the batch partials (batch_summary: coef = weight * alpha; program (0, 0) stores
        the summary and status[0]), then value = group z-score of R(j) from the stage-1 moments
        (summed_moments.summed_zscores: the row's group run from bounds, its pieces added in block order);
        reads the mask itself. Launched with at least one column of programs, so L = 0 still stores them.
        The price of the saved launch: every program re-reads the P = ceil(N / BLOCK_S) batch partials
        (about 6 P K float64 loads, the same addresses in every program, so L2 hits).
  _gdpo_write_kernel: value = (S(j) - mean) / sqrt(var + 1e-8), mean / var merged from the whitening
        partials (two-stage, fixed order); reads the bit copy of a row whose mask is 0 / 1, else the mask;
        program (0, 0) stores M in status[1].
Nothing is written unless the inputs are good (no non-finite reward; GDPO: M >= 2).

Bytes per token, e = mask element size: GRPO e + 4 (the floor: read the mask, write fp32 once);
GDPO e + 1/8 (stage 1 reads the mask, writes bits) + 1/8 + 4 = e + 4.25; a non-binary row: 2e + 4.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .batch_stats import batch_summary, store_summary
from .common import EPSILON, WHITEN_EPS_AT
from .summed_moments import summed_zscores

TILE = 8192
MAX_BLOCK_C = 2048
ROW_KEYS = 1024  # GRPO: at most BLOCK_R * BLOCK_K float64 per (rows, keys) temporary
NUM_WARPS = 8


def tile_shape(length: int, block_k: int = 1) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_C): BLOCK_C a power of two >= 16 (a multiple of 8 for the bit copy); GRPO passes its
    key block, which caps BLOCK_R at ROW_KEYS // block_k."""
    block_c = min(MAX_BLOCK_C, max(16, triton.next_power_of_2(length)))
    return min(TILE // block_c, ROW_KEYS // block_k), block_c


@triton.jit
def store_tile(out_ptr, rows, cols, L, take, values, good):
    """out[rows, cols] = values (BLOCK_R, BLOCK_C) float32 where take, if good (a scalar)."""
    good = good.to(tl.int32) + tl.zeros(take.shape, tl.int32) != 0  # broadcast (the interpreter rejects tile & scalar)
    tl.store(out_ptr + rows[:, None] * L + cols[None, :], values, mask=take & good)


@triton.jit
def whitening(whiten_ptr, P, FINAL_BLOCK: tl.constexpr):
    """Merge the (3, P) whitening partials in a fixed order -> (M, mean, M2)."""
    steps = tl.arange(0, FINAL_BLOCK)
    weight = tl.zeros((FINAL_BLOCK,), tl.float64)
    weighted = tl.zeros((FINAL_BLOCK,), tl.float64)
    for start in range(0, P, FINAL_BLOCK):
        blocks = start + steps
        weight += tl.load(whiten_ptr + blocks, mask=blocks < P, other=0)
        weighted += tl.load(whiten_ptr + P + blocks, mask=blocks < P, other=0)
    total = tl.sum(weight, axis=0)
    mean = tl.sum(weighted, axis=0) / tl.maximum(total, 1e-300)
    squares = tl.zeros((FINAL_BLOCK,), tl.float64)
    for start in range(0, P, FINAL_BLOCK):
        blocks = start + steps
        w = tl.load(whiten_ptr + blocks, mask=blocks < P, other=0)
        shift = tl.where(w > 0, tl.load(whiten_ptr + P + blocks, mask=blocks < P, other=0) / tl.maximum(w, 1e-300)
                         - mean, 0)
        squares += tl.load(whiten_ptr + 2 * P + blocks, mask=blocks < P, other=0) + w * shift * shift
    return total, mean, tl.sum(squares, axis=0)


@triton.jit(do_not_specialize=["N", "K", "P"])  # sizes: no recompile per batch (L is: alignment)
def _grpo_write_kernel(
    mask_ptr, stride_n, stride_l, out_ptr, status_ptr, consts_ptr, N, K, L, P,
    rewards_ptr, reward_stride_n, reward_stride_k, order_ptr, partials_ptr, bad_ptr, summary_ptr, moments_ptr,
    bounds_ptr,
    PAPER: tl.constexpr, DYNAMIC: tl.constexpr, NORM_BY_STD: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr, FINAL_BLOCK: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    inside = rows < N
    keys = tl.arange(0, BLOCK_K)
    weights, cv, mean, std, coef, first_bad = batch_summary(
        partials_ptr, bad_ptr, consts_ptr, N, K, P, keys, PAPER, DYNAMIC, False, BLOCK_K, BLOCK_S, FINAL_BLOCK)
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        store_summary(summary_ptr, status_ptr, keys, K, weights, cv, mean, std, coef, first_bad)
    first = tl.load(bounds_ptr + rows, mask=inside, other=0)
    stop = tl.load(bounds_ptr + N + rows, mask=inside, other=1)
    z = summed_zscores(rewards_ptr, reward_stride_n, reward_stride_k, order_ptr, moments_ptr, rows, inside, first,
                       stop, coef, keys, K, tl.load(consts_ptr + EPSILON), NORM_BY_STD, BLOCK_S)
    take = inside[:, None] & (cols < L)[None, :]
    m = tl.load(mask_ptr + rows[:, None] * stride_n + cols[None, :] * stride_l, mask=take, other=0)
    store_tile(out_ptr, rows, cols, L, take, z[:, None].to(tl.float32) * m.to(tl.float32), first_bad >= N * K)


@triton.jit(do_not_specialize=["N", "K", "P", "BYTES"])  # sizes: no recompile per batch (L is: alignment)
def _gdpo_write_kernel(
    mask_ptr, stride_n, stride_l, out_ptr, status_ptr, consts_ptr, N, K, L, P,
    scores_ptr, whiten_ptr, bits_ptr, odd_ptr, BYTES,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, FINAL_BLOCK: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    inside = rows < N
    tokens, mean, squares = whitening(whiten_ptr, P, FINAL_BLOCK)
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        tl.store(status_ptr + 1, tokens)
    good = (tl.load(status_ptr) >= (N * K).to(tl.float64)) & (tokens >= 2)  # status[0]: first non-finite, N * K if none
    inv_std = 1 / tl.sqrt(squares / tl.maximum(tokens - 1, 1) + tl.load(consts_ptr + WHITEN_EPS_AT))
    value = (tl.load(scores_ptr + rows, mask=inside, other=0) - mean) * inv_std
    odd = tl.load(odd_ptr + rows, mask=inside, other=1) != 0
    take = inside[:, None] & (cols < L)[None, :]
    m = tl.load(mask_ptr + rows[:, None] * stride_n + cols[None, :] * stride_l, mask=take & odd[:, None],
                other=0).to(tl.float32)
    byte = tl.program_id(1).to(tl.int64) * (BLOCK_C // 8) + tl.arange(0, BLOCK_C // 8)
    packed = tl.load(bits_ptr + rows[:, None] * BYTES + byte[None, :],
                     mask=inside[:, None] & (byte < BYTES)[None, :] & ~odd[:, None], other=0).to(tl.int32)
    bits = tl.reshape((packed[:, :, None] >> tl.arange(0, 8)[None, None, :]) & 1, (BLOCK_R, BLOCK_C))
    m = tl.where(odd[:, None], m, bits.to(tl.float32))
    store_tile(out_ptr, rows, cols, L, take, value[:, None].to(tl.float32) * m, good)
