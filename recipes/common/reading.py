"""The CPU demo grids' pre-registered reading rules, applied to a grid's metrics.csv: per seed, the steps each method
took to each threshold, and per pair of methods the verdict.

    python -m recipes.common.reading --metrics results_repeatable/metrics.csv [--pair METHOD:BASELINE ...]

Rules (recipes/cpu_demo/results_repeatable/README.md; the earlier grids' with 4 of 5 seeds): on the n seeds where
both methods of a pair finished, a method learns a reward *sooner* than its baseline when it took fewer steps to the
threshold on at least 80% of them (rounded up) and the mean paired difference is at most -margin, *later* when it
took more steps on at least 80% and the mean is at least +margin, and otherwise there is no evidence either way.
Margins: 3 steps for correct_reward, 1 for format_reward. Its weights are *steadier* when the change per step of
correct_reward's weight is lower on at least 80% (the history pair only: STEADINESS_PAIRS). A one-sided sign test's p (ties left out) is given for context.
"""

from __future__ import annotations

import argparse
from math import comb
from pathlib import Path

import pandas as pd

from recipes.common import analyze

THRESHOLDS = {"format_reward": 0.9, "correct_reward": 0.6}
MARGINS = {"format_reward": 1.0, "correct_reward": 3.0}
SHARE = 0.8
STEADINESS_PAIRS = (("saw_gdpo_history", "saw_gdpo"),)  # the pairs whose weights' steadiness is ruled on


def sign_test_p(wins: int, trials: int) -> float:
    """One-sided sign test: P(at least `wins` of `trials` fair coin flips)."""
    return sum(comb(trials, k) for k in range(wins, trials + 1)) / 2**trials


def per_seed_steps(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """(seed x method) steps to `key`'s threshold, a run that never got there counting as last step + 1."""
    steps = runs.assign(steps=analyze._censored_steps(runs, key))
    return steps.pivot(index="seed", columns="method", values="steps")


def verdicts(runs: pd.DataFrame, pairs=analyze.DEFAULT_PAIRS) -> list[str]:
    """One line per pair and measure: counts, mean ± std of the paired difference, the verdict, the sign test."""
    runs = runs.assign(**{f"censored/{key}": analyze._censored_steps(runs, key) for key in MARGINS})
    lines = []
    for method, baseline in pairs:
        both = runs[runs["method"] == baseline].merge(runs[runs["method"] == method], on="seed", suffixes=("_b", "_m"))
        n = len(both)
        if not n:
            continue
        need = -(-int(SHARE * 10) * n // 10)  # 80% of n, rounded up
        for key, margin in MARGINS.items():
            diff = both[f"censored/{key}_m"] - both[f"censored/{key}_b"]
            fewer, more = int((diff < 0).sum()), int((diff > 0).sum())
            mean = diff.mean()
            verdict = ("sooner" if fewer >= need and mean <= -margin else
                       "later" if more >= need and mean >= margin else "no evidence either way")
            lines.append(f"{method} - {baseline}, steps to {key} >= {THRESHOLDS[key]}: {n} seeds, fewer on {fewer}, "
                         f"more on {more}, mean {mean:+.1f} ± {diff.std(ddof=1):.1f} -> {verdict} "
                         f"(needs {need}/{n}; sign test p = {sign_test_p(max(fewer, more), fewer + more):.3f})")
        if (method, baseline) not in STEADINESS_PAIRS:
            continue
        change = both["weight_change/correct_reward_m"] - both["weight_change/correct_reward_b"]
        lower = int((change < 0).sum())
        lines.append(f"{method} - {baseline}, weight change of correct_reward: lower on {lower}/{n}, mean "
                     f"{change.mean():+.3f} -> {'steadier' if lower >= need else 'not steadier'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--pair", type=analyze.parse_pair, action="append", default=None,
                        help="METHOD:BASELINE (repeatable); default: analyze.py's pairs")
    args = parser.parse_args(argv)
    runs = analyze.per_run(pd.read_csv(args.metrics), THRESHOLDS, window=5, final_steps=5)
    for key, threshold in THRESHOLDS.items():
        print(f"steps to {key} >= {threshold}, per seed (61 = never within 60 steps):")
        print(per_seed_steps(runs, key).to_string(float_format="{:.0f}".format), end="\n\n")
    print("\n".join(verdicts(runs, args.pair or analyze.DEFAULT_PAIRS)))


if __name__ == "__main__":
    main()
