"""Judge-free TL;DR rewards with the judge's keys and 0-10 scale.

quality     = 10 * ROUGE-L F1 of the summary against the reference summary (words: lower-cased \\w+ runs);
conciseness = 10 up to the reference's length in words, then falling linearly to 0 at
              `ZERO_AT_LENGTH_RATIO` times it; an empty summary gets 0.
A stand-in for users without a judge: it rewards overlap with one human reference, not faithfulness.
"""

import re

ZERO_AT_LENGTH_RATIO = 3.0
_WORD = re.compile(r"\w+")


def words(text: str) -> list:
    return _WORD.findall(text.lower())


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)) time, O(len(b)) memory)."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) in [0, 1]; 0 when either side has no words."""
    cand, ref = words(candidate), words(reference)
    lcs = lcs_length(cand, ref) if cand and ref else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def conciseness_score(summary: str, reference: str) -> float:
    """10 for a summary no longer than the reference, 0 at ZERO_AT_LENGTH_RATIO x its length or when empty."""
    length, target = len(words(summary)), max(len(words(reference)), 1)
    if length == 0:
        return 0.0
    excess = max(length - target, 0) / (target * (ZERO_AT_LENGTH_RATIO - 1))
    return 10.0 * max(0.0, 1.0 - excess)


def offline_scores(summary: str, reference: str) -> dict:
    return {"quality": 10.0 * rouge_l_f1(summary, reference), "conciseness": conciseness_score(summary, reference)}
