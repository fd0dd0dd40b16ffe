"""What the SAW GRPO and GDPO kernels share: the layouts of the constants vector, the workspace and the status
words, the one launch plan, the host steps every call takes, and the one streaming write
out[i, t] = v[i] * mask[i, t] (statistics.py holds the statistics).

A leaf: imports torch and triton only (nothing of saw_verl).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# The float64 constants vector (built once per configuration and device by the caller): SCALARS values, then one
# row of K values per per-key option (REWARD_MIN_ROW, STATIC_WEIGHT_ROW), then LEVEL_ROWS rows per level of the
# conditions (as many levels as the longest chain has conditions, none without; constants_vector). float64 so that
# 1e-8 arrives exactly.
DELTA = tl.constexpr(0)
EPSILON = tl.constexpr(1)
OFFICIAL_EPS = tl.constexpr(2)
WHITEN_EPS = tl.constexpr(3)
HISTORY_DECAY = tl.constexpr(4)
SCALARS = tl.constexpr(5)
REWARD_MIN_ROW = tl.constexpr(0)
STATIC_WEIGHT_ROW = tl.constexpr(1)
FIRST_LEVEL_ROW = tl.constexpr(2)
LEVEL_ROWS = tl.constexpr(3)  # in a level: the gate key, the threshold, the fill

# The workspace, one float64 tensor per call: the per-row values v (N,) float32, the status words, the summary
# (SUMMARY_ROWS, K: the rows of SUMMARY, then GATED_ROW, written only with conditions), the scratch of the group
# statistics (N, 2, C): per run, at its first sorted position, each column's mean and divisor), and for GDPO the
# per-row scores S (N,) and token counts n (N,).
# Status words: FIRST_BAD (the first non-finite reward as row * K + key, N * K if none), TOKENS (GDPO: M, the sum
# of the mask), BELOW_MIN_KEY / BELOW_MIN_VALUE (the first key whose smallest reward is below its reward_min, K if
# none, and that reward), then one word per statistics program from UNSORTED_AT: the bits UNSORTED (the ids it
# read descend somewhere) and OWNS_A_GROUP (a group of 2 or more rows starts in its block).
FIRST_BAD = tl.constexpr(0)
TOKENS = tl.constexpr(1)
BELOW_MIN_KEY = tl.constexpr(2)
BELOW_MIN_VALUE = tl.constexpr(3)
UNSORTED_AT = tl.constexpr(4)
UNSORTED = tl.constexpr(1)
OWNS_A_GROUP = tl.constexpr(2)
SUMMARY = ("weights", "cv", "mean", "std", "batch_cv")  # rows of the summary
SUMMARY_ROWS = tl.constexpr(len(SUMMARY) + 1)
WEIGHTS_ROW = tl.constexpr(0)
CV_ROW = tl.constexpr(1)
MEAN_ROW = tl.constexpr(2)
STD_ROW = tl.constexpr(3)
BATCH_CV_ROW = tl.constexpr(4)
GATED_ROW = tl.constexpr(5)  # with conditions: per key, the share of the N rows whose reward became its fill
# A history pool (docs/spec.md, "History"): (POOL_ROWS, K) float64, rows weight, mean, M2, low, high; read from the
# caller's tensor, the pool with this batch merged in written to a new (POOL_ROWS, K) tensor.
POOL_ROWS = 5

# The one launch geometry. Statistics kernels: STATS_WARPS warps, at most MAX_STATS_PROGRAMS programs (each reads the
# whole batch of rewards once for Step 1), tiles of BATCH_TILE elements for Step 1 and GROUP_TILE for the groups.
STATS_WARPS = 8
MAX_STATS_PROGRAMS = 64
BATCH_TILE = 4096
GROUP_TILE = 1024
# Streaming kernels: WRITE_WARPS warps; a write tile holds WRITE_TILE_BYTES of mask and float32 output, four tokens
# a thread per load and per store; a token-count tile holds TOKEN_TILE_BYTES of mask, 16 bytes a thread per load,
# at most 32 threads across a row so that the row sums stay inside a warp. A mask whose rows Triton cannot prove
# 16-byte aligned is loaded an element at a time: its token tiles hold SCALAR_TOKEN_TILE elements.
WRITE_WARPS = 4
WRITE_TILE_BYTES = 24576
TOKEN_TILE_BYTES = 32768
SCALAR_TOKEN_TILE = 4096
VECTOR_BYTES = 16
WARP_THREADS = 32


def constants_vector(delta: float, epsilon: float, official_eps: float, whiten_eps: float, history_decay: float,
                     reward_min, static_weights, conditions=()) -> list[float]:
    """The values of the constants vector, in layout order (the caller makes the device tensor).

    conditions: (key, condition key, threshold, fill) per conditioned key (indices into the K keys; chains that do
    not loop). They are laid out as the chains walked from each key: with c_0 = k and c_{i+1} the key that gates
    c_i (-1 past the chain's end), level i holds three rows of K values: c_{i+1}, then c_i's threshold and fill.
    Level 0 is each key's own condition (-1, 0, 0 for a key without one); condition_levels() says how many there are."""
    gates = {key: (on, threshold, fill) for key, on, threshold, fill in conditions}
    chain, rows = list(range(len(reward_min))), []
    while any(c in gates for c in chain):
        rows += [[float(gates[c][i]) if c in gates else (-1.0, 0.0, 0.0)[i] for c in chain] for i in range(3)]
        chain = [gates[c][0] if c in gates else -1 for c in chain]
    return [delta, epsilon, official_eps, whiten_eps, history_decay, *reward_min, *static_weights,
            *(value for row in rows for value in row)]


def condition_levels(constants: torch.Tensor, k: int) -> int:
    """The levels of conditions in a constants vector of K keys (0: none), from its length."""
    return (constants.numel() - SCALARS.value - FIRST_LEVEL_ROW.value * k) // (LEVEL_ROWS.value * k)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(x: int) -> int:
    return 1 << max(0, x - 1).bit_length()


def power_of_2_floor(x: int) -> int:
    return 1 << (max(1, x).bit_length() - 1)


class Plan(NamedTuple):
    """How one call is cut into programs, and where its outputs lie in the workspace (float64 elements)."""

    block_k: int  # keys, padded to a power of 2 (GDPO: the z-scored columns)
    batch_chunk: int  # rows per step of Step 1's pass over the batch
    row_chunk: int  # rows per step of a pass over per-row values
    group_chunk: int  # sorted positions per step of the group passes
    programs: int  # statistics programs
    block: int  # sorted positions whose runs a statistics program owns
    token_rows: int  # GDPO token-count tile: rows x columns
    token_cols: int
    token_programs: int
    write_rows: int  # write tile: rows x columns
    write_cols: int
    write_grid: tuple[int, int]
    status_at: int
    summary_at: int
    workspace: int


def vector_rows(response_mask: torch.Tensor) -> bool:
    """Whether Triton's launcher will know every row of the mask starts 16-byte aligned (unit column stride, a row
    stride divisible by 16), so that the streaming loads can be vectors."""
    return response_mask.stride(1) == 1 and response_mask.stride(0) % 16 == 0


@functools.lru_cache(maxsize=256)
def plan(n: int, length: int, k: int, mask_bytes: int, gdpo: bool, vectors: bool = True) -> Plan:
    """The launch plan of one estimator for N rows of L tokens, K keys and mask_bytes per mask element; vectors:
    vector_rows(mask) (cached: nothing of it is computed again for a batch of the same shape)."""
    block_k = next_power_of_2(k)
    group_chunk = GROUP_TILE // block_k
    programs = min(MAX_STATS_PROGRAMS, cdiv(n, group_chunk))
    token_cols = min(WARP_THREADS * VECTOR_BYTES // mask_bytes, max(16, next_power_of_2(length)))
    token_rows = max(1, (TOKEN_TILE_BYTES // mask_bytes if vectors else SCALAR_TOKEN_TILE) // token_cols)
    tile = power_of_2_floor(WRITE_TILE_BYTES // (mask_bytes + 4))
    write_cols = min(tile, max(16, next_power_of_2(length)))
    write_rows = tile // write_cols
    status_at = cdiv(n, 2)
    summary_at = status_at + UNSORTED_AT.value + programs
    columns, per_row_arrays = (block_k, 2) if gdpo else (1, 0)
    workspace = summary_at + SUMMARY_ROWS.value * k + 2 * n * columns + per_row_arrays * n
    return Plan(block_k, BATCH_TILE // block_k, BATCH_TILE // 2, group_chunk, programs, cdiv(n, programs),
                token_rows, token_cols, cdiv(n, token_rows), write_rows, write_cols,
                (cdiv(n, write_rows), cdiv(length, write_cols)), status_at, summary_at, workspace)


def allocate(rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, shape: Plan,
             ids_sorted: bool):
    """(workspace, advantages (N, L) float32, ids, order): the call's two allocations, and the ids in sorted order
    with the rows they came from (the caller's ids as they are when it says they are sorted)."""
    workspace = torch.empty(shape.workspace, dtype=torch.float64, device=rewards.device)
    advantages = torch.empty(response_mask.shape, dtype=torch.float32, device=rewards.device)
    ids, order = (group_ids, group_ids) if ids_sorted else torch.sort(group_ids, stable=True)
    return workspace, advantages, ids, order


def results(workspace: torch.Tensor, advantages: torch.Tensor, shape: Plan, k: int, conditioned: bool):
    """(advantages, summary (len(SUMMARY), K) float64, or (SUMMARY_ROWS, K) with GATED_ROW when conditioned, status
    words) views of one call's outputs."""
    rows = len(SUMMARY) + conditioned
    summary = workspace[shape.summary_at:shape.summary_at + rows * k].view(rows, k)
    return advantages, summary, workspace[shape.status_at:shape.summary_at]


@triton.jit
def workspace_regions(ws_ptr, N, K, P, C):
    """(values (N,) float32, status, summary (SUMMARY_ROWS, K), group scratch (N, 2, C), per-row arrays) pointers into
    the workspace of a call with P statistics programs and C z-scored columns (the layout of `plan`)."""
    status = ws_ptr + (N + 1) // 2
    summary = status + UNSORTED_AT + P
    scratch = summary + SUMMARY_ROWS * K
    return ws_ptr.to(tl.pointer_type(tl.float32)), status, summary, scratch, scratch + 2 * N * C


@triton.jit
def _write_kernel(values_ptr, mask_ptr, out_ptr, N, L, stride_n, stride_l, BLOCK_R: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    """out[i, t] = v[i] * mask[i, t] + 0.0 for the (BLOCK_R, BLOCK_C) tile of program (row tile, column tile):
    float32, +0.0 where the mask is 0 (-0.0 + 0.0 = +0.0; the add fuses into the multiply). values: the workspace,
    whose first N float32 are v."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cols = tl.max_contiguous(tl.multiple_of(cols, 4), 4)  # four tokens a thread: the float32 store is one v4
    take = (rows < N)[:, None] & (cols < L)[None, :]
    v = tl.load(values_ptr.to(tl.pointer_type(tl.float32)) + rows, mask=rows < N, other=0)
    m = tl.load(mask_ptr + rows[:, None] * stride_n + cols[None, :] * stride_l, mask=take, other=0)
    tl.store(out_ptr + rows[:, None] * L + cols[None, :], v[:, None] * m.to(tl.float32) + 0.0, mask=take)


def write_advantages(workspace: torch.Tensor, response_mask: torch.Tensor, out: torch.Tensor, shape: Plan) -> None:
    """out (N, L) float32 = v (the workspace's first N float32) * response_mask (N, L) (any dtype / strides)."""
    if out.numel():
        _write_kernel[shape.write_grid](
            workspace, response_mask, out, out.shape[0], out.shape[1], response_mask.stride(0),
            response_mask.stride(1), BLOCK_R=shape.write_rows, BLOCK_C=shape.write_cols, num_warps=WRITE_WARPS,
        )
