"""Readable float64 torch versions of what the kernels compute (docs/spec.md Step 1, 2a, 2b), taking the
launchers' arguments: the kernels' reference at their own interface. The project's oracle is
saw_verl.reference; tests/test_kernels.py checks that the two agree."""

from __future__ import annotations

import torch

from .common import SCALARS


def unpack(constants, k: int):
    """The constants vector (common.constants_vector layout) -> (delta, epsilon, official_eps, whiten_eps,
    history_decay, reward_min (K,), alpha (K,))."""
    values = [float(c) for c in constants]
    per_key = torch.tensor(values[SCALARS:], dtype=torch.float64)
    return (*values[:SCALARS], per_key[:k], per_key[k:2 * k])


def naive_weights(rewards: torch.Tensor, constants, preset: str, dynamic: bool):
    """rewards (N, K) float64 -> (weights, cv, mean, std) (K,) float64 (docs/spec.md Step 1)."""
    k = rewards.shape[1]
    delta, _, official_eps, _, _, reward_min, _ = unpack(constants, k)
    mean = rewards.mean(0)
    std = rewards.std(0)
    std[rewards.amax(0) == rewards.amin(0)] = 0.0  # a constant key: exactly 0
    if preset == "paper":
        cv = std / ((mean - reward_min + delta).abs() + delta)
    else:
        cv = std / ((mean - reward_min).abs() + official_eps)
    ones = torch.ones(k, dtype=torch.float64)
    if not dynamic or cv.amax() == cv.amin():  # equal CVs: the dynamic=false weights, exactly
        weights = ones
    elif preset == "paper":
        weights = ones if cv.sum() < delta else cv / cv.sum() * k
    else:
        weights = k * cv / (cv.sum() + official_eps)
    return weights, cv, mean, std


def naive_group_zscores(values: torch.Tensor, group_ids: torch.Tensor, epsilon: float, norm_by_std: bool):
    """values (N, C) float64 -> z-scores (N, C) of each column within the groups of group_ids (N,)
    (docs/spec.md, Conventions)."""
    out = torch.zeros_like(values)
    for group in group_ids.unique():
        rows = group_ids == group
        x = values[rows]
        if len(x) == 1:
            out[rows] = x / (1 + epsilon) if norm_by_std else x
            continue
        scale = x.std(0) + epsilon if norm_by_std else torch.ones_like(x[0])
        z = (x - x.mean(0)) / scale
        out[rows] = torch.where(x.amax(0) == x.amin(0), 0.0, z)  # a constant column: exactly 0
    return out


def _advantages(row_values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """(N,) float64 -> (N, L) float32 row_value * mask, +0.0 where the mask is 0."""
    return (row_values[:, None] * response_mask.double() + 0.0).float()


def naive_grpo(rewards, group_ids, response_mask, constants, preset, dynamic, norm_by_std, ids_sorted=False):
    """As grpo.grpo_advantages without a history pool (ids_sorted changes nothing here) -> (advantages (N, L) float32,
    summary (5, K): weights, cv, mean, std, batch_cv = cv)."""
    rewards = rewards.double().cpu()
    _, epsilon, _, _, _, _, alpha = unpack(constants, rewards.shape[1])
    weights, cv, mean, std = naive_weights(rewards, constants, preset, dynamic)
    summed = (rewards * (weights * alpha)).sum(1, keepdim=True)
    z = naive_group_zscores(summed, group_ids.cpu(), epsilon, norm_by_std)[:, 0]
    return _advantages(z, response_mask.cpu()), torch.stack([weights, cv, mean, std, cv])


def naive_gdpo(rewards, group_ids, response_mask, constants, preset, dynamic, norm_by_std, ids_sorted=False):
    """As gdpo.gdpo_advantages without a history pool -> (advantages (N, L) float32, summary (5, K) as naive_grpo);
    M < 2 tokens: ValueError."""
    rewards = rewards.double().cpu()
    _, epsilon, _, whiten_eps, _, _, alpha = unpack(constants, rewards.shape[1])
    weights, cv, mean, std = naive_weights(rewards, constants, preset, dynamic)
    z = naive_group_zscores(rewards, group_ids.cpu(), epsilon, norm_by_std)
    scores = (z * (weights * alpha)).sum(1)
    tokens = response_mask.cpu().double().sum(1)
    total = tokens.sum()
    if total < 2:
        raise ValueError(f"the whitening needs M >= 2 response tokens; got M={float(total):g}")
    whitened_mean = (tokens * scores).sum() / total
    variance = (tokens * (scores - whitened_mean) ** 2).sum() / (total - 1)
    whitened = (scores - whitened_mean) / (variance + whiten_eps).sqrt()
    return _advantages(whitened, response_mask.cpu()), torch.stack([weights, cv, mean, std, cv])
