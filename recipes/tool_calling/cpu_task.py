"""The CPU tool-calling task: BFCL-v4 `simple_python` (400 questions), a fixed split, a short prompt, two rewards.

- split: questions sorted by BFCL id, permuted with numpy seed 0; the first 320 train, the last 80 are held out;
- prompt: [system: SYSTEM_PROMPT with one line per function, user: the question] in the model's chat
  template, then ANSWER_PREFIX (the assistant turn starts with `<tool_call>` and a newline: without it
  SmolLM2-135M never wrote a call in 24 greedy and sampled tries, so no reward would ever vary); the
  answer is the recipe's `<tool_call>` block (bfcl_checker.decode_toolrl_calls), without `<think>`;
- `format_reward` (the early reward) = 1 if the block decodes and every call names a listed function,
  0.5 if it decodes but names another function (partial credit: the base model mostly copies the
  example's name), else 0;
- `correct_reward` (the late reward) = 1 if BFCL's AST rules (bfcl_checker.entry_error) accept the
  calls: right function, required parameters present, every value allowed by the ground truth; else 0.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bfcl_checker import decode_toolrl_calls, entry_error  # noqa: E402
from evaluate_bfcl import bfcl_data_dir, load_category  # noqa: E402

CATEGORY = "simple_python"
N_TRAIN = 320
SPLIT_SEED = 0
REWARD_KEYS = ("format_reward", "correct_reward")
ANSWER_PREFIX = "<tool_call>\n"
SYSTEM_PROMPT = (
    "Functions:\n{tools}\n"
    "Reply with one function call and nothing else, e.g.\n"
    '<tool_call>\n{{"name": "get_weather", "parameters": {{"city": "Paris"}}}}\n</tool_call>'
)


def split_entries(data_dir: str | None = None) -> tuple[list[dict], list[dict]]:
    """(train, held_out) BFCL entries: 320 and 80 of `simple_python`, the same on every call."""
    entries = sorted(load_category(bfcl_data_dir(data_dir), CATEGORY), key=lambda e: int(e["id"].rsplit("_", 1)[1]))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(entries))
    shuffled = [entries[i] for i in order]
    return shuffled[:N_TRAIN], shuffled[N_TRAIN:]


def render_function(doc: dict) -> str:
    """One line per function: name, description, and each parameter's name, type and whether it is required."""
    schema = doc["parameters"]
    required = set(schema.get("required", []))
    params = ", ".join(
        f"{name} ({spec.get('type', 'any')}{', required' if name in required else ''})"
        for name, spec in schema.get("properties", {}).items()
    )
    return f"{doc['name']}: {doc.get('description', '')} Parameters: {params}"


def prompt_messages(entry: dict) -> list[dict]:
    """Chat messages for one entry: the function docs in the system message, BFCL's question as the user turn."""
    ((turn,),) = entry["question"]
    tools = "\n".join(render_function(doc) for doc in entry["function"])
    return [{"role": "system", "content": SYSTEM_PROMPT.format(tools=tools)}, turn]


def format_score(answer: str, functions: list[dict]) -> float:
    """1.0 if `answer` holds a decodable call of listed functions only, 0.5 if decodable but unlisted, else 0.0."""
    calls = decode_toolrl_calls(answer)
    if not calls:
        return 0.0
    listed = {doc["name"] for doc in functions}
    return 1.0 if all(name in listed for call in calls for name in call) else 0.5


def correct_score(answer: str, functions: list[dict], ground_truth: list[dict]) -> float:
    """1.0 if BFCL's AST rules accept the decoded calls for this `simple_python` entry, else 0.0."""
    return float(entry_error(CATEGORY, functions, decode_toolrl_calls(answer), ground_truth) is None)


def prompt_text(entry: dict, tokenizer) -> str:
    """The model's input: the chat-templated messages, the assistant turn opened, then ANSWER_PREFIX."""
    chat = tokenizer.apply_chat_template(prompt_messages(entry), add_generation_prompt=True, tokenize=False)
    return chat + ANSWER_PREFIX


def format_reward(completions: list[str], functions: list[str], **kwargs) -> list[float]:
    """TRL reward function: format_score of ANSWER_PREFIX + completion; `functions` is a JSON-text column."""
    return [format_score(ANSWER_PREFIX + c, json.loads(f)) for c, f in zip(completions, functions, strict=True)]


def correct_reward(completions: list[str], functions: list[str], ground_truth: list[str], **kwargs) -> list[float]:
    """TRL reward function: correct_score of ANSWER_PREFIX + completion; both columns are JSON text."""
    return [
        correct_score(ANSWER_PREFIX + c, json.loads(f), json.loads(g))
        for c, f, g in zip(completions, functions, ground_truth, strict=True)
    ]


def dataset_rows(entries: list[dict], tokenizer) -> list[dict]:
    """TRL prompt-dataset rows: the prompt text, and the entry's functions and ground truth as JSON text."""
    return [
        {
            "id": e["id"],
            "prompt": prompt_text(e, tokenizer),
            "functions": json.dumps(e["function"]),
            "ground_truth": json.dumps(e["ground_truth"]),
        }
        for e in entries
    ]
