"""`corr_grpo`: CorrGRPO (arXiv 2609.36820), the authors' `grpo_covariance_coefficient` estimator
(HKUST-KnowComp/CorrGRPO @ 3586915, verl/trainer/ppo/core_algos.py,
`compute_grpo_covariance_coefficient_outcome_advantage`; docs/estimators.md, "corr_grpo").

Within each group, with s_k = w_k r_k: the centred sum sum_k (s_k - mean_g s_k) divided by
sqrt(max(sum_kl rho_kl, 0) + epsilon), rho the group's correlation matrix of the s_k (ddof=1; a key constant in
the group has a zero row and column). A singleton group gives 0. norm_by_std=False keeps the centred sum.
"""

from __future__ import annotations

from typing import Optional

import torch

from saw_verl.config import SawConfig
from saw_verl.result import EstimatorResult
from saw_verl.rivals.common import key_statistics, prepare, token_advantages


def group_correlation_sums(centred: torch.Tensor, ranks: torch.Tensor, rows: int, count: torch.Tensor):
    """centred (N, K) float64 scores minus their group means (exactly 0 for a key constant in the group), ranks (N,),
    count (rows,) group sizes -> (rows,) max(sum of the group's correlation matrix, 0); 0 for a singleton group."""
    k = centred.shape[1]
    outer = (centred[:, :, None] * centred[:, None, :]).reshape(-1, k * k)
    scatter = centred.new_zeros(rows, k * k).index_add_(0, ranks, outer).reshape(rows, k, k)
    variances = scatter.diagonal(dim1=1, dim2=2)  # the ddof cancels in a correlation
    inverse_std = torch.where(variances > 0, variances.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), 0.0)
    correlations = scatter * inverse_std[:, :, None] * inverse_std[:, None, :]
    return torch.where(count > 1, correlations.sum(dim=(1, 2)).clamp_min(0), 0.0)


def corr_grpo_advantages(rewards, group_ids, response_mask, cfg: SawConfig, num_groups: Optional[int] = None):
    """rewards (N, K), group_ids (N,), response_mask (N, L) -> EstimatorResult (advantages (N, L) float32;
    per key: mean, std of the raw rewards, weight = the static weight; batch: correlation_sum_mean, the mean over
    groups of 2 or more of max(sum_kl rho_kl, 0))."""
    batch = prepare(rewards, group_ids, response_mask, cfg, num_groups)
    scores = batch.rewards * batch.weights
    ranks, rows = batch.ranks, batch.rows
    k = scores.shape[1]
    count = torch.bincount(ranks, minlength=rows).to(torch.float64)
    index = ranks[:, None].expand(-1, k)
    high = scores.new_full((rows, k), -torch.inf).scatter_reduce_(0, index, scores, "amax")
    low = scores.new_full((rows, k), torch.inf).scatter_reduce_(0, index, scores, "amin")
    mean = scores.new_zeros(rows, k).index_add_(0, ranks, scores) / count.clamp_min(1)[:, None]
    centred = torch.where((high == low)[ranks], 0.0, scores - mean[ranks])  # constant in the group: exactly 0
    sums = group_correlation_sums(centred, ranks, rows, count)
    centred_total = centred.sum(dim=1)
    row_values = centred_total / (sums + cfg.epsilon).sqrt()[ranks] if cfg.norm_by_std else centred_total
    scored_groups = count > 1
    stats = {"correlation_sum_mean": torch.where(scored_groups, sums, 0.0).sum() / scored_groups.sum().clamp_min(1)}
    return EstimatorResult(token_advantages(row_values, batch), key_statistics(batch, cfg), stats, "corr_grpo")
