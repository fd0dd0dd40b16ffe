"""GDPO's token-weighted whitening statistics (verl's masked_whiten, one value per row).

With n_j response tokens in row j and M = sum_j n_j:
  mean = sum_j n_j S_j / M,  var = sum_j n_j (S_j - mean)^2 / (M - 1)  (Bessel),
One program, two passes over the N scores (fixed order, no atomics), always in float64: M passes
2^24 at real sizes (16384 x 4096 tokens), where float32 stops counting exactly. Writes
  stats = (M, mean, 1 / sqrt(var + 1e-8), rows whose mask has entries other than 0 and 1).
Readable reference: the GDPO branch of saw_verl.reference.reference_saw_advantages.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import WHITEN_EPS_AT

BLOCK_N = 2048
NUM_WARPS = 8
STATS = ("tokens", "mean", "inv_std", "non_binary_rows")


@triton.jit
def _whiten_stats_kernel(scores_ptr, tokens_ptr, odd_ptr, consts_ptr, stats_ptr, N, BLOCK_N: tl.constexpr):
    steps = tl.arange(0, BLOCK_N)
    total = tl.zeros((BLOCK_N,), tl.float64)
    weighted = tl.zeros((BLOCK_N,), tl.float64)
    odd_rows = tl.zeros((BLOCK_N,), tl.int32)
    for start in range(0, N, BLOCK_N):
        rows = start + steps
        inside = rows < N
        n = tl.load(tokens_ptr + rows, mask=inside, other=0).to(tl.float64)
        total += n
        weighted += n * tl.load(scores_ptr + rows, mask=inside, other=0).to(tl.float64)
        odd_rows += (tl.load(odd_ptr + rows, mask=inside, other=0) != 0).to(tl.int32)
    tokens = tl.sum(total, axis=0)
    mean = tl.sum(weighted, axis=0) / tl.maximum(tokens, 1)  # M < 2 is refused by the host; no 0 / 0 here
    squares = tl.zeros((BLOCK_N,), tl.float64)
    for start in range(0, N, BLOCK_N):
        rows = start + steps
        inside = rows < N
        n = tl.load(tokens_ptr + rows, mask=inside, other=0).to(tl.float64)
        centred = tl.load(scores_ptr + rows, mask=inside, other=0).to(tl.float64) - mean
        squares += n * centred * centred
    variance = tl.sum(squares, axis=0) / tl.maximum(tokens - 1, 1)
    eps = tl.load(consts_ptr + WHITEN_EPS_AT).to(tl.float64)
    tl.store(stats_ptr + 0, tokens)
    tl.store(stats_ptr + 1, mean)
    tl.store(stats_ptr + 2, 1 / tl.sqrt(variance + eps))
    tl.store(stats_ptr + 3, tl.sum(odd_rows, axis=0).to(tl.float64))


def whiten_stats(scores: torch.Tensor, tokens: torch.Tensor, odd: torch.Tensor, consts: torch.Tensor) -> torch.Tensor:
    """scores (N,) float; tokens (N,) float32 and odd (N,) int32 from row_tokens -> stats (4,) float64 (STATS)."""
    stats = torch.empty(len(STATS), dtype=torch.float64, device=scores.device)
    _whiten_stats_kernel[(1,)](
        scores, tokens, odd, consts, stats, scores.shape[0],
        BLOCK_N=BLOCK_N, num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    return stats
