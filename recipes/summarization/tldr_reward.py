"""TL;DR reward for verl's `reward.custom_reward_function`: {"score", "quality", "conciseness"} for every sample.

`backend` (a reward_kwargs entry) picks the scorer:
- "judge": an LLM judge at an OpenAI-compatible endpoint scores quality and conciseness 0-10 with
  the rubric in rubric.md (judge_client.py); `judge` holds JudgeSettings fields. If the judge cannot
  answer, JudgeError stops training: there is no fallback score.
- "offline": ROUGE-L against the reference and a length score, same keys and scale (offline_reward.py).
The function is async: verl's reward loop then scores a batch's samples concurrently.
"""

import asyncio
import os
import sys
import weakref

# verl loads this file by path, so its folder is not importable by default.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from judge_client import JudgeClient, JudgeSettings  # noqa: E402
from offline_reward import offline_scores  # noqa: E402

DEFAULT_RUBRIC = os.path.join(_HERE, "rubric.md")
_clients_by_loop = weakref.WeakKeyDictionary()  # event loop -> {(settings, rubric path): JudgeClient}


def judge_for(settings: JudgeSettings, rubric_path: str) -> JudgeClient:
    """One client per (event loop, settings, rubric): httpx connections belong to the loop that made them."""
    clients = _clients_by_loop.setdefault(asyncio.get_running_loop(), {})
    key = (settings, rubric_path)
    if key not in clients:
        with open(rubric_path, encoding="utf-8") as handle:
            clients[key] = JudgeClient(settings, handle.read())
    return clients[key]


async def compute_score(
    data_source,
    solution_str,
    ground_truth,
    extra_info=None,
    backend="judge",
    judge=None,
    rubric_path=None,
    **_reward_loop_kwargs,
) -> dict:
    """verl custom reward. `score` = quality + conciseness (what plain `grpo` optimises).

    extra_info["post"] (written by prepare_tldr.py) is the post the judge reads; ground_truth is the
    reference summary (used by the offline backend). Extra keyword arguments from verl's reward loop
    (e.g. a reward-router address) do not affect the score.
    """
    summary = solution_str.strip()
    if backend == "offline":
        scores = offline_scores(summary, ground_truth)
    elif backend == "judge":
        post = (extra_info or {}).get("post")
        if not isinstance(post, str):
            raise KeyError(
                f"TL;DR sample from {data_source!r} has no extra_info['post'] for the judge; "
                "build the parquet with recipes/summarization/prepare_tldr.py"
            )
        settings = JudgeSettings(**dict(judge or {}))
        scores = await judge_for(settings, rubric_path or DEFAULT_RUBRIC).score(post, summary)
    else:
        raise ValueError(f"unknown TL;DR reward backend {backend!r}; use 'judge' or 'offline'")
    return {"score": scores["quality"] + scores["conciseness"], **scores}
