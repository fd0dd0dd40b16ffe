"""Timing and machine description shared by the benchmarks."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

QUANTILES = (0.5, 0.2, 0.8)
SLOW_CALL_S = 0.05  # slower calls are timed with a plain loop (do_bench would run them dozens of times)


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable, device: str, budget_s: float, min_reps: int = 3) -> dict:
    """Median and 20/80 % quantiles in ms: triton.testing.do_bench on CUDA for fast calls, else a timer loop
    (one warm-up call, then as many calls as fit in budget_s, at least min_reps)."""
    _sync(device)
    start = time.perf_counter()
    fn()  # warm-up (compiles kernels, fills caches)
    _sync(device)
    first = time.perf_counter() - start
    if device == "cuda" and first < SLOW_CALL_S:
        import triton.testing

        median, low, high = triton.testing.do_bench(fn, quantiles=list(QUANTILES))
        return {"median_ms": median, "q20_ms": low, "q80_ms": high, "method": "triton.testing.do_bench"}
    reps = max(min_reps, min(50, int(budget_s / max(first, 1e-6))))
    samples = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    cut = statistics.quantiles(samples, n=10) if len(samples) > 1 else samples * 9
    return {"median_ms": statistics.median(samples), "q20_ms": cut[1], "q80_ms": cut[7],
            "method": f"timer loop, {reps} calls after 1 warm-up"}


def machine(device: str, module: str = "") -> dict:
    """What ran the numbers: CPU model and cores, GPU name, library versions, threads, date, command."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    described = {
        "cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),  # other processes sharing the machine
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join((["python", "-m", module] if module else ["python", sys.argv[0]]) + sys.argv[1:]),
    }
    try:
        import verl

        described["verl"] = verl.__version__
    except ImportError:
        pass
    if device == "cuda":
        import triton

        described.update(gpu=torch.cuda.get_device_name(), triton=triton.__version__, cuda=torch.version.cuda)
    return described


def device_label(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    threads = torch.get_num_threads()
    return f"cpu ({machine('cpu')['cpu']}, {threads} thread{'s' if threads > 1 else ''})"


def cpu_benchmark_args(description: str, rounds: int, results: Path) -> argparse.Namespace:
    """The CPU benchmarks' command line (--threads, --rounds, --out), torch's thread count set from it."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (verl's TaskRunner actor gets 1)")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--out", type=Path, default=results)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def write_report(out: Path, stem: str, report: dict, text: str) -> None:
    """`report` as out/<stem>.json and its markdown `text` as out/<stem>.md; the markdown is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)


def run_side_by_side(description: str, module: str, stem: str, calls: dict, shape, markdown: Callable, results: Path,
                     rounds: int = 7) -> None:
    """The CPU benchmarks' main: its command line, `calls` (name -> zero-argument call) timed alternating
    (bench_estimators_cpu.interleaved), the report (machine, shape, rounds, timings) as results/<stem>.json and
    markdown(report) as .md."""
    from benchmarks.bench_estimators_cpu import interleaved

    args = cpu_benchmark_args(description, rounds=rounds, results=results)
    report = {"machine": machine("cpu", module), "shape": shape, "rounds": args.rounds,
              "timings": interleaved(calls(*shape), args.rounds)}
    write_report(args.out, stem, report, markdown(report))


def report_header(title: str, report: dict, alternating: str) -> list[str]:
    """The markdown lines every CPU side-by-side report opens with: title, machine, date and load, command, batch."""
    m = report["machine"]
    n, length, k = report["shape"]
    verl = f"verl {m['verl']}; " if "verl" in m else ""
    return [
        f"# {title}", "",
        f"- machine: {m['cpu']}, {m['cpu_cores']} cores; torch {m['torch']} with {m['torch_threads']} thread(s); "
        f"{verl}Python {m['python']}",
        f"- date: {m['date']}; 1-minute load average at the start: {m['load_average_1min_at_start']} "
        "(the machine is shared with other jobs)", f"- command: `{m['command']}`",
        f"- batch: N={n}, L={length}, K={k}, groups of 16 shuffled, int64 response_mask",
        f"- medians of {report['rounds']} calls each, all {alternating} alternating", "",
    ]
