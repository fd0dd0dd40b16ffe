"""`gd2po`: GD²PO (arXiv 2606.16771), the authors' tool-calling trainer (Qwen-Applications/GD2PO @ f1ad765,
tool-calling/verl/trainer/ppo/ray_trainer.py L243-391 and the dispatch L472-515; docs/estimators.md, "gd2po").

Per-key GRPO z-scores z_k (verl's rule). A rollout is in conflict when one key's rollout advantage
(w_k z_k times its token count) is > 1e-8 and another's < -1e-8. The hard filter (tau=None, the authors'
`gdpo_filter_group_ratio`) drops every conflicting rollout; the SNR filter (tau in [0, 1], the authors'
`gdpo_filter_ratio_conflict_group_ratio`) drops a conflicting rollout only when |sum_k a_k| / (sum_k |a_k| + 1e-8)
< tau. The summed advantage sum_k w_k z_k is scaled by its group's kept share and whitened over the kept rollouts'
tokens (verl's masked_whiten); dropped rollouts get 0.
"""

from __future__ import annotations

from typing import Optional

import torch

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.result import EstimatorResult
from saw_verl.rivals.common import key_statistics, key_zscores, prepare, token_advantages
from saw_verl.torch_backend import whiten_rows

SIGN_EPS = 1e-8  # the authors' threshold for a positive / negative rollout advantage
RATIO_EPS = 1e-8  # the authors' gdpo_filter_ratio_conflict_eps default


def check_tau(tau) -> None:
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 <= tau <= 1):
        raise SawInputError(f"gd2po option tau={tau!r}: expected None (the hard filter) or a number in [0, 1]")


def kept_rollouts(rollout_advantages: torch.Tensor, tau: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """rollout_advantages (N, K) float64 -> (keep (N,) bool, conflict (N,) bool): mixed signs across keys are a
    conflict; the hard filter drops them all, the SNR filter those whose sign agreement is below tau."""
    conflict = (rollout_advantages > SIGN_EPS).any(dim=1) & (rollout_advantages < -SIGN_EPS).any(dim=1)
    if tau is None:
        return ~conflict, conflict
    agreement = rollout_advantages.sum(dim=1) / (rollout_advantages.abs().sum(dim=1) + RATIO_EPS)
    return ~(conflict & (agreement.abs() < tau)), conflict


def gd2po_advantages(
    rewards, group_ids, response_mask, cfg: SawConfig, num_groups: Optional[int] = None, tau: Optional[float] = None,
) -> EstimatorResult:
    """rewards (N, K), group_ids (N,), response_mask (N, L) -> EstimatorResult (advantages (N, L) float32;
    per key: mean, std of the raw rewards, weight = the static weight; batch gates: keep_ratio (share of rollouts
    kept), conflict_ratio (share with mixed signs), group_keep_ratio_mean (mean over rollouts of their group's
    kept share)). Raises SawInputError when the kept rollouts hold exactly one token (verl's masked_whiten refuses
    it); none kept gives all zeros, as in the source."""
    check_tau(tau)
    batch = prepare(rewards, group_ids, response_mask, cfg, num_groups)
    weighted = key_zscores(batch, cfg) * batch.weights
    keep, conflict = kept_rollouts(weighted * batch.tokens[:, None], tau)
    kept = keep.to(torch.float64)
    group_size = torch.bincount(batch.ranks, minlength=batch.rows).to(torch.float64)
    group_kept = kept.new_zeros(batch.rows).index_add_(0, batch.ranks, kept)
    group_keep_ratio = (group_kept / group_size.clamp_min(1))[batch.ranks]
    kept_tokens = batch.tokens * kept
    total = kept_tokens.sum()
    total_value = total.item()
    if total_value == 1:
        raise SawInputError("gd2po whitening needs at least 2 response tokens among the kept rollouts; got 1")
    if total_value == 0:
        row_values = torch.zeros_like(kept)
    else:
        row_values = whiten_rows(weighted.sum(dim=1) * group_keep_ratio, kept_tokens, total) * kept
    gates = {
        "keep_ratio": kept.mean(),
        "conflict_ratio": conflict.to(torch.float64).mean(),
        "group_keep_ratio_mean": group_keep_ratio.mean(),
    }
    return EstimatorResult(token_advantages(row_values, batch), key_statistics(batch, cfg), gates, "gd2po")
