"""SAW advantages with the fused Triton kernels: host pipeline and the public tensor-level functions.

Launch order on the caller's stream (no host sync except the one GDPO's math needs; the input checks of
saw_verl.advantages.saw_advantages, which run before, add their own):
  1. _batch_weights_kernel    rewards -> weights, cv, mean, std, coef                 (1 program)
  2. _group_scores_kernel     rewards, CSR of the group ids -> per-row score           (G programs)
  GDPO only:
  3. _row_tokens_kernel       mask -> n_j, bit copy of the mask, non-binary entries     (N programs)
  4. _whiten_stats_kernel     -> M, mean, 1/std of the token-weighted scores            (1 program)
     host sync: read (M, non-binary rows) to refuse M < 2 before anything is written and to choose
     the bit copy (binary mask) or the mask itself for step 5
  5. _write_advantages_kernel advantages = value x mask, float32                        (N x L/1024 programs)
Statistics accumulate in float64 for float64 rewards, float32 otherwise (whitening: always float64).
"""

from __future__ import annotations

from typing import Optional

import torch

from saw_verl.advantages import saw_advantages
from saw_verl.config import SawConfig, SawInputError
from saw_verl.result import SawResult

from .batch_weights import batch_weights
from .common import device_constants
from .group_scores import group_scores
from .token_pass import row_tokens, write_advantages
from .whiten import whiten_stats


def triton_saw_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig, num_groups: int
) -> SawResult:
    """rewards (N, K) float, group_ids (N,) int64 in [0, num_groups), response_mask (N, L) any dtype / strides,
    all on one device and already validated (saw_verl.advantages.check_inputs) -> SawResult."""
    consts = device_constants(cfg, response_mask.device)
    weights, cv, mean, std, coef = batch_weights(rewards, consts, cfg.mode, cfg.preset, cfg.dynamic).unbind(0)
    scores = group_scores(rewards, group_ids, num_groups, coef, consts, cfg.mode, cfg.norm_by_std)
    length = response_mask.shape[1]
    if cfg.mode == "grpo":
        advantages = write_advantages(scores, response_mask, length, packed=False)
    else:
        tokens, odd, bits = row_tokens(response_mask)
        stats = whiten_stats(scores, tokens, odd, consts)
        total, odd_rows = stats[[0, 3]].tolist()  # the pipeline's one host sync (GDPO only)
        if total < 2:
            raise SawInputError(f"GDPO whitening needs at least 2 response tokens in the batch; got M={total:g}")
        binary = odd_rows == 0
        advantages = write_advantages(scores, bits if binary else response_mask, length, packed=binary, whiten=stats)
    return SawResult(advantages, weights, cv, mean, std)


def saw_grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor,
    num_groups: Optional[int] = None, **options,
) -> SawResult:
    """saw_grpo on tensors (for trainers whose advantages live on the GPU; CPU tensors take the torch path).

    rewards (N, K) float, group_ids (N,) int64 in [0, num_groups) (default: max id + 1),
    response_mask (N, L) bool/int/float. options: SawConfig fields (reward_keys, preset, dynamic,
    reward_min, static_weights, delta, epsilon, norm_by_std). Returns SawResult (advantages (N, L) float32).
    """
    return _saw_tensors("grpo", rewards, group_ids, response_mask, num_groups, options)


def saw_gdpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor,
    num_groups: Optional[int] = None, **options,
) -> SawResult:
    """saw_gdpo on tensors; arguments as saw_grpo_advantages."""
    return _saw_tensors("gdpo", rewards, group_ids, response_mask, num_groups, options)


def _saw_tensors(mode, rewards, group_ids, response_mask, num_groups, options) -> SawResult:
    if rewards.dim() != 2:
        raise SawInputError(f"rewards must be (N, K), got {tuple(rewards.shape)}")
    keys = options.pop("reward_keys", None) or tuple(f"reward_{k}" for k in range(rewards.shape[1]))
    cfg = SawConfig(reward_keys=tuple(keys), mode=mode, **options)
    return saw_advantages(rewards, group_ids, response_mask, cfg, num_groups=num_groups)
