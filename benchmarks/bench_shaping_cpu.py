"""What conditions and a weight schedule cost (docs/spec.md, "Conditions and schedules"): every estimator of the
registry through the tensor API, plain and with one condition and a schedule, side by side in one process (CPU,
torch path).

    python -m benchmarks.bench_shaping_cpu [--threads 1] [--rounds 7]

The batch is the verl-shaped workload of the other CPU benchmarks (N=4096, L=1024, K=3, groups of 16 shuffled, an
int64 response_mask). The shaped call gates key 1 on key 0 >= its median and reads a two-point schedule between
its points. All calls alternate, the order rotating every round: report the ratios of one run.
Writes results/shaping_cpu.json and .md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.providers import make_workload
from benchmarks.timing import report_header, run_side_by_side
from saw_verl import ESTIMATORS, compute_advantages

SHAPE = (4096, 1024, 3)
RESULTS = Path(__file__).parent / "results"


def calls(n: int, length: int, k: int) -> dict:
    """"<estimator>" and "<estimator> shaped" -> zero-argument tensor-API calls on the same tensors."""
    work = make_workload(n, length, k)
    rewards, group_ids, keys = work.rewards, work.group_ids, list(work.keys)
    shaping = {"conditions": {keys[1]: (keys[0], float(rewards[:, 0].median()))},
               "weight_schedule": {0: [1.0] * k, 100: [1.0, 0.5] + [2.0] * (k - 2)}, "step": 37}
    out = {}
    for estimator in ESTIMATORS:
        def call(estimator=estimator, extra=None):
            return compute_advantages(estimator, rewards, group_ids, work.response_mask, reward_keys=keys,
                                      **(extra or {}))
        out[estimator] = call
        out[f"{estimator} shaped"] = lambda call=call: call(extra=shaping)
    return out


def markdown(report: dict) -> str:
    timings = report["timings"]
    lines = [
        *report_header("Conditions and a weight schedule: cost per estimator (CPU, tensor API)", report, "calls"),
        "| estimator | plain median ms | shaped median ms | shaped / plain | plain fastest ms | shaped fastest ms "
        "| shaped / plain, fastest |", "|---|---|---|---|---|---|---|",
    ]
    for name in ESTIMATORS:
        plain, shaped = timings[name], timings[f"{name} shaped"]
        lines.append(f"| {name} | {plain['median_ms']:.1f} | {shaped['median_ms']:.1f} "
                     f"| {shaped['median_ms'] / plain['median_ms']:.2f} | {plain['min_ms']:.1f} | {shaped['min_ms']:.1f} "
                     f"| {shaped['min_ms'] / plain['min_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    run_side_by_side(__doc__, "benchmarks.bench_shaping_cpu", "shaping_cpu", calls, SHAPE, markdown, RESULTS)


if __name__ == "__main__":
    main()
