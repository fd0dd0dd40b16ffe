"""BFCL-v4 accuracy of a ToolRL-format model on BFCL's single-turn Python categories, offline.

Two steps around your own generation run (e.g. vLLM, greedy, the chat template of the trained model):

    python recipes/tool_calling/evaluate_bfcl.py prompts --out bfcl_prompts.jsonl
        one line per question: {"id", "category", "messages"}; the system message lists the
        entry's functions in the <think>/<tool_call>/<response> format the recipe trains
        (bfcl_system_prompt.txt, or --system-prompt FILE with a {tools} placeholder)
    python recipes/tool_calling/evaluate_bfcl.py score --generations gen.jsonl [--report report.json]
        gen.jsonl: one line per question, {"id": ..., "generation": "<the model's raw answer>"};
        prints accuracy per category (a question without a generation counts as wrong)

BFCL's questions and answers come from the `bfcl-eval` PyPI package (`pip install --no-deps bfcl-eval`
is enough) or `--data-dir` (its `bfcl_eval/data` folder). The checking rules are in bfcl_checker.py.
This is NOT BFCL's official score: it covers the categories in bfcl_checker.SUPPORTED_CATEGORIES
only, re-implements BFCL's checker rather than running it, uses our prompt rather than any BFCL
model handler, and reports plain per-category accuracy plus their unweighted mean, not BFCL's
weighted overall.
"""

import argparse
import importlib.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bfcl_checker import (  # noqa: E402
    AST_CATEGORIES, SUPPORTED_CATEGORIES, decode_toolrl_calls, entry_error,
)  # fmt: skip

DEFAULT_SYSTEM_PROMPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bfcl_system_prompt.txt")


def bfcl_data_dir(explicit=None) -> str:
    if explicit:
        return explicit
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("BFCL data not found: `pip install --no-deps bfcl-eval` or pass --data-dir .../bfcl_eval/data")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_category(data_dir: str, category: str) -> list:
    """BFCL entries of one category, each with its ground truth under "ground_truth" (AST categories)."""
    entries = _read_jsonl(os.path.join(data_dir, f"BFCL_v4_{category}.json"))
    if category in AST_CATEGORIES:
        answers = {
            a["id"]: a["ground_truth"]
            for a in _read_jsonl(os.path.join(data_dir, "possible_answer", f"BFCL_v4_{category}.json"))
        }
        for entry in entries:
            entry["ground_truth"] = answers[entry["id"]]
    return entries


def render_tools(functions: list) -> str:
    lines = []
    for number, doc in enumerate(functions, 1):
        params = doc.get("parameters", {})
        lines += [
            f"{number}. Name: {doc['name']}",
            f"Description: {doc.get('description', '')}",
            f"Parameters: {json.dumps(params.get('properties', {}), ensure_ascii=False)}",
            f"Required: {json.dumps(params.get('required', []))}",
        ]
    return "\n".join(lines)


def prompt_messages(entry: dict, template: str) -> list:
    """Chat messages for one single-turn entry; BFCL's own system message, if any, follows ours."""
    (turn,) = entry["question"]
    system = template.replace("{tools}", render_tools(entry["function"]))
    if turn and turn[0]["role"] == "system":
        system, turn = f"{system}\n\n{turn[0]['content']}", turn[1:]
    return [{"role": "system", "content": system}, *turn]


def category_of(entry_id: str) -> str:
    category = entry_id.rsplit("_", 1)[0]
    if category not in SUPPORTED_CATEGORIES:
        raise ValueError(f"generation id {entry_id!r}: category {category!r} is not one this script scores")
    return category


def score(generations: list, data_dir: str) -> dict:
    """{category: {"correct", "total", "missing", "accuracy"}} for every category present in `generations`."""
    by_id = {}
    for row in generations:
        if row["id"] in by_id:
            raise ValueError(f"generation id {row['id']!r} appears twice")
        by_id[row["id"]] = row["generation"]
    report = {}
    for category in sorted({category_of(i) for i in by_id}):
        entries = load_category(data_dir, category)
        known = {e["id"] for e in entries}
        stray = sorted(i for i in by_id if category_of(i) == category and i not in known)
        if stray:
            raise ValueError(f"generation ids not in BFCL {category}: {stray[:5]}")
        correct = sum(
            e["id"] in by_id
            and entry_error(category, e["function"], decode_toolrl_calls(by_id[e["id"]]), e.get("ground_truth")) is None
            for e in entries
        )
        missing = sum(e["id"] not in by_id for e in entries)
        report[category] = {
            "correct": correct,
            "total": len(entries),
            "missing": missing,
            "accuracy": correct / len(entries),
        }
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="bfcl_eval/data (default: from the installed bfcl-eval package)")
    commands = parser.add_subparsers(dest="command", required=True)
    prompts = commands.add_parser("prompts", help="write the chat prompts to generate from")
    prompts.add_argument("--out", required=True)
    prompts.add_argument("--categories", default=",".join(SUPPORTED_CATEGORIES))
    prompts.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="file with a {tools} placeholder")
    scoring = commands.add_parser("score", help="score generations against BFCL's ground truth")
    scoring.add_argument("--generations", required=True)
    scoring.add_argument("--report", help="also write the per-category report as JSON here")
    args = parser.parse_args(argv)
    data_dir = bfcl_data_dir(args.data_dir)

    if args.command == "prompts":
        categories = args.categories.split(",")
        unsupported = [c for c in categories if c not in SUPPORTED_CATEGORIES]
        if unsupported:
            parser.error(f"unsupported categories {unsupported}; choose from {','.join(SUPPORTED_CATEGORIES)}")
        with open(args.system_prompt, encoding="utf-8") as handle:
            template = handle.read()
        if "{tools}" not in template:
            parser.error(f"{args.system_prompt} has no {{tools}} placeholder")
        rows = [
            {"id": entry["id"], "category": category, "messages": prompt_messages(entry, template)}
            for category in categories
            for entry in load_category(data_dir, category)
        ]
        with open(args.out, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        print(f"wrote {len(rows)} prompts to {args.out}")
        return 0

    report = score(_read_jsonl(args.generations), data_dir)
    if not report:
        raise SystemExit(f"{args.generations} holds no generations")
    for category, row in report.items():
        counts = f"{row['correct']}/{row['total']}, {row['missing']} without a generation"
        print(f"{category:24s} {row['accuracy']:7.2%}  ({counts})")
    mean = sum(row["accuracy"] for row in report.values()) / len(report)
    print(f"{'unweighted mean':24s} {mean:7.2%}  over {len(report)} categories (not BFCL's overall score)")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            json.dump({"categories": report, "unweighted_mean": mean}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
