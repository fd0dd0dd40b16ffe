"""GPU check of the SAW Triton kernels: one command for a bare CUDA machine (torch, triton, numpy, pytest,
hypothesis; no verl, no network), under 8 minutes on an H100 / H200:

    bash scripts/gpu_check.sh [--out DIR]      (= python -m benchmarks.gpu_check, with saw_verl.kernels mapped)

1. tests/test_kernels.py natively on CUDA: every kernel against the float64 reference (fp64/fp32/bf16/fp16
   rewards, bool/int/float masks, strided views, awkward shapes, 1-row groups, any int64 ids, launch budget);
2. one group of 65536 rows and N = 1M rows (groups of 16): statistics against the float64 reference
   (saw_verl.weights' float64 Step 1 at 1M rows), advantages against the torch path, same bits twice;
3. N x L > 2^31 elements with a bool mask, both modes: against the torch path, the far end checked, same bits;
4. launches and syncs on CUDA, with ids sorted by the caller and shuffled: benchmarks.launch_count (torch ops
   + Triton launches), torch.profiler's count of CUDA kernels (the sort's internal kernels included),
   torch.cuda sync debug mode;
5. the microbenchmark at N x L = 1M, 16M, 64M (K = 3, groups of 16), bool and int64 masks, both modes:
   Triton against the torch path, GB/s of the floor (mask read once + fp32 written once) against the
   device's copy bandwidth; the GPU goal: >= 60 % of it and >= 5x the torch path from 16M tokens;
6. CPU-resident inputs (verl's TaskRunner): torch on 1 CPU thread against copy + Triton + copy back;
7. inputs on cuda:1 while cuda:0 is current (when there are two GPUs).
Writes gpu_check_<gpu>.json / .md to --out (default benchmarks/results) and ends with GPU CHECK PASSED / FAILED.
A pass records the kernel sources' fingerprint in saw_verl/verified_kernels.py: committed, it makes the Triton path
the default for CUDA tensors (saw_verl.kernel_check).
`--dry-run` runs the same code on CPU under TRITON_INTERPRET=1 with tiny sizes (checks the script, not the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import triton

from benchmarks.gpu_check_report import markdown
from benchmarks.launch_count import count_launches
from benchmarks.providers import make_workload
from benchmarks.timing import machine, time_call
from saw_verl import SawConfig, saw_advantages
from saw_verl.kernel_check import RECORD, record_pass
from saw_verl.reference import reference_weights
from saw_verl.weights import batch_weights
from saw_verl.triton_backend import LAUNCHES

ROOT = Path(__file__).resolve().parent.parent
HUGE = (65536, 32800)  # 2,149,580,800 elements > 2^31
BENCH = [(1024, 1024), (4096, 4096), (16384, 4096)]  # N x L = 1M, 16M, 64M
GOAL_TOKENS, GOAL_FLOOR_SHARE, GOAL_SPEEDUP = 16 * 2**20, 0.6, 5.0
END_TO_END = [(4096, 1024), (16384, 4096)]  # verl-sized batches held on the CPU
BIG = [("one group of 65536 rows", 65536, 8, 65536), ("N = 1M rows", 2**20, 4, 16)]  # (name, N, L, group size)
DEVICE = "cuda"
LAUNCH_SHAPE = (4096, 1024)
COPY_BYTES = 2**31


def batch(n: int, length: int, mask_dtype=torch.bool, group_size: int = 16, keys: int = 3, seed: int = 0):
    """Rewards (N, K) float64 on a coarse grid plus one continuous key, shuffled groups, left-aligned mask."""
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    rewards = torch.randint(0, 5, (n, keys), device=DEVICE, generator=generator).double() / 4
    rewards[:, -1] = torch.rand(n, device=DEVICE, generator=generator, dtype=torch.float64)
    group_ids = torch.randperm(n, device=DEVICE, generator=generator) // group_size * 7919 - 10**12  # sparse ids
    lengths = torch.randint(1, length + 1, (n,), device=DEVICE, generator=generator)
    lengths[-1] = length
    mask = (torch.arange(length, device=DEVICE)[None, :] < lengths[:, None]).to(mask_dtype)
    return rewards, group_ids, mask


def both(rewards, group_ids, mask, mode):
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)
    return cfg, (lambda backend: saw_advantages(rewards, group_ids, mask, cfg, backend=backend))


def worst_difference(a: torch.Tensor, b: torch.Tensor, rows: int = 4096) -> float:
    return max(float((a[i:i + rows] - b[i:i + rows]).abs().max()) for i in range(0, a.shape[0], rows))


def big_groups() -> list[dict]:
    """One group of 65536 rows; N = 1M rows in groups of 16: statistics vs float64 reference, advantages vs torch."""
    out = []
    for name, n, length, group_size in BIG:
        for mode in ("grpo", "gdpo"):
            rewards, group_ids, mask = batch(n, length, torch.int64, group_size)
            cfg, run = both(rewards, group_ids, mask, mode)
            first, second, torch_path = run("triton"), run("triton"), run("torch")
            oracle = reference_weights if n <= 65536 else batch_weights  # the Python oracle is slow at 1M rows
            weights, cv, mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in oracle(rewards.cpu(), cfg)[:4])
            statistics = max(float(((getattr(first, f).cpu() - ref).abs() / ref.abs().clamp_min(1)).max())
                             for f, ref in (("mean", mean), ("std", std), ("cv", cv), ("weights", weights)))
            scale = max(1.0, float(torch_path.advantages.abs().max()))
            row = {"case": name, "mode": mode, "N": n, "L": length,
                   "statistics_rel_diff_vs_reference": statistics,
                   "advantages_diff_vs_torch": worst_difference(first.advantages, torch_path.advantages) / scale,
                   "same_bits_twice": all(torch.equal(a, b) for a, b in zip(first, second) if a is not None)}
            row["passed"] = row["same_bits_twice"] and statistics < 1e-9 and row["advantages_diff_vs_torch"] < 1e-5
            print(row, flush=True)
            out.append(row)
    return out


def huge_case(mode: str) -> dict:
    n, length = HUGE
    rewards, group_ids, mask = batch(n, length, torch.bool)
    _, run = both(rewards, group_ids, mask, mode)
    first = run("triton").advantages
    second = run("triton").advantages
    same_bits = bool(torch.equal(first, second))
    del second
    expected = run("torch").advantages
    worst = worst_difference(first, expected)
    last_row = bool(torch.equal(first[-1], expected[-1])) or worst_difference(first[-1:], expected[-1:]) < 1e-5
    result = {"mode": mode, "N": n, "L": length, "elements": n * length, "max_abs_diff_vs_torch": worst,
              "same_bits_twice": same_bits, "last_row_matches": last_row,
              "passed": same_bits and last_row and worst <= 1e-5 * max(1.0, float(expected.abs().max()))}
    print(result, flush=True)
    return result


def kernel_tests(selection: list[str], workers: int = 6, timeout: int = 330) -> dict:
    """tests/test_kernels.py natively on CUDA, split over `workers` pytest processes: Triton's compiles are
    CPU-bound and each specialization compiles once per process, so the cores shorten the step."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    listed = subprocess.run(pytest + ["--co", "tests/test_kernels.py", *selection], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    tests = [line for line in listed.stdout.splitlines() if "::" in line]
    start = time.monotonic()
    runs = [subprocess.Popen(pytest + tests[i::workers], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for i in range(min(workers, len(tests)))]
    outputs = [run.communicate(timeout=max(1, timeout - (time.monotonic() - start)))[0] for run in runs]
    tails = "\n".join(output.strip().splitlines()[-1] if output.strip() else "(no output)" for output in outputs)
    failed = [output[-3000:] for run, output in zip(runs, outputs) if run.returncode]
    print(tails, *failed, sep="\n", flush=True)
    return {"command": f"pytest tests/test_kernels.py {' '.join(selection)} ({len(tests)} tests over {len(runs)} "
                       f"processes)", "returncode": int(not tests or bool(failed)),
            "seconds": round(time.monotonic() - start, 1), "tail": tails + "\n" + "\n".join(failed)[-1500:]}


def launches_and_syncs(mode: str, ids_sorted: bool) -> dict:
    """One call's Triton launches, torch ops and host reads (LAUNCHES kernels, torch.sort only for ids not said to
    be sorted, one read), the CUDA kernels the profiler sees, and sync warnings."""
    rewards, group_ids, mask = batch(*LAUNCH_SHAPE, torch.int64)
    if ids_sorted:
        group_ids = torch.sort(group_ids).values
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)

    def run():
        return saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=ids_sorted)

    counted = count_launches(run)
    cuda_kernels, caught = [], []
    if DEVICE == "cuda":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
            run()
            torch.cuda.synchronize()
        cuda_kernels = [e.name for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA
                        and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        torch.cuda.set_sync_debug_mode("default")
    row = {"mode": mode, "ids_sorted": ids_sorted, "triton_launches": counted.kernels,
           "torch_ops_that_launch": counted.launching_ops, "host_reads": counted.host_reads,
           "cuda_kernels_profiled": len(cuda_kernels), "kernels": cuda_kernels,
           "sync_warnings": len([w for w in caught if "synchroniz" in str(w.message).lower()]),
           "budget": f"{LAUNCHES[mode]} Triton kernels" + ("" if ids_sorted else " + sort")}
    row["passed"] = (counted.kernels == LAUNCHES[mode] and counted.host_reads == 1
                     and counted.launching_ops == ([] if ids_sorted else ["sort"]))
    print({k: v for k, v in row.items() if k != "kernels"}, flush=True)
    return row


def copy_bandwidth() -> float:
    """GB/s of a device-to-device copy of 2 GiB (read + write): the practical HBM peak."""
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device=DEVICE)
    target = torch.empty_like(source)
    median = time_call(lambda: target.copy_(source), DEVICE, 2.0)["median_ms"]
    return 2 * source.numel() / median / 1e6


def microbenchmark(peak: float) -> list[dict]:
    rows = []
    for n, length in BENCH:
        for mask_dtype in (torch.bool, torch.int64):
            rewards, group_ids, mask = batch(n, length, mask_dtype)
            floor = n * length * (mask.element_size() + 4)
            for mode in ("grpo", "gdpo"):
                _, run = both(rewards, group_ids, mask, mode)
                triton_ms = time_call(lambda: run("triton"), DEVICE, 3.0)["median_ms"]
                torch_ms = time_call(lambda: run("torch"), DEVICE, 3.0)["median_ms"]
                row = {"N": n, "L": length, "tokens": n * length, "mask": str(mask_dtype).replace("torch.", ""),
                       "mode": mode, "triton_ms": triton_ms, "torch_ms": torch_ms,
                       "floor_GBps": floor / triton_ms / 1e6, "share_of_copy_bandwidth": floor / triton_ms / 1e6 / peak,
                       "speedup_vs_torch": torch_ms / triton_ms}
                if n * length >= GOAL_TOKENS:
                    row["goal_met"] = row["share_of_copy_bandwidth"] >= GOAL_FLOOR_SHARE and \
                        row["speedup_vs_torch"] >= GOAL_SPEEDUP
                print(row, flush=True)
                rows.append(row)
            del rewards, group_ids, mask
            empty_cache()
    return rows


def end_to_end(n: int, length: int) -> dict:
    """CPU-resident inputs, as in verl's TaskRunner: torch on 1 CPU thread vs copy to the GPU + Triton + copy back."""
    work = make_workload(n, length, 3, "cpu", torch.int64)
    cfg = SawConfig(work.keys, mode="gdpo")
    on_cpu = (work.rewards, work.group_ids, work.response_mask)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = time_call(lambda: saw_advantages(*on_cpu, cfg), "cpu", 2.0)["median_ms"]
    torch.set_num_threads(threads)
    device = DEVICE if DEVICE == "cuda" else "cpu"
    round_trip = time_call(lambda: saw_advantages(*(t.to(device) for t in on_cpu), cfg, backend="triton")
                           .advantages.cpu(), device, 2.0)["median_ms"]
    row = {"N": n, "L": length, "cpu_torch_1_thread_ms": cpu, "copy_triton_copy_back_ms": round_trip}
    print(row, flush=True)
    return row


def empty_cache():
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def dry_run():
    """CPU under TRITON_INTERPRET=1, tiny sizes: exercises every step of this script without a GPU."""
    global DEVICE, HUGE, BENCH, BIG, LAUNCH_SHAPE, COPY_BYTES, GOAL_TOKENS, END_TO_END
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("--dry-run needs TRITON_INTERPRET=1 (set before Python starts)")
    DEVICE, HUGE, BENCH, LAUNCH_SHAPE, COPY_BYTES, GOAL_TOKENS = "cpu", (40, 24), [(64, 64)], (48, 16), 2**20, 4096
    END_TO_END = [(32, 16)]
    BIG = [("one group of 600 rows", 600, 3, 600), ("N = 700 rows", 700, 2, 16)]


def second_device() -> dict:
    if DEVICE != "cuda" or torch.cuda.device_count() < 2:
        return {"skipped": "fewer than two GPUs"}
    torch.cuda.set_device(0)
    rewards, group_ids, mask = (t.to("cuda:1") for t in batch(64, 32))
    _, run = both(rewards, group_ids, mask, "gdpo")
    result = run("triton")
    expected = run("torch")
    return {"passed": result.advantages.device == mask.device and
            worst_difference(result.advantages, expected.advantages) < 1e-5}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--dry-run", action="store_true", help="CPU, TRITON_INTERPRET=1, tiny sizes")
    args = parser.parse_args()
    if args.dry_run:
        dry_run()
    elif not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA GPU")
    report = {"machine": machine(DEVICE, "benchmarks.gpu_check")}
    report["machine"].setdefault("gpu", "dry run on cpu")
    report["machine"].setdefault("triton", triton.__version__)
    report["machine"].setdefault("cuda", torch.version.cuda)
    print(f"device: {report['machine']['gpu']}", flush=True)
    report["tests"] = kernel_tests(["-m", "interpreter", "-k", "worked_example"] if args.dry_run else [])
    report["launches"] = [launches_and_syncs(mode, ids_sorted) for mode in ("grpo", "gdpo")
                          for ids_sorted in (False, True)]
    report["big_groups"] = big_groups()
    roomy = DEVICE != "cuda" or torch.cuda.mem_get_info()[0] > 40e9  # bool mask 2.1 GB, fp32 outputs 8.6 GB each
    report["huge"] = [huge_case(mode) for mode in ("grpo", "gdpo")] if roomy else []
    empty_cache()
    report["copy_GBps"] = copy_bandwidth()
    report["bench"] = microbenchmark(report["copy_GBps"])
    report["end_to_end"] = [end_to_end(n, length) for n, length in END_TO_END]
    report["second_device"] = second_device()
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", report["machine"]["gpu"].lower()).strip("-")
    (args.out / f"gpu_check_{slug}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"gpu_check_{slug}.md").write_text(markdown(report))
    print(markdown(report))
    failed = ["tests/test_kernels.py"] if report["tests"]["returncode"] else []
    failed += [f"{part} {row.get('mode', '')}" for part in ("launches", "big_groups", "huge")
               for row in report[part] if not row["passed"]]
    failed += ["second device"] if report["second_device"].get("passed") is False else []
    goal = [r for r in report["bench"] if "goal_met" in r]
    print(f"GPU goal (>= {GOAL_FLOOR_SHARE:.0%} of copy bandwidth, >= {GOAL_SPEEDUP:g}x torch from 16M tokens): "
          f"{sum(r['goal_met'] for r in goal)} of {len(goal)} cells")
    print("GPU CHECK " + ("FAILED: " + ", ".join(failed) if failed else "PASSED"))
    if not failed and not args.dry_run:  # these kernel sources become the CUDA default once the record is committed
        verified = record_pass(report["machine"]["gpu"], time.strftime("%Y-%m-%d", time.gmtime()))
        print(f"recorded in {RECORD.relative_to(ROOT)} (commit it): {verified}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
