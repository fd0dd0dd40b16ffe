"""Plot the SAW weights and reward means of training runs, from any of the three trainers' metric files.

    python -m saw_verl.plot METRICS... -o weights.png [--title TEXT]

Each METRICS holds one run (or, for a recipe's metrics.csv, several), read from the per-step
`saw/{key}/weight` and `saw/{key}/mean` every saw-verl integration logs:

* verl: the `file` logger's JSONL (`trainer.logger=[console,file]`; one `{"step": s, "data": {...}}`
  per line, written to `$VERL_FILE_LOGGER_PATH` or `./<project_name>/<experiment_name>.jsonl`);
* TRL: `trainer_state.json` (`log_history`; `trainer.save_state()` or any checkpoint writes it);
* OpenRLHF and other TensorBoard users: an event file or a folder of them (OpenRLHF 0.11 logs only to
  wandb and, with `--logger.tensorboard_dir D`, TensorBoard under `D/<run_name>`, tags `train/...`;
  needs the `tensorboard` package). wandb runs: export them, this reads files only;
* the recipes' `metrics.csv` (columns method, seed, step, `<key>` = batch mean, `weight/<key>`): one
  run per (method, seed). The CPU demo writes it to its results folder, and each run's verl JSONL to
  `runs/<method>_seed<seed>/verl_metrics.jsonl` in its working folder.

A run is labelled "<method> seed <n>" when that is known (a metrics.csv, or a file or folder named
`<method>_seed<n>`), else by its folder; runs that would share a label get their path added.
The figure has one column per run (five per row): on top the SAW weight of each reward key, below its
batch mean; then, where a run logged them, its static weight `saw/{key}/alpha` (a weight schedule's value at
each step) and, for a conditioned key, `saw/{key}/gated_fraction` (the share its condition set to the fill).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]  # metric name -> [(step, value)] in step order
Run = tuple[str, Series]  # (label, metrics)
STAT_PREFIX, WEIGHT, MEAN, ALPHA, GATED = "saw/", "weight", "mean", "alpha", "gated_fraction"
Y_LABELS = {WEIGHT: "SAW weight $w_k$", MEAN: "reward batch mean", ALPHA: r"static weight $\alpha_k$",
            GATED: "share gated by its condition"}
RUN_NAME = re.compile(r"(?P<method>.+)_seed(?P<seed>\d+)")  # the recipes' run folders and experiment names
COLUMNS = 5


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


def read_recipe_csv(path: Path) -> list[Run]:
    """A recipe's metrics.csv: one run per (method, seed), by method (in the file's order), then seed."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        keys = [name.removeprefix("weight/") for name in columns if name.startswith("weight/")]
        if not {"method", "seed", "step"} <= set(columns) or not keys or not set(keys) <= set(columns):
            raise ValueError(f"{path}: not a recipe metrics.csv (columns method, seed, step, <key>, weight/<key>)")
        runs: dict[tuple[str, int], Series] = {}
        for line, row in enumerate(reader, start=2):
            if not all((row[name] or "").isdigit() for name in ("seed", "step")):
                raise ValueError(f"{path}:{line}: seed {row['seed']!r} or step {row['step']!r} is not an integer")
            series = runs.setdefault((row["method"], int(row["seed"])), {})
            for key in keys:
                for name, column in ((WEIGHT, f"weight/{key}"), (MEAN, key)):
                    _add(series, row["step"], f"{STAT_PREFIX}{key}/{name}", _number(row[column]))
    methods = list(dict.fromkeys(method for method, _ in runs))  # each method's seeds side by side
    return [(f"{method} seed {seed}", runs[method, seed]) for method, seed in
            sorted(runs, key=lambda run: (methods.index(run[0]), run[1]))]


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_runs(path: str | Path) -> list[Run]:
    """The run(s) in one metrics file or TensorBoard folder, the format chosen by the path (module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.suffix == ".csv":
        runs = read_recipe_csv(path)
    elif path.is_dir() or path.name.startswith("events.out.tfevents"):
        runs = [(run_label(path), read_tensorboard(path))]
    elif path.suffix == ".jsonl":
        runs = [(run_label(path), read_verl_jsonl(path))]
    elif path.suffix == ".json":
        runs = [(run_label(path), read_trl_state(path))]
    else:
        raise ValueError(f"{path}: expected verl's .jsonl, TRL's trainer_state.json, TensorBoard events "
                         "or a recipe's metrics.csv")
    for _, series in runs:
        for values in series.values():
            values.sort()
    if not runs or not all(reward_keys(series) for _, series in runs):
        raise ValueError(f"{path}: no saw/<key>/weight metric in it (was the run trained with a saw_* estimator?)")
    return runs


def reward_keys(series: Series) -> list[str]:
    """Reward keys with a logged SAW weight, sorted (trainer_state.json sorts them; colours stay put)."""
    return sorted(name[len(STAT_PREFIX):-len(WEIGHT) - 1] for name in series
                  if name.startswith(STAT_PREFIX) and name.endswith("/" + WEIGHT))


def run_label(path: str | Path) -> str:
    """"<method> seed <n>" when the file or its folder is named `<method>_seed<n>`, else the folder's name."""
    path = Path(path).resolve()
    folder = path if path.is_dir() else path.parent
    for name in (path.stem, folder.name):
        match = RUN_NAME.fullmatch(name)
        if match:
            return f"{match['method']} seed {int(match['seed'])}"
    return folder.name


def labelled_runs(paths: list[str | Path]) -> list[Run]:
    """Every run of every path; a label that two runs share gets the run's path added."""
    found = [(path, label, series) for path in paths for label, series in read_runs(path)]
    counts = Counter(label for _, label, _ in found)
    return [(f"{label} ({path})" if counts[label] > 1 else label, series) for path, label, series in found]


def shown_statistics(runs: list[Run]) -> list[str]:
    """The rows of each run's column: weight and mean, then alpha and gated_fraction where some run logged them."""
    logged = {name.rsplit("/", 1)[-1] for _, series in runs for name in series if name.startswith(STAT_PREFIX)}
    return [WEIGHT, MEAN] + [stat for stat in (ALPHA, GATED) if stat in logged]


def plot_runs(paths: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Write the figure (per run: weights above reward means, then the static weights and gated shares where
    logged; five runs a row) to `out`; returns its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("saw_verl.plot needs matplotlib: pip install 'saw-verl[plot]'") from None
    runs = labelled_runs(paths)
    keys = list(dict.fromkeys(key for _, series in runs for key in reward_keys(series)))
    colors = {key: f"C{i % 10}" for i, key in enumerate(keys)}
    stats = shown_statistics(runs)
    columns = min(len(runs), COLUMNS)
    blocks = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(len(stats) * blocks, columns, figsize=(4.8 * columns + 1, 3.6 * len(stats) * blocks),
                             sharex=True, squeeze=False)
    for index in range(blocks * columns):
        block, col = divmod(index, columns)
        for row, stat in enumerate(stats):
            ax = axes[len(stats) * block + row][col]
            if index >= len(runs):
                ax.set_visible(False)
                continue
            label, series = runs[index]
            for key in reward_keys(series):
                points = series.get(f"{STAT_PREFIX}{key}/{stat}", [])
                ax.plot([s for s, _ in points], [v for _, v in points], color=colors[key], label=key)
            if index:
                ax.sharey(axes[row][0])
            ax.grid(alpha=0.3)
            ax.set_ylabel(Y_LABELS[stat])
            if row == 0:
                ax.set_title(label)
            if row == len(stats) - 1:
                ax.set_xlabel("training step")
    handles = [plt.Line2D([], [], color=colors[key], label=key) for key in keys]
    fig.suptitle(title or "SAW weights and reward means per step")
    legend_rows = 1 + (len(keys) - 1) // 6
    fig.legend(handles=handles, loc="lower center", ncol=min(len(keys), 6), title="reward key")
    fig.tight_layout(rect=(0, (0.07 + 0.03 * legend_rows) / blocks, 1, 1 - 0.05 / blocks))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m saw_verl.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+",
                        help="verl .jsonl, TRL trainer_state.json, TensorBoard events, or a recipe's metrics.csv")
    parser.add_argument("-o", "--output", required=True, help="image to write, e.g. weights.png")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    try:
        print(plot_runs(args.metrics, args.output, args.title))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
