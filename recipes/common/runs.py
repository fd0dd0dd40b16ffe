"""Where a TRL run keeps its files, and the collection of a grid's runs into metrics.csv and runs.csv.

A run of `<method>` with seed `<seed>` lives in `<workdir>/runs/<method>_seed<seed>/`: TRL's
`trainer_state.json` (its `log_history`) and `run.json`, written last, when the run finished. The rows of
metrics.csv are in `recipes.common.analyze`'s format (method, seed, step, each reward's batch mean, each
SAW weight, step time).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def run_dir(workdir: Path, method: str, seed: int) -> Path:
    return workdir / "runs" / f"{method}_seed{seed}"


def step_rows(state_path: Path, method: str, seed: int, keys) -> list[dict]:
    """Per-step rows in recipes.common.analyze's format, from TRL's trainer_state.json log_history."""
    rows = []
    for entry in json.loads(state_path.read_text())["log_history"]:
        if f"saw/{keys[0]}/weight" not in entry:  # the final train summary
            continue
        row = {"method": method, "seed": seed, "step": entry["step"]}
        row.update({key: entry[f"rewards/{key}/mean"] for key in keys})
        row.update({f"weight/{key}": entry[f"saw/{key}/weight"] for key in keys})
        row["step_time_s"] = entry.get("step_time")
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    """rows (dicts with the same keys) -> a CSV with a header, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def collect_runs(workdir: Path, out: Path, methods: list[str], seeds: list[int], keys,
                 run_fields=lambda folder: {}) -> tuple[list[dict], list[str]]:
    """metrics.csv and runs.csv (each run.json | run_fields(folder)) from every run's folder -> (runs, the runs
    that did not finish, reported on stderr)."""
    runs, metrics, missing = [], [], []
    for seed in seeds:
        for method in methods:
            folder = run_dir(workdir, method, seed)
            if not (folder / "run.json").exists():
                missing.append(f"{method} seed {seed} ({folder})")
                continue
            runs.append(json.loads((folder / "run.json").read_text()) | run_fields(folder))
            metrics += step_rows(folder / "trainer_state.json", method, seed, keys)
    for rows, name in ((runs, "runs.csv"), (metrics, "metrics.csv")):
        if rows:
            write_csv(out / name, rows)
    if missing:
        print("runs that did not finish: " + "; ".join(missing), file=sys.stderr)
    return runs, missing
