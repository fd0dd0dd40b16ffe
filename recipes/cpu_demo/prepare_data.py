"""Write the CPU demo's data in verl's RL parquet format: prompts "copy D" whose answer is the digit D.

    python recipes/cpu_demo/prepare_data.py --local_save_dir ~/data/saw_cpu_demo [--digits 1368]

D is drawn uniformly from ``--digits`` (4 classes by default: few enough that the tiny model learns
the copy within ~60 steps, enough that it is learned well after the answer's format).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from cpu_harness.assets import rl_row, write_rl_parquet

DATA_SOURCE = "saw_cpu_demo/copy_digit"
DEFAULT_DIGITS = "1368"


def copy_digit_rows(count: int, split: str, digits: str = DEFAULT_DIGITS, seed: int = 0) -> list[dict]:
    """``count`` rows "copy D" with D drawn from ``digits``; the ground truth is D."""
    if not digits or not digits.isdigit():
        raise ValueError(f"--digits must be a non-empty string of digits, got {digits!r}")
    rng = random.Random(f"{seed}/{split}")
    rows = []
    for index in range(count):
        digit = rng.choice(digits)
        rows.append(rl_row(DATA_SOURCE, f"copy {digit}", digit, split, index, ability="copy"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local_save_dir", default="~/data/saw_cpu_demo")
    parser.add_argument("--digits", default=DEFAULT_DIGITS, help="the digits D the prompts ask to copy")
    parser.add_argument("--train_size", type=int, default=4096)
    parser.add_argument("--val_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.local_save_dir).expanduser()
    for split, size in (("train", args.train_size), ("test", args.val_size)):
        print(write_rl_parquet(copy_digit_rows(size, split, args.digits, args.seed), out / f"{split}.parquet"))


if __name__ == "__main__":
    main()
