"""Step 1 of the SAW specification (docs/spec.md) on an (N, K) reward matrix, shared by every trainer integration.

NaN entries (a reward function that did not score a rollout, as TRL writes them) are left out of
their key's statistics; a key with fewer than 2 scored rollouts, or a constant one, has std 0, so
CV 0 and weight 0. With a history pool (docs/spec.md, "History") the CVs and weights are the pool's after
this batch joins it. Runs on the rewards' device; no host sync.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Optional, Sequence

import torch

from saw_verl.config import OFFICIAL_EPS, SawConfig

logger = logging.getLogger(__name__)
STATISTICS = ("weight", "cv", "mean", "std")
POOL_ROWS = ("weight", "mean", "m2", "low", "high")  # a history pool: (5, K) float64, rows in this order


class BatchWeights(NamedTuple):
    """Each (K,) float64: the SAW weights w_k and CV_k (with a history: the pool's), the mean / std of this
    batch's raw rewards, and batch_cv, CV_k of this batch alone. pool: (5, K) float64, the history pool with
    this batch in it (POOL_ROWS), or None without a history."""

    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_cv: Optional[torch.Tensor] = None
    pool: Optional[torch.Tensor] = None


def empty_pool(num_keys: int, device=None) -> torch.Tensor:
    """(5, K) float64 pool of no rewards: weight 0, mean 0, m2 0, low +inf, high -inf."""
    pool = torch.zeros(len(POOL_ROWS), num_keys, dtype=torch.float64, device=device)
    pool[3], pool[4] = torch.inf, -torch.inf
    return pool


def batch_moments(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (N, K) float64, NaN = not scored -> (5, K) float64 pool of this batch alone (POOL_ROWS): count,
    mean (NaN for a key nothing scored), sum of squared deviations, min, max of each key's scored rewards."""
    scored = ~torch.isnan(rewards)
    count = scored.sum(dim=0).to(torch.float64)
    mean = torch.where(scored, rewards, 0.0).sum(dim=0) / count
    centred = torch.where(scored, rewards - mean, 0.0)
    low = torch.where(scored, rewards, torch.inf).amin(dim=0)
    high = torch.where(scored, rewards, -torch.inf).amax(dim=0)
    return torch.stack([count, mean, (centred * centred).sum(dim=0), low, high])


def merge_pool(pool: torch.Tensor, batch: torch.Tensor, decay: float) -> torch.Tensor:
    """pool, batch: (5, K) float64 (POOL_ROWS) -> the pool after decaying it by `decay` and adding the batch.

    W' = decay W + c, M' = (decay W M + c m) / W', S' = decay S + Q + (decay W c / W') (m - M)^2; an empty or
    fully decayed pool (decay W = 0) takes the batch as it is, and a batch with nothing scored keeps the
    decayed pool. low / high are the extremes since the pool (re)started: they do not decay."""
    weight, mean, m2, low, high = pool
    count, batch_mean, batch_m2, batch_low, batch_high = batch
    kept = decay * weight
    merged_weight = kept + count
    fresh, unscored = kept == 0, count == 0
    gap = batch_mean - mean
    merged_mean = torch.where(fresh, batch_mean, torch.where(unscored, mean, (kept * mean + count * batch_mean) / merged_weight))
    merged_m2 = torch.where(
        fresh, batch_m2, torch.where(unscored, decay * m2, decay * m2 + batch_m2 + kept * count / merged_weight * gap * gap)
    )
    merged_low = torch.where(fresh, batch_low, torch.minimum(low, batch_low))
    merged_high = torch.where(fresh, batch_high, torch.maximum(high, batch_high))
    return torch.stack([merged_weight, merged_mean, merged_m2, merged_low, merged_high])


def pool_cv(pool: torch.Tensor, cfg: SawConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pool (5, K) float64 -> (cv, mean, std), each (K,): std over the pool's weight minus 1 (Bessel), exactly 0
    where the pool holds one value only (low == high) or a weight <= 1; CV of the shifted reward (preset)."""
    weight, mean, m2, low, high = pool
    spread = (high > low) & (weight > 1)
    std = torch.where(spread, (m2 / (weight - 1).clamp_min(1)).sqrt(), 0.0)
    reward_min = torch.tensor(cfg.reward_min, dtype=torch.float64, device=pool.device)
    if cfg.preset == "paper":
        cv = std / ((mean - reward_min + cfg.delta).abs() + cfg.delta)
    else:
        cv = std / ((mean - reward_min).abs() + OFFICIAL_EPS)
    return torch.where(spread, cv, 0.0), mean, std


def cv_weights(cv: torch.Tensor, cfg: SawConfig) -> torch.Tensor:
    """cv (K,) float64 -> the SAW weights w_k of the preset (docs/spec.md Step 1): they sum to K in both modes, and
    CVs all equal give exactly 1 each, the dynamic=false weights."""
    k = cv.numel()
    ones = torch.ones_like(cv)
    if not cfg.dynamic:
        return ones
    total = cv.sum()
    if cfg.preset == "official":
        weights = k * cv / (total + OFFICIAL_EPS)
    else:
        weights = torch.where(total < cfg.delta, ones, k * (cv / total.clamp_min(cfg.delta)))
    return torch.where(cv.amax() == cv.amin(), ones, weights)


def batch_weights(rewards: torch.Tensor, cfg: SawConfig, pool: Optional[torch.Tensor] = None) -> BatchWeights:
    """rewards (N, K) float (NaN = not scored) -> BatchWeights over all N rollouts (docs/spec.md Step 1).

    pool: (5, K) float64 history pool of the earlier steps (saw_verl.SawHistory): the CVs and weights are then
    those of the pool with this batch merged in at cfg.history_decay, and BatchWeights.pool is that new pool."""
    batch = batch_moments(rewards.to(torch.float64))
    batch_cv, mean, std = pool_cv(batch, cfg)
    if pool is None:
        return BatchWeights(cv_weights(batch_cv, cfg), batch_cv, mean, std, batch_cv)
    merged = merge_pool(pool.to(device=batch.device, dtype=torch.float64), batch, cfg.history_decay)
    cv = pool_cv(merged, cfg)[0]
    return BatchWeights(cv_weights(cv, cfg), cv, mean, std, batch_cv, merged)


_warned_below_min: set[tuple[str, str, float]] = set()


def reward_minimums(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (N, K) float (NaN = not scored) -> (K,) the smallest scored reward of each key (+inf if none)."""
    return torch.where(torch.isnan(rewards), torch.inf, rewards).amin(dim=0)


def warn_rewards_below_min(minimums: Sequence[float], cfg: SawConfig) -> None:
    """minimums: K floats, each key's smallest reward this step. One WARNING per process, key and option value for a
    key whose rewards go below its reward_min m_k: the CV of r - m_k (docs/spec.md, "Shift") then measures no
    non-negative quantity and the weights lose their meaning."""
    for key, low, floor in zip(cfg.reward_keys, minimums, cfg.reward_min):
        seen = (key, cfg.option("reward_min"), floor)
        if low < floor and seen not in _warned_below_min:
            _warned_below_min.add(seen)
            logger.warning(
                "saw_verl: reward %r reaches %g, below its %s entry %g: SAW's CV assumes r - m >= 0. Set %s to the "
                "reward's theoretical minimum (warned once)", key, low, cfg.option("reward_min"), floor,
                cfg.option("reward_min"),
            )


def metric_name(key: str, statistic: str) -> str:
    """The metric every trainer logs: saw/{key}/{weight|cv|mean|std|batch_cv}."""
    return f"saw/{key}/{statistic}"


def step_metrics(reward_keys: Sequence[str], stats) -> dict[str, float]:
    """stats: anything with (K,) weights, cv, mean, std, batch_cv and pool (BatchWeights, SawResult) ->
    {metric name: float}; saw/{key}/batch_cv only with a history pool (stats.pool not None)."""
    columns = dict(zip(STATISTICS, (stats.weights, stats.cv, stats.mean, stats.std)))
    if stats.pool is not None:
        columns["batch_cv"] = stats.batch_cv
    values = torch.stack(list(columns.values())).tolist()  # one host read for all numbers
    return {
        metric_name(key, stat): values[s][k] for k, key in enumerate(reward_keys) for s, stat in enumerate(columns)
    }
