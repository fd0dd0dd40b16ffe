"""GPU check of the SAW Triton kernels, one command, under 8 minutes on an H100 / H200:

    bash scripts/gpu_check.sh            # = python -m benchmarks.gpu_check

1. the kernel tests natively on CUDA (tests/test_kernels.py: every case against the float64 reference,
   same bits twice, the M < 2 error) and the sm_90 compile tests;
2. N x L > 2^31 elements with a bool mask, both modes: Triton against the torch path on the same GPU,
   the far end of the output checked, and the same bits twice;
3. end to end from CPU tensors (where verl's TaskRunner holds them): the torch path on 1 CPU thread
   against copy to GPU + kernels + copy back;
4. the microbenchmark grid (benchmarks.bench_advantages) for the int64 and bool masks.
Results go to --out (default benchmarks/results): gpu_check_<device>.json / .md plus the benchmark files.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.providers import make_workload
from benchmarks.timing import machine, time_call
from saw_verl import SawConfig, saw_advantages

ROOT = Path(__file__).resolve().parent.parent
HUGE = (65536, 32800)  # 2,149,580,800 elements > 2^31
DEVICE = "cuda"
END_TO_END = [(1024, 1024), (4096, 1024), (4096, 4096), (16384, 4096)]  # (N, L), K = 3, int64 mask


def run(command: list[str], timeout: int) -> dict:
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    tail = (done.stdout + done.stderr)[-3000:]
    print(tail, flush=True)
    return {"command": " ".join(command), "returncode": done.returncode, "seconds": round(time.monotonic() - start, 1),
            "tail": tail[-1500:]}


def huge_case(mode: str) -> dict:
    n, length = HUGE
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    lengths = torch.randint(1, length + 1, (n,), device=DEVICE, generator=generator)
    lengths[-1] = length  # the very last element of the output must be written
    mask = torch.arange(length, device=DEVICE)[None, :] < lengths[:, None]
    rewards = torch.randint(0, 5, (n, 3), device=DEVICE, generator=generator).double() / 4
    group_ids = torch.randperm(n, device=DEVICE, generator=generator) // 16
    cfg = SawConfig(("a", "b", "c"), mode=mode)
    first = saw_advantages(rewards, group_ids, mask, cfg, n // 16, backend="triton").advantages
    second = saw_advantages(rewards, group_ids, mask, cfg, n // 16, backend="triton").advantages
    same_bits = bool(torch.equal(first, second))
    del second
    expected = saw_advantages(rewards, group_ids, mask, cfg, n // 16, backend="torch").advantages
    worst = 0.0
    for start in range(0, n, 4096):  # row chunks keep the temporaries small
        worst = max(worst, float((first[start:start + 4096] - expected[start:start + 4096]).abs().max()))
    last_row_ok = bool(torch.equal(first[-1] != 0, expected[-1] != 0)) and bool(first[-1, -1] == expected[-1, -1])
    result = {"mode": mode, "N": n, "L": length, "elements": n * length, "max_abs_diff_vs_torch": worst,
              "same_bits_twice": same_bits, "last_row_matches": last_row_ok,
              "passed": same_bits and last_row_ok and worst <= 1e-5 * max(1.0, float(expected.abs().max()))}
    print(result, flush=True)
    return result


def end_to_end(n: int, length: int) -> dict:
    """CPU-resident inputs, as in verl's TaskRunner: torch on 1 CPU thread vs H2D + Triton + D2H."""
    work = make_workload(n, length, 3, "cpu", torch.int64)
    cfg = SawConfig(work.keys, mode="gdpo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    on_cpu = (work.rewards, work.group_ids, work.response_mask)
    cpu = time_call(lambda: saw_advantages(*on_cpu, cfg, work.num_groups), "cpu", 2.0)
    torch.set_num_threads(threads)

    def via_gpu():
        on_gpu = [t.to(DEVICE) for t in on_cpu]
        return saw_advantages(*on_gpu, cfg, work.num_groups).advantages.cpu()

    gpu = time_call(via_gpu, DEVICE, 2.0)
    resident = [t.to(DEVICE) for t in on_cpu]
    kernels = time_call(lambda: saw_advantages(*resident, cfg, work.num_groups).advantages, DEVICE, 2.0)
    row = {"N": n, "L": length, "K": 3, "cpu_torch_1_thread_ms": cpu["median_ms"],
           "h2d_triton_d2h_ms": gpu["median_ms"], "triton_resident_ms": kernels["median_ms"]}
    print(row, flush=True)
    return row


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# GPU check on {m['gpu']}", "", f"{m['date']}; `{m['command']}`", ""]
    for step in report["steps"]:
        lines.append(f"- `{step['command']}`: rc {step['returncode']} in {step['seconds']} s")
    lines += ["", "| N x L > 2^31 | mode | max diff vs torch | same bits | last row | passed |",
              "|---|---|---|---|---|---|"]
    for h in report["huge"]:
        lines.append(f"| {h['N']} x {h['L']} | {h['mode']} | {h['max_abs_diff_vs_torch']:.2g} "
                     f"| {h['same_bits_twice']} | "
                     f"{h['last_row_matches']} | {h['passed']} |")
    lines += ["", "| N | L | torch, CPU 1 thread ms | copy + Triton + copy back ms | Triton, resident ms |",
              "|---|---|---|---|---|"]
    for e in report["end_to_end"]:
        lines.append(f"| {e['N']} | {e['L']} | {e['cpu_torch_1_thread_ms']:.2f} | {e['h2d_triton_d2h_ms']:.2f} "
                     f"| {e['triton_resident_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--bench-budget-s", type=float, default=90, help="microbenchmark time budget per mask dtype")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA GPU")
    print(f"device: {torch.cuda.get_device_name()}", flush=True)
    report = {"machine": machine("cuda", "benchmarks.gpu_check"), "steps": [], "huge": [], "end_to_end": []}
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    report["steps"].append(run(pytest + ["tests/test_kernels.py", "tests/test_kernels_compile.py"], timeout=300))
    free, _ = torch.cuda.mem_get_info()
    if free > 30e9:  # bool mask 2.1 GB, two float32 outputs 8.6 GB each, torch-path temporaries
        report["huge"] = [huge_case("grpo"), huge_case("gdpo")]
    torch.cuda.empty_cache()
    report["end_to_end"] = [end_to_end(n, length) for n, length in END_TO_END]
    for mask in ("int64", "bool"):
        bench = [sys.executable, "-m", "benchmarks.bench_advantages", "--device", "cuda", "--mask-dtype", mask,
                 "--budget-s", str(args.bench_budget_s), "--out", str(args.out)]
        report["steps"].append(run(bench, timeout=int(args.bench_budget_s) + 120))
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", report["machine"]["gpu"].lower()).strip("-")
    (args.out / f"gpu_check_{slug}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"gpu_check_{slug}.md").write_text(markdown(report))
    print(markdown(report))
    failed = [s["command"] for s in report["steps"] if s["returncode"]]
    failed += [f"N x L > 2^31, {h['mode']}" for h in report["huge"] if not h["passed"]]
    print("GPU CHECK " + ("FAILED: " + ", ".join(failed) if failed else "PASSED"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
