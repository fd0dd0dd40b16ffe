"""Host side of the SAW kernels: allocate, launch, return (no host sync, no torch op besides the sort).

Launches per call (the sort of the group ids counts as one; see saw_verl.triton_backend.LAUNCHES):
  GRPO: sort, _stats_kernel (+ group moments and bounds), _grpo_write_kernel
  GDPO: sort, _stats_kernel (+ token counts and bit copy of the mask), _gdpo_scores_kernel, _gdpo_write_kernel
Outputs are torch.empty (no zero-fill). The status word (2,) float64 holds the first non-finite reward
as a flat index row * K + key (N * K if none) and, for GDPO, M = sum of the mask; the write kernel
writes nothing when it is bad, and the caller reads it once.
"""

from __future__ import annotations

import torch
import triton

from .batch_stats import NUM_WARPS, PARTIAL_STATS, _stats_kernel, stats_grid, token_tile
from .common import BLOCK_S, FINAL_BLOCK, PIECE_STATS, SMALL_BLOCK_S, search_steps
from .group_scores import WHITEN_PARTIALS, _gdpo_scores_kernel
from .token_pass import NUM_WARPS as WRITE_WARPS
from .token_pass import _gdpo_write_kernel, _grpo_write_kernel, tile_shape


def saw_kernels(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, constants: torch.Tensor,
    mode: str, preset: str, dynamic: bool, norm_by_std: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards (N, K) float (any float dtype / strides), group_ids (N,) integer (any values, unsorted),
    response_mask (N, L) any dtype / strides, constants (4 + 2K,) float64 (common.constants_vector); all on
    one device, shapes already checked, N >= 2.

    Returns (advantages (N, L) float32, summary (5, K) float64 rows weights / cv / mean / std / coef,
    status (2,) float64). Read the status before trusting the rest.
    """
    n, k = rewards.shape
    length = response_mask.shape[1]
    gdpo = mode == "gdpo"
    device = rewards.device
    f64 = dict(dtype=torch.float64, device=device)
    sorted_ids, order = torch.sort(group_ids, stable=True)
    block_s = SMALL_BLOCK_S if n <= SMALL_BLOCK_S else BLOCK_S  # small batches: one small block, two variants
    blocks, grid = stats_grid(n, length, block_s, gdpo)
    token_rows, block_l = token_tile(length)
    block_k = triton.next_power_of_2(k)
    steps = search_steps(n)
    partials = torch.empty(PARTIAL_STATS, blocks, k, **f64)
    bad = torch.empty(blocks, dtype=torch.int64, device=device)
    summary = torch.empty(5, k, **f64)
    status = torch.empty(2, **f64)
    advantages = torch.empty(n, length, dtype=torch.float32, device=device)
    if gdpo:
        pieces = torch.empty(PIECE_STATS, n, k, **f64)
        bounds = bad  # unused by GDPO
        tokens = torch.empty(n, **f64)
        odd = torch.empty(n, dtype=torch.int32, device=device)
        bits = torch.empty(n, triton.cdiv(length, 8), dtype=torch.uint8, device=device)
    else:
        pieces = torch.empty(n, k + k * k, **f64)  # the group moments (summed_moments)
        bounds = torch.empty(2, n, dtype=torch.int64, device=device)
        tokens = odd = bits = partials  # unused by GRPO
    unfused = dict(enable_fp_fusion=False)  # no fma contraction: every kernel rounds a * b + c the same way
    reward_args = (rewards, rewards.stride(0), rewards.stride(1))
    mask_args = (response_mask, response_mask.stride(0), response_mask.stride(1))
    _stats_kernel[(grid,)](
        *reward_args, sorted_ids, order, partials, bad, pieces, bounds, *mask_args, tokens, odd, bits,
        n, k, length, bits.shape[1] if gdpo else 0, blocks, steps,
        BLOCK_S=block_s, BLOCK_K=block_k, GDPO=gdpo, BLOCK_L=block_l, TOKEN_ROWS=token_rows, num_warps=NUM_WARPS,
        **unfused,
    )
    stage2 = dict(PAPER=preset == "paper", DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, BLOCK_S=block_s,
                  BLOCK_K=block_k, FINAL_BLOCK=FINAL_BLOCK, **unfused)
    if not gdpo:
        block_r, block_c = tile_shape(length, block_k)
        _grpo_write_kernel[(triton.cdiv(n, block_r), max(1, triton.cdiv(length, block_c)))](
            *mask_args, advantages, status, constants, n, k, length, blocks,
            *reward_args, order, partials, bad, summary, pieces, bounds,
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=WRITE_WARPS, **stage2,
        )
        return advantages, summary, status
    scores = torch.empty(n, **f64)
    whiten = torch.empty(WHITEN_PARTIALS, blocks, **f64)
    _gdpo_scores_kernel[(blocks,)](*reward_args, sorted_ids, order, partials, bad, constants, summary, status, pieces,
                                   tokens, scores, whiten, n, k, blocks, steps, num_warps=NUM_WARPS, **stage2)
    if length:
        block_r, block_c = tile_shape(length)
        _gdpo_write_kernel[(triton.cdiv(n, block_r), triton.cdiv(length, block_c))](
            *mask_args, advantages, status, constants, n, k, length, blocks, scores, whiten, bits, odd,
            bits.shape[1], BLOCK_R=block_r, BLOCK_C=block_c, FINAL_BLOCK=FINAL_BLOCK, num_warps=WRITE_WARPS,
            **unfused,
        )
    return advantages, summary, status
