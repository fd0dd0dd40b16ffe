"""Build the TL;DR train/eval parquets (verl's format) from local files, validating them first.

Input: Reddit TL;DR in the layout of the `CarperAI/openai_summarize_tldr` dataset (download it
yourself, e.g. its train and valid/test splits), as .jsonl, .json (a list of records) or .parquet,
with two string columns per row:
    prompt: "SUBREDDIT: r/...\\nTITLE: ...\\nPOST: ...\\nTL;DR:"   (the post, ending with "TL;DR:")
    label:  the human reference summary
Other columns are ignored. The paper's sizes are the defaults: 2,560 train and 256 eval prompts,
drawn at random (--seed) from the two files.

Output (`--out-dir`): train.parquet / test.parquet with verl's columns; the user message asks for
a summary of the post; `reward_model.ground_truth` is the reference; `extra_info.post` is the post
for the judge.

    python recipes/summarization/prepare_tldr.py --train-file train.jsonl --eval-file valid.jsonl --out-dir ~/data/tldr
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

DATA_SOURCE = "reddit_tldr"
COLUMNS = ("prompt", "label")
INSTRUCTION = "Summarize the Reddit post below in one or two short sentences. Reply with the summary only."


class TLDRFormatError(ValueError):
    """The input is not TL;DR in the expected layout: the message names the file, row and column at fault."""


def _load(path: str, hint: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".jsonl"):
            return pd.DataFrame([json.loads(line) for line in handle if line.strip()])
        if path.endswith(".json"):
            records = json.load(handle)
            if not isinstance(records, list):
                raise TLDRFormatError(f"{hint}; the JSON top level is a {type(records).__name__}, not a list")
            return pd.DataFrame(records)
    raise TLDRFormatError(f"{hint}; unknown file extension")


def read_table(path: str) -> pd.DataFrame:
    """The rows of one TL;DR file, checked: both columns present, every value non-empty text."""
    hint = f"{path}: expected TL;DR rows with string columns {list(COLUMNS)} (.jsonl, .json or .parquet)"
    try:
        frame = _load(path, hint)
    except TLDRFormatError:
        raise
    except (ValueError, OSError) as err:  # bad JSON, not a parquet file, unreadable
        raise TLDRFormatError(f"{hint}; could not read it: {err}") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise TLDRFormatError(f"{hint}; missing {missing}, found {list(frame.columns)}")
    for column in COLUMNS:
        for row, value in enumerate(frame[column]):
            if not isinstance(value, str) or not value.strip():
                raise TLDRFormatError(f"{path}: row {row} column {column!r} is {value!r}, expected non-empty text")
    return frame


def sample_rows(frame: pd.DataFrame, size: int, rng: np.random.Generator, path: str) -> pd.DataFrame:
    if size > len(frame):
        raise TLDRFormatError(f"{path} has {len(frame)} rows, fewer than the {size} requested")
    return frame.iloc[np.sort(rng.choice(len(frame), size=size, replace=False))]


def to_verl_row(prompt: str, label: str, index: int, split: str) -> dict:
    post = prompt.strip()
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{INSTRUCTION}\n\n{post}"}],
        "ability": "summarization",
        "reward_model": {"style": "model", "ground_truth": label.strip()},
        "extra_info": {"split": split, "index": index, "post": post},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--eval-file", required=True)
    parser.add_argument("--out-dir", default=os.path.expanduser("~/data/tldr"))
    parser.add_argument("--train-size", type=int, default=2560)
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    splits = {}
    try:
        for split, path, size in (
            ("train", args.train_file, args.train_size),
            ("test", args.eval_file, args.eval_size),
        ):
            splits[split] = sample_rows(read_table(path), size, rng, path)
    except TLDRFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    for split, frame in splits.items():
        pairs = zip(frame["prompt"], frame["label"], strict=True)
        rows = [to_verl_row(prompt, label, i, split) for i, (prompt, label) in enumerate(pairs)]
        pd.DataFrame(rows).to_parquet(os.path.join(args.out_dir, f"{split}.parquet"))
    print(f"{len(splits['train'])} train / {len(splits['test'])} test prompts -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
