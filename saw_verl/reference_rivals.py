"""Readable float64 references of the rival estimators (docs/estimators.md): the oracles their torch paths are
tested against. Loops over keys, groups and rows on purpose; imported by tests and benchmarks only.

Each takes rewards (N, K), group_ids (N,) hashables, response_mask (N, L), weights (K floats), and returns the
(N, L) float64 advantages; gd2po also its gates.
"""

from __future__ import annotations

import math

import torch

from saw_verl.errors import SawInputError
from saw_verl.reference import _mean, _std_unbiased, reference_group_zscore

VERL_WHITEN_EPS = 1e-8


def _columns(rewards):
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    return [[float(x) for x in rewards[:, k]] for k in range(rewards.shape[1])]


def _ids(group_ids):
    return [g.item() if isinstance(g, torch.Tensor) else g for g in group_ids]


def _tokens(response_mask):
    return [float(torch.as_tensor(row).double().sum()) for row in response_mask]


def _members(ids):
    groups = {}
    for j, g in enumerate(ids):
        groups.setdefault(g, []).append(j)
    return groups


def _spread(row_values, response_mask):
    mask = torch.as_tensor(response_mask).to(torch.float64)
    return torch.where(mask != 0, torch.tensor(row_values, dtype=torch.float64)[:, None] * mask, 0.0)


def _weighted_zsum(rewards, ids, weights, epsilon, norm_by_std):
    zscores = [reference_group_zscore(col, ids, epsilon, norm_by_std) for col in _columns(rewards)]
    return [sum(w * z[j] for w, z in zip(weights, zscores)) for j in range(len(ids))], zscores


def _token_whiten(values, tokens):
    """verl's masked_whiten on per-row values spread over `tokens` tokens each (ddof=1 over the token count)."""
    total = sum(tokens)
    mean = sum(t * v for t, v in zip(tokens, values)) / total
    var = sum(t * (v - mean) ** 2 for t, v in zip(tokens, values)) / (total - 1)
    return [(v - mean) / math.sqrt(var + VERL_WHITEN_EPS) for v in values]


def reference_gdpo(rewards, group_ids, response_mask, weights, epsilon=1e-6, norm_by_std=True, whitening="token"):
    """GDPO: weighted sum of per-key group z-scores, whitened over tokens (verl) or rollouts (TRL)."""
    summed, _ = _weighted_zsum(rewards, _ids(group_ids), weights, epsilon, norm_by_std)
    if whitening == "token":
        tokens = _tokens(response_mask)
        if sum(tokens) < 2:
            raise SawInputError(f"GDPO whitening needs at least 2 response tokens in the batch; got M={sum(tokens):g}")
        row_values = _token_whiten(summed, tokens)
    else:
        mu, std = _mean(summed), _std_unbiased(summed)
        row_values = [(v - mu) / (std + epsilon) for v in summed]
    return _spread(row_values, response_mask)


def reference_mo_grpo(rewards, group_ids, response_mask, weights, epsilon=1e-6, norm_by_std=True):
    """MO-GRPO: weighted sum of per-key group z-scores, no batch step."""
    summed, _ = _weighted_zsum(rewards, _ids(group_ids), weights, epsilon, norm_by_std)
    return _spread(summed, response_mask)


def reference_corr_grpo(rewards, group_ids, response_mask, weights, epsilon=1e-6, norm_by_std=True):
    """CorrGRPO: per group, the centred weighted reward sum over sqrt(max(sum of the correlation matrix, 0) + eps)."""
    ids = _ids(group_ids)
    scores = [[w * x for x in col] for w, col in zip(weights, _columns(rewards))]
    row_values = [0.0] * len(ids)
    for rows in _members(ids).values():
        centred = []
        for col in scores:
            xs = [col[j] for j in rows]
            mu = _mean(xs)
            centred.append([0.0 if max(xs) == min(xs) else x - mu for x in xs])
        k = len(scores)
        total = 0.0
        if len(rows) > 1:
            norms = [math.sqrt(sum(c * c for c in centred[a])) for a in range(k)]
            for a in range(k):
                for b in range(k):
                    if norms[a] > 0 and norms[b] > 0:
                        total += sum(x * y for x, y in zip(centred[a], centred[b])) / (norms[a] * norms[b])
        scale = math.sqrt(max(total, 0.0) + epsilon) if norm_by_std else 1.0
        for i, j in enumerate(rows):
            row_values[j] = sum(centred[a][i] for a in range(k)) / scale
    return _spread(row_values, response_mask)


def reference_gd2po(rewards, group_ids, response_mask, weights, epsilon=1e-6, norm_by_std=True, tau=None):
    """GD²PO -> (advantages (N, L) float64, keep: N bools, conflict: N bools)."""
    ids = _ids(group_ids)
    tokens = _tokens(response_mask)
    _, zscores = _weighted_zsum(rewards, ids, weights, epsilon, norm_by_std)
    n = len(ids)
    keep, conflict, summed = [], [], []
    for j in range(n):
        rollout = [w * z[j] * tokens[j] for w, z in zip(weights, zscores)]
        mixed = any(a > 1e-8 for a in rollout) and any(a < -1e-8 for a in rollout)
        if tau is not None and mixed:
            agreement = sum(rollout) / (sum(abs(a) for a in rollout) + 1e-8)
            dropped = abs(agreement) < tau
        else:
            dropped = mixed
        conflict.append(mixed)
        keep.append(not dropped)
        summed.append(sum(w * z[j] for w, z in zip(weights, zscores)))
    for rows in _members(ids).values():
        share = sum(keep[j] for j in rows) / len(rows)
        for j in rows:
            summed[j] *= share
    kept_tokens = [t if k else 0.0 for t, k in zip(tokens, keep)]
    if sum(kept_tokens) == 1:
        raise SawInputError("gd2po whitening needs at least 2 response tokens among the kept rollouts; got 1")
    if sum(kept_tokens) == 0:
        row_values = [0.0] * n
    else:
        whitened = _token_whiten([v if k else 0.0 for v, k in zip(summed, keep)], kept_tokens)
        row_values = [v if k else 0.0 for v, k in zip(whitened, keep)]
    return _spread(row_values, response_mask), keep, conflict
