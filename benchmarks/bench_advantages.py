"""Microbenchmark of the advantage estimators over a grid of batch shapes.

    python -m benchmarks.bench_advantages                   # CUDA if present, else CPU
    python -m benchmarks.bench_advantages --device cpu --quick

Providers: saw-triton (CUDA only), saw-torch, verl-gdpo, verl-grpo (Python loop), verl-grpo-vectorized.
SAW providers start from device tensors (rewards, group ids, mask); verl's from the inputs verl hands them.
Writes results/bench_advantages.json (keyed by device; other devices' entries are kept), and per device
a markdown table and a PNG plot. Cells that do not fit the time budget are recorded as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from pathlib import Path

import torch

from benchmarks.providers import make_workload, providers
from benchmarks.timing import device_label, machine, time_call

GRID = {"N": [256, 1024, 4096, 16384], "L": [1024, 4096], "K": [2, 4]}
QUICK = {"N": [256, 1024, 4096], "L": [1024], "K": [2, 4]}
MASK_DTYPES = {"int64": torch.int64, "bool": torch.bool}
RESULTS = Path(__file__).parent / "results"


def floor_bytes(tokens: int, mask_dtype: torch.dtype) -> int:
    """The least any implementation moves: read the mask once, write the float32 advantages once."""
    return tokens * (torch.empty((), dtype=mask_dtype).element_size() + 4)


def triton_bytes(tokens: int, mask_dtype: torch.dtype, mode: str) -> float:
    """What saw-triton moves for a 0/1 mask (kernels/gdpo.py): GDPO adds the bit copy, 1/8 B written + read."""
    return floor_bytes(tokens, mask_dtype) + (tokens / 4 if mode == "gdpo" else 0)


def run_grid(args) -> list[dict]:
    grid = QUICK if args.quick else GRID
    selected = {name: p for name, p in providers(args.mode).items() if args.device == "cuda" or not p[0]}
    deadline = time.monotonic() + args.budget_s
    too_slow = {}  # provider -> (N, L, K) of the cell it first needed more than the cell budget
    cells = []
    for n in grid["N"]:
        for length in grid["L"]:
            for k in grid["K"]:
                work = make_workload(n, length, k, args.device, MASK_DTYPES[args.mask_dtype])
                cell = {"N": n, "L": length, "K": k, "tokens": work.tokens,
                        "floor_bytes": floor_bytes(work.tokens, work.response_mask.dtype), "providers": {}}
                for name, (_, bind) in selected.items():
                    reason = skip_reason(name, too_slow, deadline)
                    if reason:
                        cell["providers"][name] = {"skipped": reason}
                        continue
                    timing = time_call(bind(work), args.device, args.cell_budget_s)
                    timing["floor_GBps"] = cell["floor_bytes"] / timing["median_ms"] / 1e6
                    if name == "saw-triton":
                        moved = triton_bytes(work.tokens, work.response_mask.dtype, args.mode)
                        timing["moved_GBps"] = moved / timing["median_ms"] / 1e6
                    cell["providers"][name] = timing
                    if timing["median_ms"] / 1e3 * 3 > args.cell_budget_s:
                        too_slow[name] = (n, length, k)
                    print(f"N={n:6d} L={length:5d} K={k} {name:22s} {timing['median_ms']:10.3f} ms", flush=True)
                cells.append(cell)
                del work
                gc.collect()
    return cells


def skip_reason(name, too_slow, deadline):
    if name in too_slow:
        n, length, k = too_slow[name]
        return f"3 calls exceeded the cell budget already at N={n} L={length} K={k} (larger cells are slower)"
    if time.monotonic() > deadline:
        return "global time budget spent"
    return None


def markdown(entry: dict) -> str:
    names = list(entry["cells"][0]["providers"])
    lines = [f"### {entry['device']} (mode {entry['mode']}, {entry['mask_dtype']} mask)", "",
             f"{entry['machine']['date']}; `{entry['machine']['command']}`; torch {entry['machine']['torch']}, "
             f"{entry['machine']['torch_threads']} torch thread(s); 1-minute load average at the start "
             f"{entry['machine']['load_average_1min_at_start']}. Median ms (20-80 % quantiles).", "",
             "| N | L | K | " + " | ".join(names) + " | verl-gdpo / saw-torch |", "|---" * (len(names) + 4) + "|"]
    for cell in entry["cells"]:
        row = [str(cell["N"]), str(cell["L"]), str(cell["K"])]
        for name in names:
            t = cell["providers"][name]
            if "skipped" in t:
                row.append("skipped")
                continue
            text = f"{t['median_ms']:.3g} ({t['q20_ms']:.3g}-{t['q80_ms']:.3g})"
            row.append(text + (f", {t['floor_GBps']:.0f} / {t['moved_GBps']:.0f} GB/s" if name == "saw-triton" else ""))
        verl, saw = cell["providers"].get("verl-gdpo", {}), cell["providers"].get("saw-torch", {})
        both = "median_ms" in verl and "median_ms" in saw
        row.append(f"{verl['median_ms'] / saw['median_ms']:.1f}x" if both else "-")
        lines.append("| " + " | ".join(row) + " |")
    if "saw-triton" in names:
        lines += ["", "GB/s for saw-triton: floor bytes (mask read once + float32 advantages written once) "
                  "/ median time, then the bytes the kernels move (GDPO: + 1/4 B a token for the bit copy "
                  "of the mask) / median time."]
    return "\n".join(lines) + "\n"


def plot(entry: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({c["K"] for c in entry["cells"]})
    lengths = sorted({c["L"] for c in entry["cells"]})
    names = list(entry["cells"][0]["providers"])
    figure, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 4.5), squeeze=False)
    for axis, k in zip(axes[0], ks):
        for color, name in enumerate(names):
            for style, length in zip(["-", "--", ":"], lengths):
                points = [(c["N"], c["providers"][name]["median_ms"]) for c in entry["cells"]
                          if c["K"] == k and c["L"] == length and "median_ms" in c["providers"][name]]
                if points:
                    axis.plot(*zip(*points), style, color=f"C{color}", marker="o", label=f"{name}, L={length}")
        axis.set(xscale="log", yscale="log", xlabel="rollouts N", ylabel="median ms", title=f"K = {k}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"SAW advantages ({entry['mode']}) on {entry['device']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", choices=["gdpo", "grpo"], default="gdpo")
    parser.add_argument("--mask-dtype", choices=list(MASK_DTYPES), default="int64")
    parser.add_argument("--quick", action="store_true", help=f"subset grid {QUICK}")
    parser.add_argument("--budget-s", type=float, default=600, help="whole-grid time budget; later cells are skipped")
    parser.add_argument("--cell-budget-s", type=float, default=3.0, help="timing budget of one provider in one cell")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (verl's TaskRunner actor gets 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entry = {"device": device_label(args.device), "mode": args.mode, "mask_dtype": args.mask_dtype,
             "machine": machine(args.device, "benchmarks.bench_advantages"), "cells": run_grid(args)}
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "bench_advantages.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    key = f"{entry['device']} | {args.mode} | {args.mask_dtype} mask"
    results[key] = entry
    store.write_text(json.dumps(results, indent=1) + "\n")
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:80]
    (args.out / f"bench_advantages_{slug}.md").write_text(markdown(entry))
    plot(entry, args.out / f"bench_advantages_{slug}.png")
    print(markdown(entry))


if __name__ == "__main__":
    main()
