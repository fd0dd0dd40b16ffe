"""The two passes over the (N, L) response mask (masks of any dtype and strides).

_row_tokens_kernel (GDPO only): per-row token counts n_j for the whitening, a bit-packed copy of the
  mask (1 bit per token, (N, ceil(L/8)) uint8) and a per-row count of entries that are neither 0 nor 1.
_write_advantages_kernel: advantages[j, t] = value(j) * mask[j, t] in float32, where value is the
  per-row score, whitened in GDPO. It reads the packed copy when the mask is binary, else the mask.

Bytes per token, e = mask element size: GRPO e + 4 (the floor: read the mask, write fp32 once);
GDPO e + 1/8 (count, write bits) + 1/8 + 4 (read bits, write) = e + 4.25; a non-binary mask: 2e + 4.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_L = 1024  # tokens of one row per program step; a multiple of 8
NUM_WARPS = 4


def packed_width(length: int) -> int:
    return triton.cdiv(length, 8)


@triton.jit
def _row_tokens_kernel(mask_ptr, stride_n, stride_l, tokens_ptr, odd_ptr, bits_ptr, L, BYTES, BLOCK_L: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    steps = tl.arange(0, BLOCK_L)
    shifts = tl.arange(0, 8)
    count = tl.zeros((BLOCK_L,), tl.float32)
    odd = tl.zeros((BLOCK_L,), tl.int32)
    for start in range(0, L, BLOCK_L):
        cols = start + steps.to(tl.int64)
        m = tl.load(mask_ptr + row * stride_n + cols * stride_l, mask=cols < L, other=0)
        count += m.to(tl.float32)
        odd += ((m != 0) & (m != 1)).to(tl.int32)
        bits = tl.reshape((m != 0).to(tl.int32), (BLOCK_L // 8, 8)) << shifts[None, :]
        byte = start // 8 + tl.arange(0, BLOCK_L // 8)
        tl.store(bits_ptr + row * BYTES + byte, tl.sum(bits, axis=1).to(tl.uint8), mask=byte < BYTES)
    tl.store(tokens_ptr + row, tl.sum(count, axis=0))
    tl.store(odd_ptr + row, tl.sum(odd, axis=0))


@triton.jit
def _write_advantages_kernel(
    scores_ptr, whiten_ptr, src_ptr, stride_n, stride_l, out_ptr, L,
    BLOCK_L: tl.constexpr, WHITEN: tl.constexpr, PACKED: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    value = tl.load(scores_ptr + row)
    if WHITEN:  # whiten_ptr -> (M, mean, 1 / sqrt(var + eps), ...)
        value = (value - tl.load(whiten_ptr + 1)) * tl.load(whiten_ptr + 2)
    cols = block * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    if PACKED:  # src is the (N, ceil(L/8)) bit copy, contiguous
        byte = block * (BLOCK_L // 8) + tl.arange(0, BLOCK_L // 8)
        packed = tl.load(src_ptr + row * stride_n + byte, mask=byte < (L + 7) // 8, other=0).to(tl.int32)
        m = tl.reshape((packed[:, None] >> tl.arange(0, 8)[None, :]) & 1, (BLOCK_L,))
    else:
        m = tl.load(src_ptr + row * stride_n + cols * stride_l, mask=cols < L, other=0)
    tl.store(out_ptr + row * L + cols, value.to(tl.float32) * m.to(tl.float32), mask=cols < L)


def row_tokens(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mask (N, L) any dtype/strides -> (tokens (N,) float32, non-binary entries (N,) int32, bits (N, ceil(L/8)) uint8).

    Counts are exact for 0/1 masks (float32 sums, rows shorter than 2^24 tokens).
    """
    n, length = mask.shape
    tokens = torch.empty(n, dtype=torch.float32, device=mask.device)
    odd = torch.empty(n, dtype=torch.int32, device=mask.device)
    bits = torch.empty(n, packed_width(length), dtype=torch.uint8, device=mask.device)
    _row_tokens_kernel[(n,)](
        mask, mask.stride(0), mask.stride(1), tokens, odd, bits, length, bits.shape[1],
        BLOCK_L=BLOCK_L, num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    return tokens, odd, bits


def write_advantages(
    scores: torch.Tensor, source: torch.Tensor, length: int, packed: bool, whiten: torch.Tensor | None = None
) -> torch.Tensor:
    """scores (N,); source: the (N, L) mask, or its bits from row_tokens when packed; whiten from whiten_stats.

    Returns advantages (N, L) float32.
    """
    n = scores.shape[0]
    out = torch.empty(n, length, dtype=torch.float32, device=scores.device)
    if n and length:
        _write_advantages_kernel[(n, triton.cdiv(length, BLOCK_L))](
            scores, scores if whiten is None else whiten, source, source.stride(0), source.stride(1), out, length,
            BLOCK_L=BLOCK_L, WHITEN=whiten is not None, PACKED=packed, num_warps=NUM_WARPS, enable_fp_fusion=False,
        )
    return out
