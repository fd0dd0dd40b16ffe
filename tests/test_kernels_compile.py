"""Compile every SAW Triton kernel for sm_90 (no GPU needed: ptxas ships with Triton).

Covers each constexpr variant the launchers use (mode / preset / dynamic / norm_by_std / packed /
whiten flags, float32 and float64 accumulators, every mask dtype, key blocks 1..16), so a construct
the NVIDIA backend rejects fails in CI rather than on the first GPU run.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("kernels are interpreted in this process: nothing to compile", allow_module_level=True)
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from saw_verl.kernels import batch_weights, group_scores, token_pass, whiten  # noqa: E402
from saw_verl.kernels.common import tl_dtype  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
POINTER = {
    torch.bool: "*i1", torch.int8: "*i8", torch.uint8: "*u8", torch.int16: "*i16", torch.int32: "*i32",
    torch.int64: "*i64", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32",
    torch.float64: "*fp64",
}
MASK_DTYPES = [torch.bool, torch.int8, torch.uint8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
               torch.float32, torch.float64]
REWARD_DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def compile_for_sm90(kernel, num_warps, types: dict, constexprs: dict):
    """types: pointer / integer type of every runtime argument; constexprs: every constexpr argument."""
    runtime = [p.name for p in kernel.params if not p.is_constexpr]
    constant = [p.name for p in kernel.params if p.is_constexpr]
    assert sorted(types) == sorted(runtime), f"{kernel.fn.__name__}: runtime arguments are {runtime}"
    assert sorted(constexprs) == sorted(constant), f"{kernel.fn.__name__}: constexpr arguments are {constant}"
    signature = {name: types.get(name, "constexpr") for name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=TARGET, options={"num_warps": num_warps, "enable_fp_fusion": False})
    assert compiled.asm["cubin"], f"{kernel.fn.__name__}: empty cubin"


def acc_of(dtype):
    return tl_dtype(torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("dtype", REWARD_DTYPES, ids=str)
@pytest.mark.parametrize("paper,dynamic,gdpo", list(itertools.product([True, False], repeat=3)),
                         ids=lambda v: str(v))
def test_batch_weights_kernel_compiles(dtype, paper, dynamic, gdpo):
    block_n, block_k = batch_weights.block_sizes(3)
    compile_for_sm90(
        batch_weights._batch_weights_kernel, batch_weights.NUM_WARPS,
        dict(rewards_ptr=POINTER[dtype], stride_n="i32", stride_k="i32", consts_ptr="*fp64", summary_ptr="*fp64",
             N="i32", K="i32"),
        dict(ACC=acc_of(dtype), BLOCK_N=block_n, BLOCK_K=block_k, PAPER=paper, DYNAMIC=dynamic, GDPO=gdpo),
    )


@pytest.mark.parametrize("num_keys", [1, 2, 5, 16], ids=lambda k: f"K{k}")
def test_batch_weights_kernel_compiles_for_key_blocks(num_keys):
    block_n, block_k = batch_weights.block_sizes(num_keys)
    compile_for_sm90(
        batch_weights._batch_weights_kernel, batch_weights.NUM_WARPS,
        dict(rewards_ptr="*fp64", stride_n="i32", stride_k="i32", consts_ptr="*fp64", summary_ptr="*fp64",
             N="i32", K="i32"),
        dict(ACC=acc_of(torch.float64), BLOCK_N=block_n, BLOCK_K=block_k, PAPER=True, DYNAMIC=True, GDPO=True),
    )


@pytest.mark.parametrize("num_keys", [1, 3, 16], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("dtype", REWARD_DTYPES, ids=str)
@pytest.mark.parametrize("gdpo,norm_by_std", list(itertools.product([True, False], repeat=2)), ids=lambda v: str(v))
def test_group_scores_kernel_compiles(num_keys, dtype, gdpo, norm_by_std):
    block_k = triton.next_power_of_2(num_keys)
    acc = acc_of(dtype)
    compile_for_sm90(
        group_scores._group_scores_kernel, group_scores.NUM_WARPS,
        dict(rewards_ptr=POINTER[dtype], stride_n="i32", stride_k="i32", coef_ptr="*fp64", order_ptr="*i64",
             offsets_ptr="*i64", consts_ptr="*fp64", scores_ptr="*fp64" if dtype == torch.float64 else "*fp32",
             K="i32"),
        dict(ACC=acc, BLOCK_G=group_scores.BLOCK_G, BLOCK_K=block_k, COLUMNS=block_k if gdpo else 1,
             GDPO=gdpo, NORM_BY_STD=norm_by_std),
    )


@pytest.mark.parametrize("mask_dtype", MASK_DTYPES, ids=str)
def test_row_tokens_kernel_compiles(mask_dtype):
    compile_for_sm90(
        token_pass._row_tokens_kernel, token_pass.NUM_WARPS,
        dict(mask_ptr=POINTER[mask_dtype], stride_n="i64", stride_l="i32", tokens_ptr="*fp32", odd_ptr="*i32",
             bits_ptr="*u8", L="i32", BYTES="i32"),
        dict(BLOCK_L=token_pass.BLOCK_L),
    )


@pytest.mark.parametrize("scores_dtype", [torch.float32, torch.float64], ids=str)
def test_whiten_stats_kernel_compiles(scores_dtype):
    compile_for_sm90(
        whiten._whiten_stats_kernel, whiten.NUM_WARPS,
        dict(scores_ptr=POINTER[scores_dtype], tokens_ptr="*fp32", odd_ptr="*i32", consts_ptr="*fp64",
             stats_ptr="*fp64", N="i32"),
        dict(BLOCK_N=whiten.BLOCK_N),
    )


WRITE_VARIANTS = (
    [(torch.float64, mask, False, False) for mask in MASK_DTYPES]  # GRPO: value x mask
    + [(torch.float64, torch.uint8, True, True), (torch.float32, torch.uint8, True, True)]  # GDPO, bit copy
    + [(scores, mask, True, False) for scores in (torch.float32, torch.float64)
       for mask in (torch.float32, torch.int64)]
)


@pytest.mark.parametrize("scores_dtype,source_dtype,whiten_on,packed", WRITE_VARIANTS, ids=str)
def test_write_advantages_kernel_compiles(scores_dtype, source_dtype, whiten_on, packed):
    compile_for_sm90(
        token_pass._write_advantages_kernel, token_pass.NUM_WARPS,
        dict(scores_ptr=POINTER[scores_dtype], whiten_ptr="*fp64" if whiten_on else POINTER[scores_dtype],
             src_ptr=POINTER[source_dtype], stride_n="i64", stride_l="i32", out_ptr="*fp32", L="i32"),
        dict(BLOCK_L=token_pass.BLOCK_L, WHITEN=whiten_on, PACKED=packed),
    )
