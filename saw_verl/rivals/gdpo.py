"""`gdpo`: GDPO for any number of rewards, equal to verl 0.9.1's `gdpo` by default (docs/estimators.md, "gdpo").

Per-key group z-scores (verl's GRPO: std ddof=1 + epsilon), summed with the static weights, then whitened over the
batch: `whitening="token"` is verl's token-weighted `masked_whiten` (ddof=1 over the token count, +1e-8 in the
variance); `whitening="sequence"` is TRL's `normalize_then_sum` step (one value per rollout, std ddof=1, + epsilon;
TRL uses epsilon=1e-4).
"""

from __future__ import annotations

from typing import Optional

import torch

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError, too_few_tokens_error
from saw_verl.result import EstimatorResult
from saw_verl.rivals.common import key_statistics, key_zscores, prepare, token_advantages
from saw_verl.torch_backend import whiten_rows

WHITENINGS = ("token", "sequence")


def check_whitening(whitening: str) -> None:
    if whitening not in WHITENINGS:
        raise SawInputError(f"gdpo option whitening={whitening!r}: expected one of {WHITENINGS}")


def whiten_sequences(scores: torch.Tensor, epsilon: float) -> torch.Tensor:
    """scores (N,) float64, N >= 2 -> (scores - mean) / (std ddof=1 + epsilon), every rollout counted once."""
    return (scores - scores.mean()) / (scores.std() + epsilon)


def gdpo_advantages(
    rewards, group_ids, response_mask, cfg: SawConfig, num_groups: Optional[int] = None, whitening: str = "token",
) -> EstimatorResult:
    """rewards (N, K), group_ids (N,), response_mask (N, L) -> EstimatorResult (advantages (N, L) float32;
    per key: mean, std of the raw rewards, weight = the static weight)."""
    check_whitening(whitening)
    batch = prepare(rewards, group_ids, response_mask, cfg, num_groups)
    summed = key_zscores(batch, cfg) @ batch.weights
    if whitening == "token":
        total = batch.tokens.sum()
        if total.item() < 2:
            raise too_few_tokens_error(total.item())
        row_values = whiten_rows(summed, batch.tokens, total)
    else:
        row_values = whiten_sequences(summed, cfg.epsilon)
    return EstimatorResult(token_advantages(row_values, batch), key_statistics(batch, cfg), {}, "gdpo")
