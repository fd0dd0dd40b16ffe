"""GPU performance of the SAW Triton kernels in one command for a bare H100 / H200 (torch, triton, numpy; no install,
no network), in about a minute:

    python -m benchmarks.gpu_perf [--out DIR]           (from the repository root)

For N x L = 1M, 16M, 64M tokens (K = 3, groups of 16), bool and int64 masks, GRPO and GDPO, with the group ids
sorted (the caller says so: no sort, the trainers' case) and shuffled (sparse int64 ids, sorted on the device):
the device time of each kernel of one call (torch.profiler's CUDA kernel durations; the sort's internal kernels
summed as "torch.sort"), the call as a user sees it (wall time of saw_advantages' Triton path, host work,
launches and the one host read included), the floor (the bytes a call cannot avoid over the device-to-device copy
rate measured in the same run: GRPO the mask read once and float32 written once, GDPO the mask read twice), the
torch path on the same GPU, the largest difference from it, the registers and spills of every compiled kernel,
and benchmarks.perf_model's prediction next to each measurement. Prints a table and writes gpu_perf_<gpu>.json
to --out (default benchmarks/results).

`--dry-run` runs the same code on CPU under TRITON_INTERPRET=1 with tiny sizes (checks the script; its timings
mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

from benchmarks import perf_model
from saw_verl import SawConfig, saw_advantages
from saw_verl.advantages import check_shapes
from saw_verl.kernels import common, gdpo, grpo
from saw_verl.triton_backend import triton_saw_advantages

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(1024, 1024), (4096, 4096), (16384, 4096)]  # N x L = 1M, 16M, 64M tokens
MASKS = (torch.bool, torch.int64)
MODES = ("grpo", "gdpo")
ORDERS = ("sorted", "shuffled")
KEYS, GROUP_SIZE = perf_model.KEYS, perf_model.GROUP_SIZE
PROFILED_CALLS, TIMED_CALLS, COPY_BYTES = 20, 50, 2**30
KERNELS = {"grpo": (grpo._grpo_stats_kernel, common._write_kernel),
           "gdpo": (gdpo._gdpo_stats_kernel, gdpo._gdpo_whiten_kernel, common._write_kernel)}
SORT = "torch.sort"
TARGETS = {"device_over_floor": {16 * 2**20: 1.6, 64 * 2**20: 1.25}, "call_us_at_1M": 100.0,
           "call_minus_floor_us": 60.0, "speedup_vs_torch": 10.0}


def batch(n: int, length: int, mask_dtype: torch.dtype, device: str, order: str, seed: int = 0):
    """rewards (N, K) float64 (coarse grid + one continuous key), group ids (N,) int64 in groups of GROUP_SIZE
    (order "sorted": 0, 0, ..., 1, 1, ...; "shuffled": sparse values in shuffled rows), left-aligned response mask
    (N, L) of random lengths."""
    generator = torch.Generator(device=device).manual_seed(seed)
    rewards = torch.randint(0, 5, (n, KEYS), device=device, generator=generator).double() / 4
    rewards[:, -1] = torch.rand(n, device=device, generator=generator, dtype=torch.float64)
    if order == "sorted":
        group_ids = torch.arange(n, device=device) // GROUP_SIZE
    else:
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
    launcher = type(common._write_kernel)
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


def torch_path(rewards, group_ids, mask, cfg):
    return saw_advantages(rewards, group_ids, mask, cfg, backend="torch")


def measure(order, mode, rewards, group_ids, mask, rate, sms, device, reference, calls) -> dict:
    cfg = SawConfig(tuple(f"r{k}" for k in range(KEYS)), mode=mode)
    ids_sorted = order == "sorted"

    def call():
        check_shapes(rewards, group_ids, mask, cfg)  # what saw_advantages does before the backend
        return triton_saw_advantages(rewards, group_ids, mask, cfg, ids_sorted)

    n, length = mask.shape
    e = mask.element_size()
    result = call()  # compiles
    difference = float((result.advantages - reference.advantages).abs().max()) if mask.numel() else 0.0
    floor_us = perf_model.floor_us(mode, n, length, e, rate)
    kernels = kernel_times(call, device, calls[0])
    predicted = {name: float(perf_model.kernel_us(terms, rate, n))
                 for name, terms in perf_model.new_terms(mode, n, length, e, sms, ids_sorted).items()}
    device_us = sum(kernels.values())
    row = {"ids": order, "mode": mode, "mask": str(mask.dtype).replace("torch.", ""), "N": n, "L": length,
           "tokens": n * length, "floor_us": floor_us, "kernel_us": kernels, "predicted_kernel_us": predicted,
           "device_us": device_us, "predicted_device_us": sum(predicted.values()),
           "call_us": call_time(call, device, calls[1]),
           "predicted_call_us": perf_model.predicted_call_us(mode, sum(predicted.values()), ids_sorted),
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
    lines = ["| N x L | mask | mode | ids | device us (predicted) | call us (predicted) | floor us | device / floor"
             " | vs torch | kernels us: measured / predicted | targets met |", "|" + "---|" * 11]
    for r in rows:
        predicted = r["predicted_kernel_us"]
        kernels = ", ".join(f"{name.strip('_').replace('_kernel', '')} {us:.1f}/{predicted.get(name, 0):.1f}"
                            for name, us in sorted(r["kernel_us"].items()))
        met = sum(r["targets"].values())
        lines.append(f"| {r['N']} x {r['L']} | {r['mask']} | {r['mode']} | {r['ids']} | {r['device_us']:.1f} "
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
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else 4
    rate = copy_rate(device, copy_bytes)
    print(f"device: {gpu} ({sms} multiprocessors), copy rate {rate:.0f} GB/s", flush=True)
    rows = []
    for (n, length), mask_dtype, order in ((size, mask, order) for size in SIZES for mask in MASKS for order in ORDERS):
        rewards, group_ids, mask = batch(n, length, mask_dtype, device, order)
        for mode in MODES:
            cfg = SawConfig(tuple(f"r{k}" for k in range(KEYS)), mode=mode)
            reference = torch_path(rewards, group_ids, mask, cfg)
            torch_us = call_time(functools.partial(torch_path, rewards, group_ids, mask, cfg), device,
                                 calls[1] // 2 or 1)
            row = measure(order, mode, rewards, group_ids, mask, rate, sms, device, reference, calls)
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
