"""The GPU grid's outputs, written whatever died (gpu_grid.py step 5).

In `--out`: `metrics.csv` (every step of the runs that finished), `runs.csv` (every run: finished or died, its
steps, training time, held-out scores, why it died), `summary.md` (the tables of recipes.common.analyze over
the finished runs, each arm against its equal-weight method seed by seed, the runs that died with their step
and reason, the step count's decisions and the predicted against the actual training time), `heldout.md`,
`curves.png` and `weights.png` (finished runs only; none without matplotlib), `grid.json` (settings,
environment, decisions, timings, every run's status) and `runs/<run>/` (its log.jsonl, failure.json and the
last lines of its process log).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cpu_experiment
import cpu_task

from recipes.common.run_control import FAILURE_NAME, LOG_NAME, read_log
from recipes.common.runs import write_csv

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 60
TABLE_FILES = ("metrics.csv", "heldout.md")
RUN_FIELDS = ("max_steps", "stopped_at_deadline", "train_s", "wall_s")  # from run.json, into runs.csv


def run_status(folder: Path, exit_code: int | None, process_log: Path | None = None) -> dict:
    """One run's end: {"status": "finished" | "died", "steps", "reason"} from its folder, its exit code and the
    last line of its process log."""
    if (folder / "run.json").exists():
        run = json.loads((folder / "run.json").read_text())
        return {"status": "finished", "steps": run["steps"], "reason": ""}
    if (folder / FAILURE_NAME).exists():
        failure = json.loads((folder / FAILURE_NAME).read_text())
        return {"status": "died", "steps": failure["step"] - 1, "reason": failure_reason(failure)}
    steps = max((e["step"] for e in read_log(folder / LOG_NAME)), default=0)
    lines = process_log.read_text(errors="replace").split("\n") if process_log and process_log.exists() else []
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return {"status": "died", "steps": steps, "reason": f"exit code {exit_code}, no {FAILURE_NAME}; {last}"}


def failure_reason(failure: dict) -> str:
    details = failure.get("details")
    if details:
        return (f"step {failure['step']}: non-finite gradient in {details['parameter']} (its norm "
                f"{details['parameter_grad_norm']:.3g}, total {details['grad_norm']:.3g}, loss {details['loss']})")
    return f"step {failure['step']}: {failure['reason']}: {failure['message']}"


def arm_pairs(runs, thresholds: dict):
    """recipes.common.analyze.paired for every arm against its equal-weight method (cpu_experiment.METHODS)."""
    from recipes.common import analyze

    pairs = [(method, cpu_experiment.METHODS[method][1]) for method in runs["method"].unique()
             if cpu_experiment.METHODS[method][1] is not None]
    return analyze.paired(runs, thresholds, pairs)


def weight_swing_lines(metrics) -> list[str]:
    """Per SAW run: the share of steps where a reward's weight is 0 (its rollouts all scored alike) and the
    mean step-to-step change of that weight."""
    lines = []
    for (method, seed), run in metrics.sort_values("step").groupby(["method", "seed"]):
        if not cpu_experiment.METHODS[method][0]["saw_dynamic"]:
            continue
        cells = [f"{key.removeprefix('weight/')} weight 0 on {(run[key] == 0).mean():.0%} of steps, mean change "
                 f"{run[key].diff().abs().mean():.2f} a step" for key in run.columns if key.startswith("weight/")]
        lines.append(f"- {method} seed {seed}: " + "; ".join(cells))
    return lines


def timing_lines(outcome: dict, finished: list[dict]) -> list[str]:
    """Summary lines: the step-count decisions, and predicted against actual training time."""
    release, decisions = outcome["release_unix"], outcome["decisions"]
    if not decisions:
        return ["No step-count decision was made (no run lived through the timed steps)."]
    lines = [f"Step count: {len(decisions)} decision(s) after the start barrier; training deadline "
             f"{outcome['train_deadline_unix'] - release:.0f} s after it."]  # fmt: skip
    for label, d in (("first", decisions[0]), ("last", decisions[-1])):
        lines.append(f"- {label}: after step {d['after_step']} ({d['alive']} runs alive, {d['time_unix'] - release:.0f} s "
                     f"in): {d['step_s']:.2f} s per step -> {d['steps']} steps; predicted training time "
                     f"{d['predicted_train_end_unix'] - release:.0f} s")  # fmt: skip
    if finished:
        end, steps = max(r["train_end_unix"] for r in finished), max(r["steps"] for r in finished)
        lines.append(f"- actual: training took {end - release:.0f} s (barrier to the last run's last step), "
                     f"{(end - release) / steps:.2f} s per step over {steps} steps")
    return lines


def figures(metrics_csv: Path, workdir: Path, statuses: dict, args, out: Path) -> list[str]:
    """curves.png and weights.png from the finished runs; returns notes on what could not be drawn."""
    if importlib.util.find_spec("matplotlib") is None:
        return ["matplotlib does not import here: no figures (pip install matplotlib)"]
    import pandas as pd

    from recipes.common import analyze

    metrics = pd.read_csv(metrics_csv)
    analyze.plot(metrics, analyze.reward_keys(metrics), out / "curves.png", args.title)
    finished = [n for n, s in statuses.items() if s["status"] == "finished"]
    seeds = [s for s in args.seeds if all(f"{m}_seed{s}" in finished for m in args.methods)]
    seed = seeds[0] if seeds else int(finished[0].rsplit("_seed", 1)[1])
    states = [str(workdir / "runs" / n / "trainer_state.json") for n in finished if n.endswith(f"_seed{seed}")]
    done = subprocess.run([sys.executable, "-m", "saw_verl.plot", *states, "-o", str(out / "weights.png"), "--title",
                           f"{args.title}, seed {seed}: SAW weights, reward means"], cwd=REPO)  # fmt: skip
    return [] if done.returncode == 0 else [f"weights.png: saw_verl.plot exited {done.returncode}"]


def write_outputs(args, names: list[str], outcome: dict, env: dict, timings: dict) -> list[str]:
    """Every output in args.out (module docstring); returns the runs that died. The per-run files, runs.csv and
    grid.json come first; a failure in the tables or figures is written into summary.md, not raised."""
    out, workdir = args.out, args.workdir
    for stale in (*TABLE_FILES, "runs.csv", "summary.md", "grid.json", "curves.png", "weights.png", "runs"):
        shutil.rmtree(out / stale) if (out / stale).is_dir() else (out / stale).unlink(missing_ok=True)
    folders = {n: cpu_experiment.run_dir(workdir, *n.rsplit("_seed", 1)) for n in names}
    statuses = {n: run_status(folders[n], outcome["exit_codes"][n], workdir / "logs" / f"{n}.log") for n in names}
    dead = [n for n in names if statuses[n]["status"] == "died"]
    finished = [json.loads((folders[n] / "run.json").read_text()) for n in names if n not in dead]
    rows = []
    for name in names:
        run = json.loads((folders[name] / "run.json").read_text()) if name not in dead else {}
        heldout = cpu_experiment.heldout_fields(folders[name]) if name not in dead else {}
        rows.append({"run": name, **statuses[name], **{k: run.get(k) for k in RUN_FIELDS},
                     "heldout_format": heldout.get("heldout_format"), "heldout_correct": heldout.get("heldout_correct")})
        copy_run_files(folders[name], workdir / "logs" / f"{name}.log", out / "runs" / name)
    write_csv(out / "runs.csv", rows)
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": env, "reward_keys": list(cpu_task.REWARD_KEYS), "outcome": outcome, "runs": statuses,
        "timings": timings | {"grid_s": round(time.time() - timings["grid_start_unix"], 1)},
    }  # fmt: skip
    (out / "grid.json").write_text(json.dumps(summary, indent=1, default=str))
    lines = [f"# {args.title}: {len(names) - len(dead)} of {len(names)} runs finished", ""]
    try:
        lines += tables_and_figures(args, statuses) if finished else ["No run finished: no tables, no figures.", ""]
    except Exception as error:  # noqa: BLE001 - the rest of the summary is still written
        lines += [f"The tables or figures failed: {type(error).__name__}: {error}", ""]
    lines += ["## Runs that died", ""]
    lines += [f"- {n}: after {statuses[n]['steps']} steps; {statuses[n]['reason']}" for n in dead] or ["None."]
    lines += ["", "## Step count and training time", "", *timing_lines(outcome, finished)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print((out / "summary.md").read_text(), flush=True)
    return dead


def tables_and_figures(args, statuses: dict) -> list[str]:
    """metrics.csv and heldout.md of the finished runs (cpu_experiment.collect), the summary's tables and SAW
    weight lines, the figures; returns the summary's lines."""
    import pandas as pd

    from recipes.common import analyze

    scratch = args.workdir / "collected"
    cpu_experiment.collect(args.workdir, scratch, args.methods, args.seeds)
    for name in TABLE_FILES:
        shutil.copyfile(scratch / name, args.out / name)
    metrics = pd.read_csv(args.out / "metrics.csv")
    runs = analyze.per_run(metrics, args.threshold, args.window, args.final_steps)
    table = analyze.markdown(analyze.summarise(runs, args.threshold), arm_pairs(runs, args.threshold),
                             args.threshold, args.window, args.final_steps)  # fmt: skip
    notes = figures(args.out / "metrics.csv", args.workdir, statuses, args, args.out)
    return [table, "## SAW's weights from step to step", "", *weight_swing_lines(metrics), "", *notes]


def copy_run_files(folder: Path, process_log: Path, target: Path) -> None:
    """A run's log.jsonl and failure.json, and the last LOG_TAIL_LINES lines of its process log."""
    target.mkdir(parents=True, exist_ok=True)
    for name in (LOG_NAME, FAILURE_NAME):
        if (folder / name).exists():
            shutil.copyfile(folder / name, target / name)
    if process_log.exists():
        tail = process_log.read_text(errors="replace").replace("\r", "\n").splitlines()[-LOG_TAIL_LINES:]
        (target / "process.log").write_text("\n".join(tail) + "\n")
