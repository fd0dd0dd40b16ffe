"""A two-second task for smoke runs: "a+b=" prompts and a reward with several components.

``compute_score`` is a verl custom reward function (``reward.custom_reward_function.path=
pkg://cpu_harness.smoke_task``); it returns the same keys for every sample, as verl's
agent loop requires, so each key reaches the advantage estimator as a per-row reward.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from cpu_harness.assets import rl_row, write_rl_parquet

DATA_SOURCE = "saw_cpu_smoke_add"
REWARD_KEYS = ("accuracy_reward", "format_reward", "length_reward")
REWARD_MIN = (0.0, 0.0, -1.0)  # each key's theoretical minimum (algorithm.saw.reward_min): length_reward is in [-1, 0]


def smoke_rows(count: int, split: str, seed: int) -> list[dict]:
    """``count`` rows asking for the sum of two digits."""
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for index in range(count):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append(rl_row(DATA_SOURCE, f"{a}+{b}=", str(a + b), split, index, ability="math"))
    return rows


def write_smoke_data(out_dir: str | Path, train_rows: int = 16, val_rows: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``val.parquet`` under ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    return (write_rl_parquet(smoke_rows(train_rows, "train", seed), out_dir / "train.parquet"),
            write_rl_parquet(smoke_rows(val_rows, "val", seed), out_dir / "val.parquet"))


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """Exact answer, digits-only format, and brevity; ``score`` is their sum (unused by SAW)."""
    answer = solution_str.strip()
    accuracy = float(answer == ground_truth)
    fmt = 1.0 if re.fullmatch(r"\d+", answer) else (0.5 if re.search(r"\d", answer) else 0.0)
    length = -min(len(answer), 64) / 64.0
    return {"score": accuracy + 0.5 * fmt + length, "accuracy_reward": accuracy,
            "format_reward": fmt, "length_reward": length}
