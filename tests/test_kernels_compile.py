"""Compile every SAW Triton kernel for sm_90 as its launcher launches it (no GPU needed: ptxas ships with Triton),
read the PTX and ptxas' register and spill report, and check the layering.

The launchers run on CPU tensors with Triton's launch intercepted: each kernel is compiled from the arguments the
launcher really passes, specialised by Triton's own binder for a CUDA target (16-byte alignment of pointers and
integers, integers equal to 1), so the PTX is what a GPU of that generation would run. The streaming code (the
write kernel, the GDPO token count) must load the mask in wide vectors and store float32 in v4 vectors, with no
bar.sync in its loop; no kernel may spill.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

from saw_verl.kernels import common, constants_vector, gdpo, gdpo_advantages, grpo_advantages

ROOT = Path(__file__).resolve().parent.parent
TARGET = GPUTarget("cuda", 90, 32)
BACKEND = make_backend(TARGET)
REGISTERS = re.compile(r"Used (\d+) registers")
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
MASKS = (torch.bool, torch.uint8, torch.int32, torch.int64, torch.float32)
SHAPES = [(1024, 1024), (4096, 4096), (16384, 4096)]  # N x L = 1M, 16M, 64M tokens: the benchmark's


def launches(estimator, *args, **kwargs) -> list:
    """[(kernel, args, kwargs)] of every Triton launch of one call of a launcher, none of them run."""
    found = []

    def capture(self, *args, grid, warmup, **kwargs):
        found.append((self, args, kwargs))

    with mock.patch.object(JITFunction, "run", capture):
        estimator(*args, **kwargs)
    return found


def compile_as_launched(kernel, args, kwargs):
    """The kernel compiled for sm_90 exactly as JITFunction.run would compile it for these arguments."""
    kwargs = dict(kwargs, debug=False)
    binder = create_function_from_signature(kernel.signature, kernel.params, BACKEND)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(BACKEND, kwargs, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=TARGET, options=options.__dict__)
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


def loops(ptx: str) -> list[list[str]]:
    """The body of every loop of the PTX: from a label to the last branch back to it."""
    lines = ptx.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"\s*(\$L__\w+):", line))}
    spans = {}
    for i, line in enumerate(lines):
        m = re.search(r"\bbra(?:\.uni)?\s+(\$L__\w+);", line)
        if m and labels.get(m.group(1), i) < i:
            spans[m.group(1)] = (labels[m.group(1)], i)
    return [lines[a:b + 1] for a, b in spans.values()]


def streaming_code(ptx: str, function) -> list[str]:
    """The PTX of `function`'s hot loop: each loop whose lines come from its source (PTX .loc records), or, where
    it has none, the whole kernel."""
    source, first = inspect.getsourcelines(function.fn)
    files = {m.group(1) for m in re.finditer(r'\.file\s+(\d+)\s+"([^"]+)"', ptx)
             if Path(m.group(2)).name == Path(inspect.getsourcefile(function.fn)).name}
    ours = re.compile(r"\.loc\s+(\d+)\s+(\d+)\s")

    def inside(line):
        m = ours.search(line)
        return bool(m) and m.group(1) in files and first <= int(m.group(2)) < first + len(source)

    hot = [body for body in loops(ptx) if any(inside(line) for line in body)]
    return [line for body in hot for line in body] if hot else ptx.splitlines()


WIDTH = {"b8": 1, "u8": 1, "s8": 1, "b16": 2, "u16": 2, "b32": 4, "u32": 4, "s32": 4, "f32": 4, "b64": 8, "u64": 8,
         "s64": 8, "f64": 8}


def memory_widths(lines: list[str]) -> dict:
    """{"loads": {bytes per instruction: count}, "stores": {...}, "bar.sync": count} of global memory code."""
    out = {"loads": {}, "stores": {}, "bar.sync": 0}
    for line in lines:
        m = re.search(r"\b(ld|st)\.global(?:\.[\w:]+)*?(?:\.v(\d))?\.([bsuf]\d+)\s", line)
        if m:
            kind = "loads" if m.group(1) == "ld" else "stores"
            width = int(m.group(2) or 1) * WIDTH[m.group(3)]
            out[kind][width] = out[kind].get(width, 0) + 1
        out["bar.sync"] += "bar.sync" in line or "barrier.sync" in line
    return out


def a_batch(n: int, length: int, mask_dtype, keys: int = 3, rewards_dtype=torch.float64, ids_dtype=torch.int64):
    rewards = torch.rand(n, keys, dtype=torch.float64).to(rewards_dtype)
    constants = torch.tensor(constants_vector(1e-8, 1e-6, 1e-8, 1e-8, 0.0, [0.0] * keys, [1.0] * keys),
                             dtype=torch.float64)
    return rewards, (torch.arange(n) // 16).to(ids_dtype), torch.ones(n, length, dtype=mask_dtype), constants


STREAMING = {"_write_kernel": common._write_kernel, "_gdpo_stats_kernel": gdpo.count_tokens}


@pytest.mark.parametrize("n,length", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("mask", MASKS, ids=str)
def test_streaming_code_moves_wide_vectors_without_barriers_or_spills(mask, n, length):
    """Per mask dtype, as launched for the benchmark's shapes: the mask read in vectors of at least 4 bytes (1-byte
    masks) or 16 bytes (4- and 8-byte masks), float32 stored in v4, no bar.sync in the hot loop, no spill."""
    element = torch.empty(0, dtype=mask).element_size()
    for estimator in (grpo_advantages, gdpo_advantages):
        rewards, ids, mask_tensor, constants = a_batch(n, length, mask)
        for kernel, args, kwargs in launches(estimator, rewards, ids, mask_tensor, constants, "paper", True, True):
            name = kernel.fn.__name__
            compiled = compile_as_launched(kernel, args, kwargs)
            report = ptxas_report(compiled)
            assert report["spill_stores"] == report["spill_loads"] == 0, (name, report)
            if name not in STREAMING:
                continue
            widths = memory_widths(streaming_code(compiled.asm["ptx"], STREAMING[name]))
            print(estimator.__name__, name, mask, n, length, widths, report)
            assert widths["bar.sync"] == 0, (name, widths)
            assert widths["loads"] and min(widths["loads"]) >= 4, (name, widths)  # v (one float32 a row) included
            assert max(widths["loads"]) >= min(16, 4 * element), (name, widths)  # the mask
            if name == "_write_kernel":
                assert set(widths["stores"]) == {16}, (name, widths)


@pytest.mark.parametrize("estimator", [grpo_advantages, gdpo_advantages], ids=lambda f: f.__name__)
@pytest.mark.parametrize("options", [
    dict(keys=1, rewards_dtype=torch.float16, preset="official", dynamic=False, norm_by_std=False, ids_sorted=False),
    dict(keys=3, rewards_dtype=torch.float64, preset="paper", dynamic=True, norm_by_std=True, ids_sorted=True,
         history=True),
    dict(keys=9, rewards_dtype=torch.bfloat16, preset="paper", dynamic=True, norm_by_std=False, ids_sorted=False,
         ids_dtype=torch.int32),
    dict(keys=16, rewards_dtype=torch.float32, preset="official", dynamic=True, norm_by_std=True, ids_sorted=True,
         history=True),
], ids=["K1-fp16-official", "K3-fp64-paper-sorted-history", "K9-bf16-int32-ids", "K16-fp32-sorted-history"])
def test_every_option_compiles_without_spills(estimator, options):
    """The constexpr variants the launchers use (preset, dynamic, norm_by_std, sorted ids, a history pool, key
    blocks 1 to 16) and the reward / group-id dtypes compile for sm_90 without spilling, so a construct the NVIDIA
    backend rejects fails in CI rather than on the first GPU run."""
    options = dict(options)
    keys = options.pop("keys")
    batch = a_batch(300, 20, torch.bool, keys, options.pop("rewards_dtype"), options.pop("ids_dtype", torch.int64))
    if options.pop("history", False):
        options.update(pool=torch.zeros(common.POOL_ROWS, keys, dtype=torch.float64),
                       pool_out=torch.empty(common.POOL_ROWS, keys, dtype=torch.float64))
    flags = (options.pop("preset"), options.pop("dynamic"), options.pop("norm_by_std"))
    for kernel, args, kwargs in launches(estimator, *batch, *flags, **options):
        report = ptxas_report(compile_as_launched(kernel, args, kwargs))
        print(kernel.fn.__name__, report)
        assert report["spill_stores"] == report["spill_loads"] == 0, (kernel.fn.__name__, report)


CHAINS = {  # levels -> conditions (key, condition key, threshold, fill) on 3 keys, a chain of that depth
    1: ((1, 0, 0.5, 0.0),),
    2: ((1, 0, 0.5, 0.0), (2, 1, 0.5, 0.25)),
}


@pytest.mark.parametrize("levels", list(CHAINS))
@pytest.mark.parametrize("estimator", [grpo_advantages, gdpo_advantages], ids=lambda f: f.__name__)
def test_conditions_compile_without_spills_and_leave_the_streaming_code_alone(estimator, levels):
    """Conditions in the constants (a chain of depth 1 or 2, a constexpr number of levels) compile for sm_90 without
    spilling; the kernels that do not read rewards compile to the unconditioned PTX (the write, the GDPO
    whitening), the token count keeps its loop free of bar.sync, and the statistics kernel gains at most one
    bar.sync (the gated count, reduced with Step 1's extremes)."""
    rewards, ids, mask, plain = a_batch(300, 20, torch.bool)
    conditioned = torch.tensor(constants_vector(1e-8, 1e-6, 1e-8, 1e-8, 0.0, [0.0] * 3, [1.0] * 3, CHAINS[levels]),
                               dtype=torch.float64)
    assert common.condition_levels(conditioned, 3) == levels and common.condition_levels(plain, 3) == 0
    before = {kernel.fn.__name__: compile_as_launched(kernel, args, kwargs).asm["ptx"]
              for kernel, args, kwargs in launches(estimator, rewards, ids, mask, plain, "paper", True, True)}
    for kernel, args, kwargs in launches(estimator, rewards, ids, mask, conditioned, "paper", True, True):
        name = kernel.fn.__name__
        compiled = compile_as_launched(kernel, args, kwargs)
        report = ptxas_report(compiled)
        print(estimator.__name__, levels, name, report)
        assert report["spill_stores"] == report["spill_loads"] == 0, (name, report)
        ptx = compiled.asm["ptx"]
        if "stats" in name:
            assert ptx.count("bar.sync") <= before[name].count("bar.sync") + 1, name
        else:
            assert ptx == before[name], f"{name} changed with conditions"
        if name == "_gdpo_stats_kernel":
            assert memory_widths(streaming_code(ptx, gdpo.count_tokens))["bar.sync"] == 0, name


def test_performance_model_constants_are_its_fit():
    """benchmarks/perf_model.py's constants are what its fit gives on the stored H200 measurements of 669f4b6."""
    from benchmarks import perf_model

    constants, error = perf_model.fit()
    assert constants == (perf_model.LATENCY_US, perf_model.ROUND_US, perf_model.LAUNCH_US), constants
    assert error < 0.3, error
    assert perf_model.host_fit() == (perf_model.TRITON_LAUNCH_US, perf_model.OTHER_HOST_US)


def test_kernels_are_a_leaf():
    """kernels/ imports torch, triton and the standard library only: nothing of saw_verl (config, result,
    reference...)."""
    allowed = {"__future__", "functools", "importlib", "typing", "torch", "triton", "triton.language"}
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
