"""Compile every SAW Triton kernel for sm_90 (no GPU needed: ptxas ships with Triton), read ptxas' register and
spill report, and check the layering.

Covers the constexpr variants the launchers use (mode, preset, dynamic, norm_by_std, key blocks, the tile shapes
of both geometry variants for short and long rows and small and large batches) and the reward / mask / group-id
dtypes, so a construct the NVIDIA backend rejects fails in CI rather than on the first GPU run. The streaming
kernels (the write kernels, and GDPO's statistics kernel, which streams the mask) must not spill.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from saw_verl.kernels import common, gdpo, grpo

ROOT = Path(__file__).resolve().parent.parent
TARGET = GPUTarget("cuda", 90, 32)
H100_SMS = 132
POINTER = {
    torch.bool: "*i1", torch.int8: "*i8", torch.uint8: "*u8", torch.int32: "*i32", torch.int64: "*i64",
    torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.float64: "*fp64",
}
REGISTERS = re.compile(r"Used (\d+) registers")
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_for_sm90(kernel, num_warps, types: dict, constexprs: dict, contiguous: bool = False):
    """types: pointer / integer type of every runtime argument; constexprs: every constexpr argument.

    contiguous: compile what a contiguous batch with L % 16 == 0 launches: Triton's launcher specializes an
    integer argument equal to 1 (stride_l) into a constant and marks pointers and integers divisible by 16
    (which wide loads and stores need)."""
    runtime = [p.name for p in kernel.params if not p.is_constexpr]
    constant = [p.name for p in kernel.params if p.is_constexpr]
    assert sorted(types) == sorted(runtime), f"{kernel.fn.__name__}: runtime arguments are {runtime}"
    assert sorted(constexprs) == sorted(constant), f"{kernel.fn.__name__}: constexpr arguments are {constant}"
    constexprs, attrs = dict(constexprs), {}
    if contiguous:
        constexprs.update({name: 1 for name in types if name.endswith("stride_l")})
        types = {name: kind for name, kind in types.items() if not name.endswith("stride_l")}
        unspecialized = {p.name for p in kernel.params if p.do_not_specialize}
        aligned = [name for name, kind in types.items() if name not in unspecialized
                   and (kind.startswith("*") or name in ("L", "BYTES") or name.endswith("stride_n"))]
        attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    signature = {name: types.get(name, "constexpr") for name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=TARGET, options={"num_warps": num_warps, "enable_fp_fusion": False})
    assert compiled.asm["cubin"], f"{kernel.fn.__name__}: empty cubin"
    return compiled


def ptxas_report(compiled) -> dict:
    """{registers, spill_stores, spill_loads} (bytes) from `ptxas -v` on the kernel's PTX, for sm_90a."""
    with tempfile.TemporaryDirectory() as folder:
        ptx = Path(folder) / "kernel.ptx"
        ptx.write_text(compiled.asm["ptx"])
        run = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name=sm_90a", str(ptx), "-o", str(ptx) + ".cubin"],
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    registers, spills = REGISTERS.search(run.stderr), SPILLS.search(run.stderr)
    assert registers and spills, run.stderr
    stores, loads = map(int, spills.groups())
    return {"registers": int(registers.group(1)), "spill_stores": stores, "spill_loads": loads}


def stage_pointers(rewards=torch.float64, ids=torch.int64):
    return dict(rewards_ptr=POINTER[rewards], stride_n="i32", stride_k="i32", sorted_ptr=POINTER[ids],
                order_ptr="*i64", partials_ptr="*fp64", bad_ptr="*i64", N="i32", K="i32", P="i32")


def write_pointers(mask):
    return dict(mask_ptr=POINTER[mask], stride_n="i64", stride_l="i32", out_ptr="*fp32", status_ptr="*fp64",
                consts_ptr="*fp64", N="i32", K="i32", L="i32", P="i32", COLUMN_SPAN="i32")


def shape_of(variant, n, length, block_k=1):
    return common.geometry(variant, n, length, block_k, H100_SMS)


def search(variant, n):
    ways, steps = common.search_shape(n, shape_of(variant, n, 1024).block_s)
    return dict(WAYS=ways, STEPS=steps)


def compile_grpo_write(variant, n, length, mask, rewards=torch.float64, keys=3, paper=True, dynamic=True,
                       norm_by_std=True, contiguous=False):
    block_k = triton.next_power_of_2(keys)
    shape = shape_of(variant, n, length, block_k)
    return compile_for_sm90(
        grpo._grpo_write_kernel, common.WRITE_WARPS,
        dict(write_pointers(mask), rewards_ptr=POINTER[rewards], reward_stride_n="i32", reward_stride_k="i32",
             order_ptr="*i64", partials_ptr="*fp64", bad_ptr="*i64", summary_ptr="*fp64", moments_ptr="*fp64",
             bounds_ptr="*i64"),
        dict(PAPER=paper, DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, BLOCK_R=shape.block_r, BLOCK_C=shape.block_c,
             BLOCK_K=block_k, BLOCK_S=shape.block_s),
        contiguous,
    )


def compile_gdpo_write(variant, n, length, mask, contiguous=False):
    shape = shape_of(variant, n, length)
    return compile_for_sm90(
        gdpo._gdpo_write_kernel, common.WRITE_WARPS,
        dict(write_pointers(mask), scores_ptr="*fp64", whiten_ptr="*fp64", bits_ptr="*u8", odd_ptr="*i32",
             BYTES="i32"),
        dict(BLOCK_R=shape.block_r, BLOCK_C=shape.block_c),
        contiguous,
    )


def compile_gdpo_stats(variant, n, length, mask, rewards=torch.float64, ids=torch.int64, keys=3, contiguous=False):
    token_rows, block_l = gdpo.token_tile(length)
    return compile_for_sm90(
        gdpo._gdpo_stats_kernel, common.STATS_WARPS,
        dict(stage_pointers(rewards, ids), pieces_ptr="*fp64", mask_ptr=POINTER[mask], mask_stride_n="i64",
             mask_stride_l="i32", tokens_ptr="*fp64", odd_ptr="*i32", bits_ptr="*u8", L="i32", BYTES="i32"),
        dict(BLOCK_S=shape_of(variant, n, length).block_s, BLOCK_K=triton.next_power_of_2(keys), BLOCK_L=block_l,
             TOKEN_ROWS=token_rows),
        contiguous,
    )


@pytest.mark.parametrize("variant,n,rewards,ids,keys", [
    ("tiled", 16384, torch.float64, torch.int64, 3), ("persistent", 4096, torch.bfloat16, torch.int32, 16),
    ("persistent", 2**20, torch.float16, torch.int64, 1),
], ids=str)
def test_grpo_stats_kernel_compiles(variant, n, rewards, ids, keys):
    compile_for_sm90(
        grpo._grpo_stats_kernel, common.STATS_WARPS,
        dict(stage_pointers(rewards, ids), moments_ptr="*fp64", bounds_ptr="*i64"),
        dict(BLOCK_S=shape_of(variant, n, 1024).block_s, BLOCK_K=triton.next_power_of_2(keys),
             **search(variant, n)),
    )


@pytest.mark.parametrize("variant,n,rewards,mask,ids,keys,length", [
    ("tiled", 4096, torch.float32, torch.bool, torch.int32, 3, 4096),
    ("persistent", 16384, torch.bfloat16, torch.int64, torch.int64, 16, 20),
    ("persistent", 1024, torch.float16, torch.float32, torch.int64, 1, 1024),
], ids=str)
def test_gdpo_stats_kernel_compiles(variant, n, rewards, mask, ids, keys, length):
    compile_gdpo_stats(variant, n, length, mask, rewards, ids, keys)


@pytest.mark.parametrize("variant,n,paper,dynamic,norm_by_std,keys", [
    ("tiled", 16384, True, True, True, 3), ("persistent", 4096, False, False, False, 16),
], ids=str)
def test_gdpo_scores_kernel_compiles(variant, n, paper, dynamic, norm_by_std, keys):
    compile_for_sm90(
        gdpo._gdpo_scores_kernel, common.STATS_WARPS,
        dict(stage_pointers(), consts_ptr="*fp64", summary_ptr="*fp64", status_ptr="*fp64", pieces_ptr="*fp64",
             tokens_ptr="*fp64", scores_ptr="*fp64", whiten_ptr="*fp64"),
        dict(PAPER=paper, DYNAMIC=dynamic, NORM_BY_STD=norm_by_std, BLOCK_K=triton.next_power_of_2(keys),
             BLOCK_S=shape_of(variant, n, 1024).block_s, **search(variant, n)),
    )


@pytest.mark.parametrize("variant,n,paper,dynamic,norm_by_std,rewards,mask,keys,length", [
    ("tiled", 4096, False, True, False, torch.bfloat16, torch.int64, 3, 20),
    ("persistent", 4096, True, False, True, torch.float32, torch.float32, 1, 1000),
    ("persistent", 300, True, True, True, torch.float16, torch.bool, 16, 20),
], ids=str)
def test_grpo_write_kernel_options_compile(variant, n, paper, dynamic, norm_by_std, rewards, mask, keys, length):
    compile_grpo_write(variant, n, length, mask, rewards, keys, paper, dynamic, norm_by_std)


# The benchmark shapes (N x L = 1M, 16M, 64M and 1M rows of 20 tokens) in both variants, bool and int64 masks.
STREAMING = [(variant, n, length, mask) for variant in common.VARIANTS
             for n, length in [(1024, 1024), (4096, 4096), (16384, 4096), (2**20, 20)]
             for mask in (torch.bool, torch.int64)]


@pytest.mark.parametrize("variant,n,length,mask", STREAMING, ids=str)
def test_write_kernels_do_not_spill(variant, n, length, mask):
    """ptxas' report for sm_90a: 0 bytes of spill stores and loads in both write kernels."""
    for name, compiled in (("grpo", compile_grpo_write(variant, n, length, mask, contiguous=True)),
                           ("gdpo", compile_gdpo_write(variant, n, length, mask, contiguous=True))):
        report = ptxas_report(compiled)
        print(name, variant, n, length, mask, report)
        assert report["spill_stores"] == 0 and report["spill_loads"] == 0, (name, report)


@pytest.mark.parametrize("mask", [torch.bool, torch.int64], ids=str)
def test_gdpo_stats_kernel_streams_the_mask_without_spilling(mask):
    report = ptxas_report(compile_gdpo_stats("persistent", 16384, 4096, mask, contiguous=True))
    print(report)
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, report


def test_kernels_are_a_leaf():
    """kernels/ imports torch and triton only: nothing of saw_verl (config, result, reference...)."""
    allowed = {"__future__", "dataclasses", "functools", "torch", "triton", "triton.language"}
    for path in sorted((ROOT / "kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module in allowed, f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert {alias.name for alias in node.names} <= allowed, f"{path.name} imports {ast.dump(node)}"


BLOCK_TRAINERS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"verl", "ray", "transformers", "trl", "openrlhf"}:
            raise ImportError(f"{name} is blocked: a bare CUDA machine has no trainer")
sys.meta_path.insert(0, Block())
import torch, saw_verl, saw_verl.kernels, saw_verl.triton_backend
from saw_verl import SawConfig, saw_advantages
result = saw_advantages(torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([7, 7, -7]), torch.ones(3, 2),
                        SawConfig(("score",), mode="gdpo"))
print(sorted(m for m in sys.modules if m.split(".")[0] in {"verl", "ray", "transformers"}), result.advantages.shape)
"""


def test_core_and_kernels_import_and_run_without_any_trainer():
    run = subprocess.run([sys.executable, "-c", BLOCK_TRAINERS], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[] torch.Size([3, 2])"
