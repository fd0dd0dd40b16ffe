"""Per-key statistics of the latest step (SAW's weights, the rivals' means, stds and gates, and every estimator's
saw/{key}/alpha and, for a conditioned key, saw/{key}/gated_fraction), handed from the estimator to the trainer's
step metrics.

The estimator runs in the trainer's process (verl's TaskRunner), but verl gives it no metrics dict:
it `publish`es here, and the shim `take`s the pending metrics into the step metrics (v1: the
`metrics` dict of `PPOTrainer._compute_advantage`; legacy: the output of `compute_data_metrics`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Sequence

from saw_verl.result import EstimatorResult

logger = logging.getLogger(__name__)
# verl configures the root logger at WARNING; show the per-step weights on the console unless told not to
logger.setLevel(os.environ.get("SAW_VERL_LOGGING_LEVEL", "INFO").upper())

_lock = threading.Lock()
_pending: dict[str, float] = {}


def publish(estimator: str, reward_keys: Sequence[str], result: EstimatorResult) -> dict[str, float]:
    """Store this step's metrics for the trainer (replacing any not yet taken) and log them at INFO."""
    metrics = result.metrics(reward_keys)
    with _lock:
        _pending.clear()
        _pending.update(metrics)
    logger.info(
        "%s per key: %s",
        estimator,
        ", ".join(_key_line(key, result, metrics) for key in reward_keys)
        + "".join(f", {stat} {metrics[f'{result.prefix}/{stat}']:.4f}" for stat in result.batch),
    )
    return metrics


def _key_line(key: str, result: EstimatorResult, metrics: dict[str, float]) -> str:
    """"key (stat value, ...)": the estimator's per-key statistics, then the key's alpha (and gated_fraction)."""
    names = [f"{result.prefix}/{key}/{stat}" for stat in result.per_key]
    names += [name for name in (f"saw/{key}/{stat}" for stat in result.shaping or ()) if name in metrics]
    return f"{key} (" + ", ".join(f"{name.rsplit('/', 1)[1]} {metrics[name]:.4f}" for name in names) + ")"


def take() -> dict[str, float]:
    """Pop the pending metrics (empty when no saw_* estimator ran since the last take)."""
    with _lock:
        metrics = dict(_pending)
        _pending.clear()
    return metrics
