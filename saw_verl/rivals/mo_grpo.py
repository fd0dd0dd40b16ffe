"""`mo_grpo`: MO-GRPO (arXiv 2509.22047, Eq. 5): per-reward z-scores within the group, summed, no batch step
(docs/estimators.md, "mo_grpo")."""

from __future__ import annotations

from typing import Optional

from saw_verl.config import SawConfig
from saw_verl.result import EstimatorResult
from saw_verl.rivals.common import key_statistics, key_zscores, prepare, token_advantages


def mo_grpo_advantages(rewards, group_ids, response_mask, cfg: SawConfig, num_groups: Optional[int] = None):
    """rewards (N, K), group_ids (N,), response_mask (N, L) -> EstimatorResult (advantages (N, L) float32;
    per key: mean, std of the raw rewards, weight = the static weight)."""
    batch = prepare(rewards, group_ids, response_mask, cfg, num_groups)
    row_values = key_zscores(batch, cfg) @ batch.weights
    return EstimatorResult(token_advantages(row_values, batch), key_statistics(batch, cfg), {}, "mo_grpo")
