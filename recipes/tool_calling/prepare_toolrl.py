"""Convert ToolRL's released RL data to verl's parquet format, validating every record first.

Input: ToolRL's `dataset/rlla_4k_raw/rlla_rl.json` (github.com/qiancheng0/ToolRL; download it
yourself): one JSON list of 4,000 records (ToolACE 2k, Hammer 1k, xLAM 1k), each
    {"instruction": system prompt with the tool list and the output format,
     "input": the dialogue so far (user turns, earlier tool calls and <obs> results),
     "output": the reference answer, e.g. "<think>...</think>\\n<tool_call>\\n{json}\\n{json}\\n</tool_call>"}
where every line of a <tool_call> block is one JSON object {"name": str, "parameters": {...}}.

Output (`--out-dir`): train.parquet / test.parquet with verl's columns (`data_source`, `prompt` as
[system=instruction, user=input], `ability`, `reward_model.ground_truth`=output, `extra_info`).
The split is ToolRL's own: numpy seed 31415 shuffle, the last 2% (80 of 4,000) for test.

    python recipes/tool_calling/prepare_toolrl.py --input rlla_rl.json --out-dir ~/data/toolrl
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

DATA_SOURCE = "toolrl_rlla"
FIELDS = ("instruction", "input", "output")
TOOLRL_SEED = 31415
TOOLRL_TEST_FRACTION = 0.02


class ToolRLFormatError(ValueError):
    """The input is not ToolRL's rlla_rl.json: the message names the record and field at fault."""


def ground_truth_calls(output: str) -> list:
    """The tool calls of a reference output's first <tool_call> block ([] if none); raises where rlla would."""
    if "<tool_call>" not in output:
        return []
    if "</tool_call>" not in output:
        raise ValueError("<tool_call> is never closed by </tool_call>")
    block = output.split("<tool_call>")[1].split("</tool_call>")[0].strip()  # the block rlla scores
    calls = []
    for line in block.split("\n"):
        call = json.loads(line)
        if not (
            isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("parameters"), dict)
        ):
            raise ValueError(f'tool-call line is not {{"name": str, "parameters": dict}}: {line[:120]!r}')
        calls.append(call)
    return calls


def validate_records(records, source: str) -> list:
    """Check the shape that verl's rlla scorer relies on; return the records unchanged."""
    hint = f"{source} is not ToolRL's rlla_rl.json (a JSON list of {{instruction, input, output}} records)"
    if not isinstance(records, list) or not records:
        raise ToolRLFormatError(
            f"{hint}: top level is {type(records).__name__}" + (" (empty)" if records == [] else "")
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ToolRLFormatError(f"{hint}: record {index} is a {type(record).__name__}, not an object")
        for field in FIELDS:
            if not isinstance(record.get(field), str):
                found = "missing" if field not in record else type(record[field]).__name__
                raise ToolRLFormatError(f"{hint}: record {index} field {field!r} is {found}, expected a string")
        try:
            ground_truth_calls(record["output"])
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            raise ToolRLFormatError(f"{source}: record {index} 'output' has a bad tool-call block: {err}") from err
    return records


def load_records(path: str) -> list:
    with open(path, encoding="utf-8") as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as err:
            raise ToolRLFormatError(f"{path} is not JSON ({err}); expected ToolRL's rlla_rl.json") from err
    return validate_records(records, path)


def toolrl_split(records: list) -> tuple:
    """(train, test) exactly as ToolRL's own preprocessing draws them."""
    shuffled = list(records)
    np.random.RandomState(TOOLRL_SEED).shuffle(shuffled)
    test_num = int(len(shuffled) * TOOLRL_TEST_FRACTION)
    if test_num == 0:
        raise ToolRLFormatError(f"only {len(records)} records: 2% of them is no test example")
    return shuffled[:-test_num], shuffled[-test_num:]


def to_verl_row(record: dict, index: int, split: str) -> dict:
    return {
        "data_source": DATA_SOURCE,
        "prompt": [
            {"role": "system", "content": record["instruction"]},
            {"role": "user", "content": record["input"]},
        ],
        "ability": "tool_calling",
        "reward_model": {"style": "rule", "ground_truth": record["output"]},
        "extra_info": {"split": split, "index": index, "num_tool_calls": len(ground_truth_calls(record["output"]))},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="path to ToolRL's dataset/rlla_4k_raw/rlla_rl.json")
    parser.add_argument("--out-dir", default=os.path.expanduser("~/data/toolrl"))
    args = parser.parse_args(argv)
    try:
        records = load_records(args.input)
    except (ToolRLFormatError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train, test = toolrl_split(records)
    os.makedirs(args.out_dir, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        frame = pd.DataFrame([to_verl_row(record, i, split) for i, record in enumerate(rows)])
        frame.to_parquet(os.path.join(args.out_dir, f"{split}.parquet"))
    with_calls = sum(bool(ground_truth_calls(r["output"])) for r in records)
    print(f"{len(records)} records ({with_calls} expect a tool call) -> {len(train)} train / {len(test)} test")
    print(f"written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
