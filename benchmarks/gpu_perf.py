"""GPU performance of the SAW Triton kernels: every kernel variant (saw_verl.kernels.VARIANTS) side by side, in
one command for a bare H100 / H200 (torch, triton, numpy; no install, no network), in under 5 minutes:

    python -m benchmarks.gpu_perf [--out DIR]           (from the repository root)

For N x L = 1M, 16M, 64M tokens (K = 3, groups of 16, sparse int64 ids), bool and int64 masks, GRPO and GDPO,
each variant: the device time of each kernel of one call (torch.profiler's CUDA kernel durations; the sort's
internal kernels summed as "torch.sort"), the call as a user sees it (wall time of saw_advantages' Triton path,
host work, launches and the one host read included), the floor (the call's minimum bytes, mask read once and
float32 advantages written once, over the device-to-device copy rate measured in the same run), the torch path on
the same GPU, the largest difference from the torch path, the registers and spills ptxas gave each kernel, and
the model's prediction (predicted_kernel_us) next to each measurement. Prints a table and writes
gpu_perf_<gpu>.json to --out (default benchmarks/results).

`--dry-run` runs the same code on CPU under TRITON_INTERPRET=1 with tiny sizes (checks the script; its timings
mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

from saw_verl import SawConfig, saw_advantages
from saw_verl.advantages import check_shapes
from saw_verl.kernels import VARIANTS, common, gdpo, grpo
from saw_verl.triton_backend import triton_saw_advantages

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(1024, 1024), (4096, 4096), (16384, 4096)]  # N x L = 1M, 16M, 64M tokens
MASKS = (torch.bool, torch.int64)
MODES = ("grpo", "gdpo")
KEYS, GROUP_SIZE = 3, 16
PROFILED_CALLS, TIMED_CALLS, COPY_BYTES = 20, 50, 2**30
KERNELS = {"grpo": (grpo._grpo_stats_kernel, grpo._grpo_write_kernel),
           "gdpo": (gdpo._gdpo_stats_kernel, gdpo._gdpo_scores_kernel, gdpo._gdpo_write_kernel)}
SORT = "torch.sort"

# The model behind predicted_kernel_us (benchmarks/RESULTS.md, "Triton kernels: analysis and predictions"):
# streamed bytes at the copy rate, plus the dependent-load chains each program runs before its bytes stream.
DEPENDENT_LOAD_US = 1.0  # one load whose address depends on the previous one (HBM or L2), issue to use
SCAN_US = 0.5  # one associative scan over a block of sorted positions (8 warps)
SORT_US = (8.0, 20.0)  # torch.sort of N int64 ids (stable, with indices): N <= 4096 (one block), larger N
HOST_US = {"grpo": 50.0, "gdpo": 60.0}  # host work of one call up to its last launch: checks, allocations, launches
FIRST_LAUNCH_US, READ_US = 10.0, 15.0  # host work before the sort starts on the device; the status read (sync + copy)
TARGETS = {"device_over_floor": {16 * 2**20: 1.6, 64 * 2**20: 1.25}, "call_us_at_1M": 100.0,
           "call_minus_floor_us": 60.0, "speedup_vs_torch": 10.0}


def batch(n: int, length: int, mask_dtype: torch.dtype, device: str, seed: int = 0):
    """rewards (N, K) float64 (coarse grid + one continuous key), sparse shuffled group ids (N,) int64 in groups of
    GROUP_SIZE, left-aligned response mask (N, L) of random lengths."""
    generator = torch.Generator(device=device).manual_seed(seed)
    rewards = torch.randint(0, 5, (n, KEYS), device=device, generator=generator).double() / 4
    rewards[:, -1] = torch.rand(n, device=device, generator=generator, dtype=torch.float64)
    group_ids = torch.randperm(n, device=device, generator=generator) // GROUP_SIZE * 7919 - 10**12
    lengths = torch.randint(1, length + 1, (n,), device=device, generator=generator)
    mask = (torch.arange(length, device=device)[None, :] < lengths[:, None]).to(mask_dtype)
    return rewards, group_ids, mask


def synchronize(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def copy_rate(device: str, size: int) -> float:
    """GB/s of a device-to-device copy (read + write counted), median of 10 after a warm-up."""
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = []
    for _ in range(11):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return 2 * size / statistics.median(seconds[1:]) / 1e9


@contextlib.contextmanager
def named_launches():
    """On CPU (the interpreter): each Triton launch as a profiler range named after its kernel, so the dry run
    reads the same per-kernel table a GPU's kernel events give."""
    launcher = type(grpo._grpo_write_kernel)
    run = launcher.run

    def named(self, *args, **kwargs):
        with torch.profiler.record_function(self.fn.__name__):
            return run(self, *args, **kwargs)

    launcher.run = named
    try:
        yield
    finally:
        launcher.run = run


def kernel_times(call, device: str, calls: int) -> dict:
    """{kernel: device µs per call} over `calls` calls: Triton kernels by name, everything else (the sort's CUDA
    kernels) summed under SORT; copies (the host read) left out."""
    names = {kernel.fn.__name__ for kernels in KERNELS.values() for kernel in kernels}
    activity = torch.profiler.ProfilerActivity.CUDA if device == "cuda" else torch.profiler.ProfilerActivity.CPU
    with (named_launches() if device != "cuda" else contextlib.nullcontext()), \
            torch.profiler.profile(activities=[activity]) as profile:
        for _ in range(calls):
            call()
        synchronize(device)
    totals: dict = {}
    for event in profile.events():
        if device == "cuda":
            if event.device_type != torch.autograd.DeviceType.CUDA or re.search("memcpy|memset", event.name, re.I):
                continue
        elif event.name not in names and event.name != "aten::sort":
            continue
        name = event.name if event.name in names else SORT
        totals[name] = totals.get(name, 0.0) + event.time_range.elapsed_us() / calls
    return totals


def call_time(call, device: str, calls: int) -> float:
    """Median wall µs of one call (each ends in its host read) after a warm-up."""
    call()
    samples = []
    for _ in range(calls):
        synchronize(device)
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def registers(device: str) -> dict:
    """{kernel: sorted [(registers, spills)]} of every compiled specialization so far (CUDA only)."""
    if device != "cuda":
        return {}
    found = {}
    for kernels in KERNELS.values():
        for kernel in kernels:
            for caches in kernel.device_caches.values():
                found[kernel.fn.__name__] = sorted({(getattr(c, "n_regs", None), getattr(c, "n_spills", None))
                                                    for c in caches[0].values()})
    return found


def predicted_kernel_us(variant: str, mode: str, n: int, length: int, mask_bytes: int, rate_gbps: float,
                        sms: int) -> dict:
    """The model's device µs of each kernel of one call: bytes / copy rate + the exposed dependent-load chains
    (per program, times the waves of programs; persistent chains shared among WRITE_PROGRAMS_PER_SM programs)."""
    shape = common.geometry(variant, n, length, triton.next_power_of_2(KEYS) if mode == "grpo" else 1, sms)
    stream_us = lambda tokens_bytes: tokens_bytes / rate_gbps / 1e3  # noqa: E731
    steps = common.search_shape(n, shape.block_s)[1]
    scans = math.log2(shape.block_s) / 9  # a scan's depth relative to one over 512 positions
    stats_waves = math.ceil(shape.stats_programs / sms)
    out = {SORT: SORT_US[0] if n <= 4096 else SORT_US[1]}
    tokens = n * length
    if mode == "grpo":
        out["_grpo_stats_kernel"] = stats_waves * ((4 + steps) * DEPENDENT_LOAD_US + (1 + KEYS) * SCAN_US * scans)
        prologue, chain = 2 * DEPENDENT_LOAD_US, 4 * DEPENDENT_LOAD_US
        write_bytes = tokens * (mask_bytes + 4)
    else:
        out["_gdpo_stats_kernel"] = max(stats_waves * (3 * DEPENDENT_LOAD_US + 2 * SCAN_US * scans),
                                        stream_us(tokens * (mask_bytes + 1 / 8)))
        out["_gdpo_scores_kernel"] = stats_waves * ((4 + steps + 2 * (GROUP_SIZE // shape.block_s + 2))
                                                    * DEPENDENT_LOAD_US)
        prologue, chain = 3 * DEPENDENT_LOAD_US, 1 * DEPENDENT_LOAD_US
        write_bytes = tokens * (1 / 8 + 4)
    programs = shape.row_programs * shape.column_programs
    row_blocks = triton.cdiv(n, shape.block_r) * shape.column_programs
    if variant == "tiled":  # every wave of `sms` tile programs pays a whole prologue + chain
        waves = math.ceil(programs / sms)
        out[f"_{mode}_write_kernel"] = waves * (prologue + chain) + stream_us(write_bytes)
    else:  # WRITE_PROGRAMS_PER_SM programs per SM: one's chain runs while another streams
        blocks_per_program = math.ceil(row_blocks / programs)
        hidden = common.WRITE_PROGRAMS_PER_SM
        out[f"_{mode}_write_kernel"] = (prologue + blocks_per_program * chain) / hidden + stream_us(write_bytes)
    return out


def predicted_call_us(mode: str, device_us: float) -> float:
    """The device runs behind the host's launches; the call ends with the status read after the last kernel."""
    return max(HOST_US[mode], FIRST_LAUNCH_US + device_us) + READ_US


def torch_path(rewards, group_ids, mask, cfg):
    return saw_advantages(rewards, group_ids, mask, cfg, backend="torch")


def measure(variant, mode, rewards, group_ids, mask, rate, sms, device, reference, calls) -> dict:
    cfg = SawConfig(tuple(f"r{k}" for k in range(KEYS)), mode=mode)

    def call():
        check_shapes(rewards, group_ids, mask, cfg)  # what saw_advantages does before the backend
        return triton_saw_advantages(rewards, group_ids, mask, cfg, variant)

    n, length = mask.shape
    result = call()  # compiles
    difference = float((result.advantages - reference.advantages).abs().max()) if mask.numel() else 0.0
    floor_us = n * length * (mask.element_size() + 4) / rate / 1e3
    kernels = kernel_times(call, device, calls[0])
    predicted = predicted_kernel_us(variant, mode, n, length, mask.element_size(), rate, sms)
    device_us = sum(kernels.values())
    row = {"variant": variant, "mode": mode, "mask": str(mask.dtype).replace("torch.", ""), "N": n, "L": length,
           "tokens": n * length, "floor_us": floor_us, "kernel_us": kernels, "predicted_kernel_us": predicted,
           "device_us": device_us, "predicted_device_us": sum(predicted.values()),
           "call_us": call_time(call, device, calls[1]),
           "predicted_call_us": predicted_call_us(mode, sum(predicted.values())),
           "max_abs_diff_vs_torch": difference}
    row["device_over_floor"] = device_us / floor_us
    row["call_minus_floor_us"] = row["call_us"] - floor_us
    return row


def check_targets(row: dict):
    """Adds `targets`: each of the issue's targets that applies to this cell -> met."""
    met = {}
    limit = TARGETS["device_over_floor"].get(row["tokens"])
    if limit:
        met[f"device <= {limit}x floor"] = row["device_over_floor"] <= limit
    if row["tokens"] == SIZES[0][0] * SIZES[0][1]:
        met[f"call <= {TARGETS['call_us_at_1M']:g} us"] = row["call_us"] <= TARGETS["call_us_at_1M"]
    else:
        met[f"call <= floor + {TARGETS['call_minus_floor_us']:g} us"] = \
            row["call_minus_floor_us"] <= TARGETS["call_minus_floor_us"]
        met[f">= {TARGETS['speedup_vs_torch']:g}x torch"] = row["speedup_vs_torch"] >= TARGETS["speedup_vs_torch"]
    row["targets"] = met


def table(rows: list[dict]) -> str:
    lines = ["| N x L | mask | mode | variant | device us (predicted) | call us (predicted) | floor us | device / floor"
             " | vs torch | kernels us: measured / predicted | targets met |", "|" + "---|" * 11]
    for r in rows:
        predicted = r["predicted_kernel_us"]
        kernels = ", ".join(f"{name.strip('_').replace('_kernel', '')} {us:.1f}/{predicted.get(name, 0):.1f}"
                            for name, us in sorted(r["kernel_us"].items()))
        met = sum(r["targets"].values())
        lines.append(f"| {r['N']} x {r['L']} | {r['mask']} | {r['mode']} | {r['variant']} | {r['device_us']:.1f} "
                     f"({r['predicted_device_us']:.1f}) | {r['call_us']:.1f} ({r['predicted_call_us']:.1f}) | "
                     f"{r['floor_us']:.1f} | {r['device_over_floor']:.2f} | {r['speedup_vs_torch']:.1f}x | {kernels} | "
                     f"{met} of {len(r['targets'])} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--dry-run", action="store_true", help="CPU, TRITON_INTERPRET=1, tiny sizes")
    args = parser.parse_args()
    global SIZES
    calls = (PROFILED_CALLS, TIMED_CALLS)
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            sys.exit("--dry-run needs TRITON_INTERPRET=1 (set before Python starts)")
        device, SIZES, calls, copy_bytes = "cpu", [(32, 16), (48, 24)], (1, 2), 2**20
    elif torch.cuda.is_available():
        device, copy_bytes = "cuda", COPY_BYTES
    else:
        sys.exit("gpu_perf needs a CUDA GPU (or --dry-run under TRITON_INTERPRET=1)")
    started = time.monotonic()
    gpu = torch.cuda.get_device_name() if device == "cuda" else "dry run on cpu"
    sms = common.multiprocessors(torch.device(device))
    rate = copy_rate(device, copy_bytes)
    print(f"device: {gpu} ({sms} multiprocessors), copy rate {rate:.0f} GB/s; variants {', '.join(VARIANTS)}",
          flush=True)
    rows = []
    for n, length in SIZES:
        for mask_dtype in MASKS:
            rewards, group_ids, mask = batch(n, length, mask_dtype, device)
            for mode in MODES:
                cfg = SawConfig(tuple(f"r{k}" for k in range(KEYS)), mode=mode)
                reference = torch_path(rewards, group_ids, mask, cfg)
                torch_us = call_time(functools.partial(torch_path, rewards, group_ids, mask, cfg), device,
                                     calls[1] // 2 or 1)
                for variant in VARIANTS:
                    row = measure(variant, mode, rewards, group_ids, mask, rate, sms, device, reference, calls)
                    row["torch_call_us"] = torch_us
                    row["speedup_vs_torch"] = torch_us / row["call_us"]
                    check_targets(row)
                    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
                           if k not in ("kernel_us", "predicted_kernel_us")}, flush=True)
                    rows.append(row)
            del rewards, group_ids, mask
    report = {"gpu": gpu, "multiprocessors": sms, "torch": torch.__version__, "triton": triton.__version__,
              "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join(["python -m benchmarks.gpu_perf", *sys.argv[1:]]), "copy_GBps": rate,
              "registers_and_spills": registers(device), "rows": rows,
              "seconds": round(time.monotonic() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    path = args.out / f"gpu_perf_{slug}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(table(rows))
    print(f"registers / spills: {report['registers_and_spills']}")
    print(f"wrote {path} in {report['seconds']} s")


if __name__ == "__main__":
    main()
