"""Step 1 of the SAW specification (docs/spec.md) on an (N, K) reward matrix, shared by every trainer integration.

NaN entries (a reward function that did not score a rollout, as TRL writes them) are left out of
their key's statistics; a key with fewer than 2 scored rollouts, or a constant one, has std 0, so
CV 0 and weight 0. Runs on the rewards' device; no host sync.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from saw_verl.config import OFFICIAL_EPS, SawConfig

STATISTICS = ("weight", "cv", "mean", "std")


class BatchWeights(NamedTuple):
    """Each (K,) float64: the SAW weights w_k, CV_k, and the mean / std of the raw rewards."""

    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def batch_weights(rewards: torch.Tensor, cfg: SawConfig) -> BatchWeights:
    """rewards (N, K) float (NaN = not scored) -> BatchWeights over all N rollouts (docs/spec.md Step 1)."""
    rewards = rewards.to(torch.float64)
    k = rewards.shape[1]
    scored = ~torch.isnan(rewards)
    count = scored.sum(dim=0).to(torch.float64)
    raw_mean = torch.where(scored, rewards, 0.0).sum(dim=0) / count  # NaN for a key nothing scored
    centred = torch.where(scored, rewards - raw_mean, 0.0)
    high = torch.where(scored, rewards, -torch.inf).amax(dim=0)
    low = torch.where(scored, rewards, torch.inf).amin(dim=0)
    spread = high > low  # False for constant keys (exactly 0 std, whatever the mean's rounding) and < 2 scores
    raw_std = torch.where(spread, ((centred * centred).sum(dim=0) / (count - 1).clamp_min(1)).sqrt(), 0.0)
    reward_min = torch.tensor(cfg.reward_min, dtype=torch.float64, device=rewards.device)
    if cfg.preset == "paper":
        cv = raw_std / ((raw_mean - reward_min + cfg.delta).abs() + cfg.delta)
    else:
        cv = raw_std / ((raw_mean - reward_min).abs() + OFFICIAL_EPS)
    cv = torch.where(spread, cv, 0.0)
    if not cfg.dynamic:
        weights = torch.ones_like(cv)
    elif cfg.preset == "official":
        weights = k * cv / (cv.sum() + OFFICIAL_EPS)
    else:
        total = cv.sum()
        share = torch.where(total < cfg.delta, torch.full_like(cv, 1.0 / k), cv / total.clamp_min(cfg.delta))
        weights = share * (k if cfg.mode == "gdpo" else 1)
    return BatchWeights(weights, cv, raw_mean, raw_std)


def metric_name(key: str, statistic: str) -> str:
    """The metric every trainer logs: saw/{key}/{weight|cv|mean|std}."""
    return f"saw/{key}/{statistic}"


def step_metrics(reward_keys: Sequence[str], stats) -> dict[str, float]:
    """stats: anything with (K,) weights, cv, mean, std (BatchWeights, SawResult) -> {metric name: float}."""
    columns = dict(zip(STATISTICS, (stats.weights, stats.cv, stats.mean, stats.std)))
    values = torch.stack([columns[s] for s in STATISTICS]).tolist()  # one host read for all 4K numbers
    return {
        metric_name(key, stat): values[s][k] for k, key in enumerate(reward_keys) for s, stat in enumerate(STATISTICS)
    }
