"""Reward of the CPU demo task: copy the digit of the prompt, answering in digits only.

Two components, returned for every sample (verl's agent loop takes the key list from the first one):

* ``format_reward``: fraction of the answer's characters that are digits. A random policy scores
  about 0.04; it is a property of single tokens, so the tiny model learns it within a few dozen steps.
* ``correct_reward``: fraction of the answer's characters equal to the prompt's digit (so at most
  ``format_reward``). Once the answer is digits it starts near 0.1, and rising above that requires
  the model to attend back to the prompt: it is learned late.

``score`` (their sum) is what verl logs as ``critic/score``; SAW reads the two components.
"""

from __future__ import annotations

REWARD_KEYS = ("format_reward", "correct_reward")


def _fraction(answer: str, predicate) -> float:
    return sum(map(predicate, answer)) / len(answer) if answer else 0.0


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl custom reward function: ``{"score", "format_reward", "correct_reward"}``, each in [0, 2] / [0, 1]."""
    answer = solution_str.strip()
    fmt = _fraction(answer, str.isdigit)
    correct = _fraction(answer, lambda char: char == ground_truth)
    return {"score": fmt + correct, "format_reward": fmt, "correct_reward": correct}
