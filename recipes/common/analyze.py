"""Summarise a recipe's metrics: steps to reach each reward threshold, final rewards, the weights' steadiness, a plot.

    python -m recipes.common.analyze --metrics results/metrics.csv --out results \
        --threshold format_reward=0.9 --threshold correct_reward=0.6 [--pair saw_gdpo_history:saw_gdpo ...]

Rewards are the batch means of the training rollouts (``saw/<key>/mean``), smoothed with a
trailing mean over ``--window`` steps before thresholds are checked. A run that never reaches a
threshold counts as ``steps + 1`` in the mean (a lower bound on its true time) and is listed in the
"reached" column. The weights' steadiness is the mean over steps of |w_t - w_(t-1)|. Pairs of methods
(``--pair METHOD:BASELINE``; default each SAW method against its equal-weight baseline, and the history arm
against saw_gdpo) are compared seed by seed. Writes ``summary.md``, ``summary.csv``, ``paired.csv`` and
``curves.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METHOD_ORDER = ["grpo", "saw_grpo", "gdpo", "saw_gdpo", "saw_gdpo_history"]
# (method, baseline): method minus baseline; a pair whose methods are not both in the metrics is left out
DEFAULT_PAIRS = (("saw_grpo", "grpo"), ("saw_gdpo", "gdpo"), ("saw_gdpo_history", "saw_gdpo"))


def reward_keys(metrics: pd.DataFrame) -> list[str]:
    return [c.removeprefix("weight/") for c in metrics.columns if c.startswith("weight/")]


def smoothed(metrics: pd.DataFrame, key: str, window: int) -> pd.Series:
    """Trailing mean of ``key`` over ``window`` steps, within each (method, seed) run."""
    ordered = metrics.sort_values(["method", "seed", "step"])
    return ordered.groupby(["method", "seed"])[key].transform(lambda s: s.rolling(window, min_periods=1).mean())


def first_step_at(run: pd.DataFrame, column: str, threshold: float) -> int | None:
    """First step whose smoothed value is >= threshold, or None."""
    hit = run.loc[run[column] >= threshold, "step"]
    return int(hit.min()) if len(hit) else None


def per_run(metrics: pd.DataFrame, thresholds: dict[str, float], window: int, final_steps: int) -> pd.DataFrame:
    """One row per (method, seed): first step at each threshold (None if never), final reward, and for every
    reward key the weight's mean absolute change from one step to the next."""
    metrics = metrics.sort_values(["method", "seed", "step"]).copy()
    for key in thresholds:
        metrics[f"smooth/{key}"] = smoothed(metrics, key, window)
    records = []
    for (method, seed), run in metrics.groupby(["method", "seed"]):
        last = run["step"].max()
        record = {"method": method, "seed": seed, "last_step": last}
        for key, threshold in thresholds.items():
            record[f"steps/{key}"] = first_step_at(run, f"smooth/{key}", threshold)
            record[f"final/{key}"] = run.loc[run["step"] > last - final_steps, key].mean()
        for key in reward_keys(run):
            record[f"weight_change/{key}"] = run[f"weight/{key}"].diff().abs().iloc[1:].mean()
        records.append(record)
    return pd.DataFrame(records)


def _censored_steps(runs: pd.DataFrame, key: str) -> pd.Series:
    """Steps to a threshold, a run that never reached it counting as last step + 1."""
    return runs[f"steps/{key}"].astype(float).fillna(runs["last_step"] + 1)


def _method_rank(methods: pd.Series) -> pd.Series:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return methods.map(lambda m: order.get(m, len(order)))


def weight_change_keys(runs: pd.DataFrame) -> list[str]:
    return [c.removeprefix("weight_change/") for c in runs.columns if c.startswith("weight_change/")]


def summarise(runs: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """One row per method: steps to each threshold, final reward and weight change, mean and std over seeds."""
    rows = []
    for method, group in runs.groupby("method"):
        row = {"method": method, "seeds": len(group)}
        for key, threshold in thresholds.items():
            row[f"reached {key}>={threshold}"] = f"{int(group[f'steps/{key}'].notna().sum())}/{len(group)}"
            for stat, values in (("steps", _censored_steps(group, key)), ("final", group[f"final/{key}"])):
                row[f"{stat} {key} mean"] = values.mean()
                row[f"{stat} {key} std"] = values.std(ddof=1)  # NaN for one seed: no spread
        for key in weight_change_keys(group):
            row[f"weight_change {key} mean"] = group[f"weight_change/{key}"].mean()
            row[f"weight_change {key} std"] = group[f"weight_change/{key}"].std(ddof=1)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("method", key=_method_rank).reset_index(drop=True)


def paired(runs: pd.DataFrame, thresholds: dict[str, float], pairs=DEFAULT_PAIRS) -> pd.DataFrame:
    """Each (method, baseline) of `pairs` present in `runs`, seed by seed (same model, data order): method minus
    baseline, mean and std over seeds, and on how many seeds the method did better (fewer steps, higher final
    reward, a smaller weight change)."""
    rows = []
    for method, baseline in pairs:
        both = runs[runs["method"] == baseline].merge(runs[runs["method"] == method], on="seed",
                                                     suffixes=("_base", "_method"))
        if both.empty:
            continue
        row = {"comparison": f"{method} - {baseline}", "seeds": len(both)}
        diffs = []
        for key in thresholds:
            base = both[[f"steps/{key}_base", "last_step_base"]].set_axis([f"steps/{key}", "last_step"], axis=1)
            ours = both[[f"steps/{key}_method", "last_step_method"]].set_axis([f"steps/{key}", "last_step"], axis=1)
            diffs += [(f"steps {key}", _censored_steps(ours, key) - _censored_steps(base, key), lambda d: d < 0),
                      (f"final {key}", both[f"final/{key}_method"] - both[f"final/{key}_base"], lambda d: d > 0)]
        for key in weight_change_keys(runs):
            change = both[f"weight_change/{key}_method"] - both[f"weight_change/{key}_base"]
            diffs.append((f"weight_change {key}", change, lambda d: d < 0))
        for name, diff, better in diffs:
            row[f"{name} diff mean"] = diff.mean()
            row[f"{name} diff std"] = diff.std(ddof=1)
            row[f"{name} better"] = f"{int(better(diff).sum())}/{len(diff)}"
        rows.append(row)
    return pd.DataFrame(rows)


def mean_spread(mean: float, std: float, digits: int, sign: str = "") -> str:
    """ "mean ± std", or "mean ± n/a" where there is no spread (one seed)."""
    return f"{mean:{sign}.{digits}f} ± " + ("n/a" if pd.isna(std) else f"{std:.{digits}f}")


def markdown(table: pd.DataFrame, pairs: pd.DataFrame, thresholds: dict[str, float], window: int,
             final_steps: int) -> str:
    """The summary, the paired comparison and the weights' change per step as markdown tables, "mean ± std"."""
    header = ["method", "seeds"]
    for key, threshold in thresholds.items():
        header += [f"steps to {key} ≥ {threshold}", "reached"]
    header += [f"final {key}" for key in thresholds]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["method"], str(row["seeds"])]
        for key, threshold in thresholds.items():
            cells += [mean_spread(row[f"steps {key} mean"], row[f"steps {key} std"], 1),
                      row[f"reached {key}>={threshold}"]]
        cells += [mean_spread(row[f"final {key} mean"], row[f"final {key} std"], 3) for key in thresholds]
        lines.append("| " + " | ".join(cells) + " |")
    if not pairs.empty:
        header = ["paired, per seed", "seeds"]
        for key in thresholds:
            header += [f"Δ steps to {key}", "faster"]
        header += [f"Δ final {key}" for key in thresholds]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in pairs.iterrows():
            cells = [row["comparison"], str(row["seeds"])]
            for key in thresholds:
                cells += [mean_spread(row[f"steps {key} diff mean"], row[f"steps {key} diff std"], 1, "+"),
                          row[f"steps {key} better"]]
            cells += [mean_spread(row[f"final {key} diff mean"], row[f"final {key} diff std"], 3, "+")
                      + f" ({row[f'final {key} better']} higher)" for key in thresholds]
            lines.append("| " + " | ".join(cells) + " |")
    keys = [c.removeprefix("weight_change ").removesuffix(" mean") for c in table.columns
            if c.startswith("weight_change ") and c.endswith(" mean")]
    if keys:
        header = ["weight change per step", "seeds", *(f"{key}" for key in keys)]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in table.iterrows():
            cells = [row["method"], str(row["seeds"])]
            cells += [mean_spread(row[f"weight_change {key} mean"], row[f"weight_change {key} std"], 3) for key in keys]
            lines.append("| " + " | ".join(cells) + " |")
        for _, row in pairs.iterrows():
            cells = [row["comparison"], str(row["seeds"])]
            cells += [mean_spread(row[f"weight_change {key} diff mean"], row[f"weight_change {key} diff std"], 3, "+")
                      + f" ({row[f'weight_change {key} better']} lower)" for key in keys]
            lines.append("| " + " | ".join(cells) + " |")
    notes = (f"\nRewards smoothed over a trailing {window}-step window; a run that never reaches a threshold "
             f"counts as (last step + 1). Final = mean of the last {final_steps} steps. Weight change per step = "
             f"the mean over steps of |w_t - w_(t-1)|. Spread = std over seeds (n/a with one seed); "
             f"paired rows: the first method minus the second on the same seed.\n")
    return "\n".join(lines) + "\n" + notes


def plot(metrics: pd.DataFrame, keys: list[str], path: Path, title: str) -> None:
    """Row 1: each reward against the step; row 2: each SAW weight. Mean over seeds, band = min..max."""
    seeds = sorted(metrics["seed"].unique())
    over_seeds = f"seed {seeds[0]}" if len(seeds) == 1 else "mean over seeds, band = min..max"
    import matplotlib  # here, not at module level: the tables need only pandas

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(keys), figsize=(5.5 * len(keys), 7), sharex=True, squeeze=False)
    methods = [m for m in METHOD_ORDER if m in set(metrics["method"])]
    for col, key in enumerate(keys):
        for row, column in enumerate((key, f"weight/{key}")):
            ax = axes[row][col]
            for method in methods:
                curve = metrics[metrics["method"] == method].groupby("step")[column].agg(["mean", "min", "max"])
                line, = ax.plot(curve.index, curve["mean"], label=method, linestyle="--" if "saw" not in method else "-")
                ax.fill_between(curve.index, curve["min"], curve["max"], color=line.get_color(), alpha=0.15)
            ax.set_title(column if row == 0 else f"SAW weight of {key}")
            ax.grid(alpha=0.3)
            ax.set_ylabel("batch-mean reward" if row == 0 else "SAW weight")
            if row == 1:
                ax.set_xlabel("training step")
    axes[0][0].legend()
    fig.suptitle(f"{title}: batch-mean training rewards and SAW weights ({over_seeds})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_threshold(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, float(value)


def parse_pair(text: str) -> tuple[str, str]:
    method, sep, baseline = text.partition(":")
    if not sep or not method or not baseline:
        raise argparse.ArgumentTypeError(f"expected METHOD:BASELINE, got {text!r}")
    return method, baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=parse_threshold, action="append",
                        default=None, help="KEY=VALUE (repeatable); default format_reward=0.9, correct_reward=0.6")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--final_steps", type=int, default=5)
    parser.add_argument("--title", default="CPU demo", help="what the figure's title names (the experiment)")
    parser.add_argument("--pair", type=parse_pair, action="append", default=None,
                        help="METHOD:BASELINE compared seed by seed (repeatable); default: saw_grpo:grpo, "
                        "saw_gdpo:gdpo, saw_gdpo_history:saw_gdpo")
    args = parser.parse_args(argv)
    thresholds = dict(args.threshold or [("format_reward", 0.9), ("correct_reward", 0.6)])
    metrics = pd.read_csv(args.metrics)
    unknown = sorted(set(thresholds) - set(reward_keys(metrics)))
    if unknown:
        raise SystemExit(f"threshold keys {unknown} are not in {args.metrics} (keys: {reward_keys(metrics)})")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = per_run(metrics, thresholds, args.window, args.final_steps)
    table = summarise(runs, thresholds)
    pairs = paired(runs, thresholds, args.pair or DEFAULT_PAIRS)
    table.to_csv(args.out / "summary.csv", index=False)
    pairs.to_csv(args.out / "paired.csv", index=False)
    text = markdown(table, pairs, thresholds, args.window, args.final_steps)
    (args.out / "summary.md").write_text(text)
    plot(metrics, reward_keys(metrics), args.out / "curves.png", args.title)
    print(text)


if __name__ == "__main__":
    main()
