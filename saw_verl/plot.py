"""Plot the SAW weights and reward means of training runs, from any of the three trainers' metric files.

    python -m saw_verl.plot METRICS... -o weights.png [--title TEXT]

Each METRICS is one run, read from the per-step `saw/{key}/weight` and `saw/{key}/mean` every
saw-verl integration logs:

* verl: the `file` logger's JSONL (`trainer.logger=[console,file]`; one `{"step": s, "data": {...}}`
  per line, written to `$VERL_FILE_LOGGER_PATH` or `./<project_name>/<experiment_name>.jsonl`);
* TRL: `trainer_state.json` (`log_history`; `trainer.save_state()` or any checkpoint writes it);
* OpenRLHF and other TensorBoard users: an event file or a folder of them (OpenRLHF 0.11 logs only to
  wandb and, with `--logger.tensorboard_dir D`, TensorBoard under `D/<run_name>`, tags `train/...`;
  needs the `tensorboard` package). wandb runs: export them, this reads files only.

The figure has one column per run: on top the SAW weight of each reward key, below its batch mean.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]  # metric name -> [(step, value)] in step order
STAT_PREFIX, WEIGHT, MEAN = "saw/", "weight", "mean"


def _add(series: Series, step, name: str, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        series.setdefault(name, []).append((int(step), float(value)))


def read_verl_jsonl(path: Path) -> Series:
    """verl FileLogger output: one JSON object per line, {"step": int, "data": {metric: value}}."""
    series: Series = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or "step" not in record or not isinstance(record.get("data"), dict):
            raise ValueError(f"{path}:{number}: not a verl file-logger record {{'step': ..., 'data': {{...}}}}")
        for name, value in record["data"].items():
            _add(series, record["step"], name, value)
    return series


def read_trl_state(path: Path) -> Series:
    """TRL / transformers trainer_state.json: train entries of `log_history` (eval_* keys left out)."""
    state = json.loads(path.read_text())
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise ValueError(f"{path}: not a trainer_state.json (no 'log_history' list)")
    series: Series = {}
    for entry in state["log_history"]:
        for name, value in entry.items():
            if name != "step" and not name.startswith("eval_"):
                _add(series, entry.get("step", 0), name, value)
    return series


def read_tensorboard(path: Path) -> Series:
    """TensorBoard event file(s): scalar tags, a leading "train/" stripped, "eval/..." left out."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ValueError(f"{path}: reading TensorBoard events needs the tensorboard package") from None
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    accumulator.Reload()
    series: Series = {}
    for tag in accumulator.Tags()["scalars"]:
        if tag.startswith("eval/"):
            continue
        for event in accumulator.Scalars(tag):
            _add(series, event.step, tag.removeprefix("train/"), event.value)
    return series


def read_metrics(path: str | Path) -> Series:
    """One run's metrics, the format chosen by the path (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir() or path.name.startswith("events.out.tfevents"):
        series = read_tensorboard(path)
    elif path.suffix == ".jsonl":
        series = read_verl_jsonl(path)
    elif path.suffix == ".json":
        series = read_trl_state(path)
    else:
        raise ValueError(f"{path}: expected verl's .jsonl, TRL's trainer_state.json or TensorBoard events")
    for values in series.values():
        values.sort()
    if not reward_keys(series):
        raise ValueError(f"{path}: no saw/<key>/weight metric in it (was the run trained with a saw_* estimator?)")
    return series


def reward_keys(series: Series) -> list[str]:
    """Reward keys with a logged SAW weight, sorted (trainer_state.json sorts them; colours stay put)."""
    return sorted(name[len(STAT_PREFIX):-len(WEIGHT) - 1] for name in series
                  if name.startswith(STAT_PREFIX) and name.endswith("/" + WEIGHT))


def run_label(path: str | Path) -> str:
    """The run's name: the folder for trainer_state.json / event files, else the file's stem."""
    path = Path(path)
    if path.name == "trainer_state.json" or path.name.startswith("events.out.tfevents"):
        return path.parent.name or str(path)
    return path.stem if path.is_file() else path.name


def plot_runs(paths: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Write the figure (2 rows x one column per run) to `out`; returns its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("saw_verl.plot needs matplotlib: pip install 'saw-verl[plot]'") from None
    runs = [(run_label(path), read_metrics(path)) for path in paths]
    keys = list(dict.fromkeys(key for _, series in runs for key in reward_keys(series)))
    colors = {key: f"C{i % 10}" for i, key in enumerate(keys)}
    fig, axes = plt.subplots(2, len(runs), figsize=(4.8 * len(runs) + 1, 7.2), sharex="col", sharey="row",
                             squeeze=False)
    for col, (label, series) in enumerate(runs):
        for row, stat in enumerate((WEIGHT, MEAN)):
            ax = axes[row][col]
            for key in reward_keys(series):
                points = series.get(f"{STAT_PREFIX}{key}/{stat}", [])
                ax.plot([s for s, _ in points], [v for _, v in points], color=colors[key], label=key)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(label)
            else:
                ax.set_xlabel("training step")
        axes[0][0].set_ylabel("SAW weight $w_k$")
        axes[1][0].set_ylabel("reward batch mean")
    handles = [plt.Line2D([], [], color=colors[key], label=key) for key in keys]
    fig.suptitle(title or "SAW weights and reward means per step")
    fig.legend(handles=handles, loc="lower center", ncol=min(len(keys), 6), title="reward key")
    fig.tight_layout(rect=(0, 0.1 + 0.04 * ((len(keys) - 1) // 6), 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m saw_verl.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+", help="verl .jsonl, TRL trainer_state.json, or TensorBoard events")
    parser.add_argument("-o", "--output", required=True, help="image to write, e.g. weights.png")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    try:
        print(plot_runs(args.metrics, args.output, args.title))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
