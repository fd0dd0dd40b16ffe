"""Where a TRL run keeps its files, the collection of a grid's runs into metrics.csv and runs.csv, and the
ledger that lets a grid resume and grow.

A run of `<method>` with seed `<seed>` lives in `<workdir>/runs/<method>_seed<seed>/`: TRL's
`trainer_state.json` (its `log_history`) and `run.json`, written last, when the run finished. The rows of
metrics.csv are in `recipes.common.analyze`'s format (method, seed, step, each reward's batch mean, each
SAW weight, step time).

A grid's output folder is its ledger: `record_run` adds each run to its runs.csv (and its steps to
metrics.csv) the moment it ends, and `finished_runs` names the runs there that need no rerun, so a grid
stopped half-way, or given more seeds, runs only what is missing and its tables cover every finished run.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
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
    """rows (dicts; the header is every key, in order of first appearance) -> a CSV, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
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


def read_csv(path: Path) -> list[dict]:
    """A CSV's rows as dicts of strings; no rows if the file is not there."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def finished_runs(out: Path, steps: int) -> set[tuple[str, int]]:
    """(method, seed) of the runs `out/runs.csv` records as finished (exit code 0, when recorded) after
    `steps` steps."""
    return {(row["method"], int(row["seed"])) for row in read_csv(out / "runs.csv")
            if int(row["steps"]) == steps and row.get("returncode", "0") in ("0", "")}


def _row_order(row: dict) -> tuple:
    return int(row["seed"]), str(row["method"]), int(row.get("step", 0))


def record_run(out: Path, run: dict, metric_rows: list[dict]) -> None:
    """Add one run (a runs.csv row with method, seed, steps) and its metrics.csv rows to `out`, in place of
    any earlier record of the same method and seed. A lock on the folder makes runs that end together both land."""
    out.mkdir(parents=True, exist_ok=True)
    key = (str(run["method"]), str(run["seed"]))
    folder = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        for name, new_rows in (("runs.csv", [run]), ("metrics.csv", metric_rows)):
            kept = [row for row in read_csv(out / name) if (row["method"], row["seed"]) != key]
            rows = sorted(kept + new_rows, key=_row_order)
            if rows:
                write_csv(out / name, rows)
            else:
                (out / name).unlink(missing_ok=True)
    finally:
        os.close(folder)  # and with it the lock
