"""Readable float64 torch versions of what the kernels compute (docs/spec.md Step 1, 2a, 2b), taking the
launchers' arguments: the kernels' reference at their own interface. The project's oracle is
saw_verl.reference; tests/test_kernels.py checks that the two agree."""

from __future__ import annotations

import torch

from .common import SCALARS


def unpack(constants, k: int):
    """The constants vector (common.constants_vector layout) -> (delta, epsilon, official_eps, whiten_eps,
    history_decay, reward_min (K,), alpha (K,), condition key (K,) int64 (-1: none), threshold (K,), fill (K,)):
    each key's own condition, from the first level of the conditions."""
    values = [float(c) for c in constants]
    rows = torch.tensor(values[SCALARS:], dtype=torch.float64).view(-1, k)
    on, threshold, fill = rows[2:5] if len(rows) > 2 else (torch.full((k,), -1.0), *torch.zeros(2, k))
    return (*values[:SCALARS], rows[0], rows[1], on.long(), threshold, fill)


def naive_conditions(rewards: torch.Tensor, constants) -> tuple[torch.Tensor, list]:
    """rewards (N, K) float64 -> (conditioned rewards (N, K), the summary rows after SUMMARY's: [gated fraction (K,)]
    with conditions, [] without) (docs/spec.md, "Conditions and schedules"): key by key in order of depth in the
    chains, so that each reads its condition key's final value."""
    *_, on, threshold, fill = unpack(constants, rewards.shape[1])
    on = on.tolist()

    def depth(key: int) -> int:  # chains never loop (the config refuses it)
        return 0 if on[key] < 0 else 1 + depth(on[key])

    out, gated = rewards.clone(), torch.zeros(len(on), dtype=torch.float64)
    for key in sorted(range(len(on)), key=depth):
        if on[key] >= 0:
            replaced = ~(out[:, on[key]] >= threshold[key]) & torch.isfinite(rewards[:, key])
            out[:, key] = torch.where(replaced, fill[key], rewards[:, key])
            gated[key] = replaced.double().mean()
    return out, [gated] if max(on) >= 0 else []


def naive_weights(rewards: torch.Tensor, constants, preset: str, dynamic: bool):
    """rewards (N, K) float64 -> (weights, cv, mean, std) (K,) float64 (docs/spec.md Step 1)."""
    k = rewards.shape[1]
    delta, _, official_eps, _, _, reward_min, *_ = unpack(constants, k)
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
    """As grpo.grpo_advantages without a history pool (ids_sorted changes nothing here; the conditions are read from
    the constants) -> (advantages (N, L) float32, summary (5, K): weights, cv, mean, std, batch_cv = cv, and
    with conditions a 6th row, the gated fractions)."""
    rewards, gated = naive_conditions(rewards.double().cpu(), constants)
    _, epsilon, _, _, _, _, alpha, *_ = unpack(constants, rewards.shape[1])
    weights, cv, mean, std = naive_weights(rewards, constants, preset, dynamic)
    summed = (rewards * (weights * alpha)).sum(1, keepdim=True)
    z = naive_group_zscores(summed, group_ids.cpu(), epsilon, norm_by_std)[:, 0]
    return _advantages(z, response_mask.cpu()), torch.stack([weights, cv, mean, std, cv, *gated])


def naive_gdpo(rewards, group_ids, response_mask, constants, preset, dynamic, norm_by_std, ids_sorted=False):
    """As gdpo.gdpo_advantages without a history pool -> (advantages (N, L) float32, summary as naive_grpo);
    M < 2 tokens: ValueError."""
    rewards, gated = naive_conditions(rewards.double().cpu(), constants)
    _, epsilon, _, whiten_eps, _, _, alpha, *_ = unpack(constants, rewards.shape[1])
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
    return _advantages(whitened, response_mask.cpu()), torch.stack([weights, cv, mean, std, cv, *gated])
