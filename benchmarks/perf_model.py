"""The performance model of the SAW Triton kernels: fitted on what the H200 measured of the kernels of commit
669f4b6 (results/gpu_perf_nvidia-h200_669f4b6.json), then applied to today's kernels. Everything it says of
today's kernels is a prediction until a GPU measures them (python -m benchmarks.gpu_perf).

    python -m benchmarks.perf_model [REPORT]    (no GPU, under a second: the fit on REPORT, a gpu_perf json,
                                                 669f4b6's H200 run by default; then both tables in markdown)

A kernel's device time, on a GPU with `sms` multiprocessors and a device-to-device copy rate `copy`:

    LAUNCH_US + max(bytes / (copy * STREAM_EFFICIENCY), ceil(tiles / slots) * LATENCY_US) + rounds * ROUND_US

bytes: what the kernel reads and writes of the (N, L) tensors; tiles: the mask tiles it streams, slots: the
programs resident at once, each waiting one memory latency per tile it loads (Little's law); rounds: dependent
memory round trips on the longest program's path. STREAM_EFFICIENCY is measured (a device copy of the 64M-token
call's bytes against the 2 GiB copy rate); the other three constants are fitted (least squares of log time, grid
search) to the 30 per-kernel times of 669f4b6's default kernels. A term for the shared-memory layout conversions
(bar.sync) of 669f4b6's bool tiles and one for block-wide reductions were fitted to zero: the latency term
explains those cells. The call as a user sees it = host work (the launches among it) + the status read.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "benchmarks" / "results" / "gpu_perf_nvidia-h200_669f4b6.json"
STREAM_EFFICIENCY = 80.8 / 88.0  # a device copy of the 64M-token call's 335 MB: 88 us; at the 2 GiB copy rate 80.8
KEYS, GROUP_SIZE = 3, 16
SORT_US = {1024: 27.4, 4096: 36.1, 16384: 51.5}  # torch.sort of N int64 ids on the H200, mean of 12 measurements
# Host work per call (us), measured on the H200 machine by the session that ran 669f4b6's kernels: a
# ConstexprFunction call (triton.cdiv / next_power_of_2), geometry(); an assumption: torch.empty.
CONSTEXPR_CALL_US, GEOMETRY_US, EMPTY_US = 2.6, 22.0, 3.0

# Fitted by fit() on MEASURED (see the module docstring); `python -m benchmarks.perf_model` fits them again.
LATENCY_US, ROUND_US, LAUNCH_US = 1.32, 0.78, 2.4
TRITON_LAUNCH_US, OTHER_HOST_US = 31.3, 71.4  # fitted on the two 1M-token calls (see host_fit)


class Terms(NamedTuple):
    """What the model counts for one kernel of one call (see the module docstring)."""

    bytes: float = 0.0
    tiles: int = 0
    slots: int = 1
    rounds: float = 0.0


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(x: int) -> int:
    return 1 << max(0, x - 1).bit_length()


def old_terms(mode: str, n: int, length: int, e: int, sms: int) -> dict[str, list[Terms]]:
    """The kernels of 669f4b6 (default `persistent` geometry), as its code shows them: two write programs a
    multiprocessor, each loading one tile of block_r x block_c tokens at a time and running a chain of dependent
    loads per row block; the GDPO token pass keeps two tiles of 4096 tokens in flight per multiprocessor
    (~8 KB of bool mask). A kernel with two roles (GDPO statistics) lists both: its time is the longer."""
    tokens = n * length
    block_s = min(512, max(16, next_pow2(cdiv(n, sms))))
    stats_programs = cdiv(n, block_s)
    ways = max(2, min(16, 2048 // block_s))
    steps = next(s for s in itertools.count(1) if ways ** s > n)
    block_r = min(8, next_pow2(cdiv(n, 2 * sms)))
    block_c = max(16, min(min(2048, max(16, next_pow2(length))), 2048 // block_r))
    row_programs = min(cdiv(n, block_r), 2 * sms)
    per_program = cdiv(cdiv(n, block_r), row_programs)
    write_tiles = cdiv(n, block_r) * cdiv(length, block_c)
    waves = cdiv(stats_programs, sms)
    if mode == "grpo":
        return {"_grpo_stats_kernel": [Terms(rounds=waves * (4 + steps))],
                "_grpo_write_kernel": [Terms(tokens * (e + 4), write_tiles, row_programs, (2 + 4 * per_program) / 2)]}
    block_l = min(1024, max(8, next_pow2(length)))
    token_tiles = cdiv(n, 4096 // block_l) * cdiv(length, block_l)
    return {"_gdpo_stats_kernel": [Terms(rounds=waves * 3), Terms(tokens * (e + 1 / 8), token_tiles, 2 * sms)],
            "_gdpo_scores_kernel": [Terms(rounds=waves * (4 + steps + 2 * (GROUP_SIZE // block_s + 2)))],
            "_gdpo_write_kernel": [Terms(tokens * (1 / 8 + 4), write_tiles, row_programs, (3 + per_program) / 2)]}


def new_terms(mode: str, n: int, length: int, e: int, sms: int, ids_sorted: bool) -> dict[str, list[Terms]]:
    """Today's kernels, from their launch plan (saw_verl.kernels.common.plan) and code: one round trip per step of
    Step 1 and of the whitening pass (each step's loads issued before the previous step is reduced), three per
    step of each group pass (two with sorted ids: no gather through the sort's order), the write one tile a
    program with 16 programs resident per multiprocessor (~30 registers), the token count one program per
    multiprocessor (the statistics role's registers) with two tiles in flight: the one it sums and the next."""
    from saw_verl.kernels import common

    shape = common.plan(n, length, KEYS, e, mode == "gdpo")
    tokens = n * length
    batch_steps = cdiv(n, shape.batch_chunk)
    group_steps = cdiv(shape.block, shape.group_chunk)
    stats = Terms(rounds=batch_steps + 2 * group_steps * (2 if ids_sorted else 3))
    write = Terms(tokens * (e + 4), shape.write_grid[0] * shape.write_grid[1], 16 * sms)
    out = {} if ids_sorted else {"torch.sort": [Terms()]}
    if mode == "grpo":
        return {**out, "_grpo_stats_kernel": [stats], "_write_kernel": [write]}
    token_tiles = shape.token_programs * cdiv(length, shape.token_cols)
    whiten_steps = cdiv(n, shape.row_chunk)
    return {**out, "_gdpo_stats_kernel": [stats, Terms(tokens * e + 8 * n, token_tiles, 2 * sms)],
            "_gdpo_whiten_kernel": [Terms(rounds=whiten_steps + cdiv(shape.block, shape.row_chunk))],
            "_write_kernel": [write]}


def kernel_us(roles: list[Terms], copy_gbps: float, n: int, constants=None):
    """Device us of one kernel (the longest of its roles); torch.sort (a role with no terms) is measured.
    constants: (LATENCY_US, ROUND_US, LAUNCH_US), floats or numpy arrays that broadcast (the fit evaluates a grid
    of them at once)."""
    latency, round_us, launch = constants or (LATENCY_US, ROUND_US, LAUNCH_US)
    if roles == [Terms()]:
        return sort_us(n)
    times = []
    for t in roles:
        stream = 0.0
        if t.bytes:
            stream = np.maximum(t.bytes / (copy_gbps * STREAM_EFFICIENCY) / 1e3, cdiv(t.tiles, t.slots) * latency)
        times.append(stream + t.rounds * round_us)
    return launch + (np.maximum(*times) if len(times) > 1 else times[0])


def sort_us(n: int) -> float:
    """torch.sort of n int64 ids: the H200's measurements, interpolated (and extended) in log n."""
    points = sorted(SORT_US.items())
    x = [math.log2(p) for p, _ in points]
    return float(np.interp(math.log2(n), x, [t for _, t in points],
                           left=points[0][1], right=points[-1][1] + (math.log2(n) - x[-1]) * 8.0))


def measured_rows(path: Path = MEASURED) -> tuple[dict, list[dict]]:
    """A gpu_perf report and its rows of the default kernels (669f4b6's `persistent`, or today's)."""
    report = json.loads(path.read_text())
    return report, [row for row in report["rows"] if row.get("variant", "persistent") == "persistent"]


def terms_of(row: dict, sms: int) -> dict[str, list[Terms]]:
    """The model's terms for the kernels of one measured row: 669f4b6's rows name a variant, today's an id order."""
    e = 1 if row["mask"] == "bool" else 8
    if "variant" in row:
        return old_terms(row["mode"], row["N"], row["L"], e, sms)
    return new_terms(row["mode"], row["N"], row["L"], e, sms, row["ids"] == "sorted")


def fit(path: Path = MEASURED):
    """(LATENCY_US, ROUND_US, LAUNCH_US) minimising the squared log error of the per-kernel times of a gpu_perf
    report (669f4b6's by default; a run of today's kernels refits the model on them) over a grid, then a finer grid
    around the best point; and that error (rms of the log ratio). torch.sort is measured, not modelled."""
    report, rows = measured_rows(path)
    cells = [(terms, row["kernel_us"][name], row["N"])
             for row in rows for name, terms in terms_of(row, report["multiprocessors"]).items()
             if name in row["kernel_us"] and terms != [Terms()]]

    def best_of(axes):
        grid = np.meshgrid(*axes, indexing="ij")
        error = sum(np.log(kernel_us(t, report["copy_GBps"], n, grid) / m) ** 2 for t, m, n in cells)
        at = np.unravel_index(np.argmin(error), error.shape)
        return [float(g[at]) for g in grid], math.sqrt(float(error[at]) / len(cells))

    coarse, _ = best_of([np.linspace(0.5, 2.0, 16), np.linspace(0.1, 1.5, 15), np.linspace(1.0, 5.0, 9)])
    steps = (0.1, 0.1, 0.5)
    fine, error = best_of([np.clip(np.linspace(c - s, c + s, 11), 0, None) for c, s in zip(coarse, steps)])
    return tuple(round(v, 2) for v in fine), error


def host_fit(path: Path = MEASURED) -> tuple[float, float]:
    """(Triton launch us, other host us) from the two 1M-token calls of 669f4b6 (bool mask): GRPO made 2 launches,
    8 ConstexprFunction calls, 7 torch.empty; GDPO 3, 11 and 12; both one geometry(), one sort and one read."""
    _, rows = measured_rows(path)
    call = {r["mode"]: r["call_us"] for r in rows if r["N"] * r["L"] == 2**20 and r["mask"] == "bool"}
    fixed = {"grpo": 8 * CONSTEXPR_CALL_US + 7 * EMPTY_US, "gdpo": 11 * CONSTEXPR_CALL_US + 12 * EMPTY_US}
    launch = (call["gdpo"] - fixed["gdpo"]) - (call["grpo"] - fixed["grpo"])
    return round(launch, 1), round(call["grpo"] - fixed["grpo"] - GEOMETRY_US - 2 * launch, 1)


def predicted_call_us(mode: str, device_us: float, ids_sorted: bool) -> float:
    """The call as a user sees it: host work (the launches among it, the device running behind them), then the
    status read. Today's host path: check_shapes, one plan lookup, two torch.empty, the launches, three views,
    the read (OTHER_HOST_US holds what did not change: checks, the sort's dispatch, views, the read)."""
    launches = 2 if mode == "grpo" else 3
    host = OTHER_HOST_US + launches * TRITON_LAUNCH_US + 2 * EMPTY_US
    return max(host, OTHER_HOST_US + device_us)


def floor_us(mode: str, n: int, length: int, e: int, copy_gbps: float) -> float:
    """The bytes a call cannot avoid at the copy rate: GRPO the mask once and float32 once, GDPO the mask twice."""
    return n * length * ((2 * e if mode == "gdpo" else e) + 4) / copy_gbps / 1e3


def measured_table(constants=None, path: Path = MEASURED) -> str:
    report, rows = measured_rows(path)
    lines = ["| N x L | mask | mode | kernel | measured us | predicted us |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, terms in terms_of(r, report["multiprocessors"]).items():
            if terms == [Terms()]:
                continue
            lines.append(f"| {r['N']} x {r['L']} | {r['mask']} | {r['mode']} | {name.strip('_')} | "
                         f"{r['kernel_us'][name]:.1f} | "
                         f"{kernel_us(terms, report['copy_GBps'], r['N'], constants):.1f} |")
        if "torch.sort" in r["kernel_us"]:
            lines.append(f"| {r['N']} x {r['L']} | {r['mask']} | {r['mode']} | torch.sort | "
                         f"{r['kernel_us']['torch.sort']:.1f} | {sort_us(r['N']):.1f} (measured) |")
    return "\n".join(lines) + "\n"


def new_table(sms: int = 132, copy_gbps: float = 4153.0) -> str:
    lines = ["| N x L | mask | mode | ids | kernels us (predicted) | device us | floor us | device / floor | "
             "call us |", "|---|---|---|---|---|---|---|---|---|"]
    for (n, length), mask, mode, ids_sorted in itertools.product(
            [(1024, 1024), (4096, 4096), (16384, 4096)], ("bool", "int64"), ("grpo", "gdpo"), (True, False)):
        e = 1 if mask == "bool" else 8
        kernels = {name: kernel_us(t, copy_gbps, n)
                   for name, t in new_terms(mode, n, length, e, sms, ids_sorted).items()}
        device = sum(kernels.values())
        floor = floor_us(mode, n, length, e, copy_gbps)
        detail = ", ".join(f"{name.strip('_').replace('_kernel', '')} {us:.1f}" for name, us in kernels.items())
        lines.append(f"| {n} x {length} | {mask} | {mode} | {'sorted' if ids_sorted else 'shuffled'} | {detail} | "
                     f"{device:.1f} | {floor:.1f} | {device / floor:.2f} | "
                     f"{predicted_call_us(mode, device, ids_sorted):.0f} |")
    return "\n".join(lines) + "\n"


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else MEASURED
    constants, error = fit(path)
    print(f"fit on {path.name}: LATENCY_US, ROUND_US, LAUNCH_US = {constants} (rms log error {error:.2f}); "
          f"host (669f4b6's calls): TRITON_LAUNCH_US, OTHER_HOST_US = {host_fit()}")
    print(f"\n{path.name}: measured against the model fitted on it\n")
    print(measured_table(constants, path))
    print("Today's kernels, predicted for the H200 (132 SMs, copy 4153 GB/s)\n")
    print(new_table())


if __name__ == "__main__":
    main()
