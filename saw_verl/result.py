"""What every SAW path returns (no torch math, no trainer)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class SawResult(NamedTuple):
    """advantages: (N, L) float32. weights/cv: (K,) float64, the ones used (with a history: the pool's). mean/std:
    (K,) float64 of this batch's raw rewards; batch_cv: (K,) float64 CV of this batch alone. pool: (5, K) float64
    history pool with this batch in it (saw_verl.weights.POOL_ROWS), None without a history. gated_fraction: (K,)
    float64 share of the rows whose reward was replaced by its condition's fill (0 for keys without a condition),
    None without conditions."""

    advantages: torch.Tensor
    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_cv: Optional[torch.Tensor] = None
    pool: Optional[torch.Tensor] = None
    gated_fraction: Optional[torch.Tensor] = None


class EstimatorResult(NamedTuple):
    """What every estimator of the registry (saw_verl.registry) returns.

    advantages: (N, L) float32. per_key: statistic name -> (K,) float64, one value per reward key (raw reward
    mean / std of the batch; weights or gates where the estimator has them). batch: statistic name -> () float64
    (batch-level gates, e.g. the share of rollouts kept). prefix: the metric namespace ("saw" for SAW, else the
    estimator's name). saw: the SawResult of a SAW estimator (None for the others). shaping: statistic name ->
    (values (C,) float64, the key indices they are for): the conditions' and schedule's saw/{key}/alpha and
    saw/{key}/gated_fraction, whatever the estimator (saw_verl.shaping.shaping_metrics)."""

    advantages: torch.Tensor
    per_key: dict
    batch: dict
    prefix: str
    saw: Optional[SawResult] = None
    shaping: Optional[dict] = None

    def metrics(self, reward_keys) -> dict[str, float]:
        """{prefix/key/statistic: float} for every per-key statistic and {prefix/statistic: float} for the batch
        ones, and saw/{key}/{statistic} for the shaping ones, read from the device in one transfer."""
        shaping = self.shaping or {}
        columns = list(self.per_key.values()) + list(self.batch.values()) + [v for v, _ in shaping.values()]
        if not columns:
            return {}
        values = torch.cat([c.reshape(-1).to(torch.float64) for c in columns]).tolist()
        out, at = {}, 0
        for stat in self.per_key:
            for key in reward_keys:
                out[f"{self.prefix}/{key}/{stat}"] = values[at]
                at += 1
        for stat in self.batch:
            out[f"{self.prefix}/{stat}"] = values[at]
            at += 1
        for stat, (_, keys) in shaping.items():
            for index in keys:
                out[f"saw/{reward_keys[index]}/{stat}"] = values[at]
                at += 1
        return out
