"""Two runs, step by step: which logged metrics and which rollouts differ (timings and memory aside).

    python -m recipes.common.repeat RUN_A RUN_B [--paired]

A run is a verl run folder of the CPU demo (its ``verl_metrics.jsonl``, and ``rollouts/<step>.jsonl``
when verl dumped them) or a TRL run folder (its ``trainer_state.json``). Two runs of one method and
seed must agree bit for bit on every line; runs of two methods with one seed (``--paired``), on step 1's
rollouts and reward statistics, which no update has touched yet. Prints every difference and exits 1 if
there is one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import partial
from pathlib import Path

# Wall-clock times, throughputs and memory readings: never the same twice, whatever the seed.
NOT_COMPARED = re.compile(r"(^|/)(timing_s|timing_per_token_ms|perf)/|step_time|_runtime|_per_second")
# What two methods share before their first update: the rollouts' lengths, the rewards and their statistics
# (verl's saw/<key>/{mean,std}, critic/score/*; TRL's rewards/<key>/*, completions/*).
ROLLOUT_AND_REWARD = re.compile(r"^(saw/[^/]+/(mean|std)|critic/score/|response_length/|rewards/|completions/)")


def step_metrics(run: Path) -> dict[int, dict]:
    """{step: {metric: value}} of a verl run folder (verl_metrics.jsonl) or a TRL one (trainer_state.json)."""
    if (run / "verl_metrics.jsonl").exists():
        records = [json.loads(line) for line in (run / "verl_metrics.jsonl").read_text().splitlines()]
        return {record["step"]: record["data"] for record in records}
    entries = json.loads((run / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry for entry in entries if "loss" in entry}  # not the final train summary


def step_rollouts(run: Path) -> dict[int, list[dict]]:
    """{step: the step's rollouts (prompt, response, score, each reward), in batch order} of a verl run folder
    whose rollouts verl dumped (``trainer.rollout_data_dir``); {} otherwise."""
    files = sorted((run / "rollouts").glob("*.jsonl")) if (run / "rollouts").is_dir() else []
    return {int(path.stem): [json.loads(line) for line in path.read_text().splitlines()] for path in files}


def _differences(name: str, a: dict, b: dict, steps: list[int], compare) -> list[str]:
    lines = [f"{name}: steps {sorted(set(a) ^ set(b))} are in one run only"] if set(a) != set(b) else []
    return lines + [line for step in steps if step in a and step in b for line in compare(step, a[step], b[step])]


def compared_keys(metrics: dict, only: re.Pattern | None = None) -> list[str]:
    """The metrics compared: all but timings and memory, or those `only` matches."""
    return sorted(key for key in metrics if (only.search(key) if only else not NOT_COMPARED.search(key)))


def _metric_lines(step: int, a: dict, b: dict, only: re.Pattern | None) -> list[str]:
    keys = compared_keys({**a, **b}, only)
    return [f"step {step}: {key} {a.get(key)!r} != {b.get(key)!r}" for key in keys if a.get(key) != b.get(key)]


def _rollout_lines(step: int, a: list[dict], b: list[dict]) -> list[str]:
    if len(a) != len(b):
        return [f"step {step}: {len(a)} rollouts != {len(b)}"]
    return [f"step {step}: rollout {row}: {x} != {y}" for row, (x, y) in enumerate(zip(a, b)) if x != y]


def differences(run_a: Path, run_b: Path, steps: int | None = None, only: re.Pattern | None = None) -> list[str]:
    """Every logged metric (timings and memory aside, or those `only` matches) and every rollout that differs
    between two runs, over their first `steps` steps (all steps if None); [] when they agree bit for bit."""
    metrics_a, metrics_b = step_metrics(run_a), step_metrics(run_b)
    rollouts_a, rollouts_b = step_rollouts(run_a), step_rollouts(run_b)
    compared = sorted(set(metrics_a) | set(metrics_b))[:steps]
    if steps is not None:
        metrics_a, metrics_b = ({s: m[s] for s in compared if s in m} for m in (metrics_a, metrics_b))
        rollouts_a, rollouts_b = ({s: r[s] for s in compared if s in r} for r in (rollouts_a, rollouts_b))
    return (_differences("metrics", metrics_a, metrics_b, compared, partial(_metric_lines, only=only))
            + _differences("rollouts", rollouts_a, rollouts_b, compared, _rollout_lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--paired", action="store_true",
                        help="two methods, one seed: step 1's rollouts and reward statistics only")
    args = parser.parse_args(argv)
    steps, only = (1, ROLLOUT_AND_REWARD) if args.paired else (None, None)
    found = differences(args.run_a, args.run_b, steps, only)
    metrics = step_metrics(args.run_a)
    compared = sorted(metrics)[:steps]
    keys = len(compared_keys(metrics[compared[0]], only)) if compared else 0
    rollouts = sum(len(rows) for step, rows in step_rollouts(args.run_a).items() if step in compared)
    print("\n".join(found) if found else
          f"identical: {len(compared)} steps, {keys} metrics a step and {rollouts} rollouts compared, bit for bit")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
