"""The Triton backend: constants, device guard, the kernels (saw_verl.kernels), one status read.

Per call on a GPU: LAUNCHES Triton kernels, plus torch.sort of the group ids unless the caller says they are
non-decreasing (counted by tests/test_kernels.py on this code path); two allocations (the advantages and one
workspace), no zero-fill, no host-to-device copy for a configuration seen before (the constants, conditions and
static weights included, live on the device, one tensor per configuration and device, cached), and ONE host
sync: the read of the status words, which raises SawInputError (naming key and row, M, groups all of one
rollout) and warns of rewards below reward_min before the advantages are returned. Ids said to be sorted are
checked on the device: where they descend, the call runs again with the sort (a second read), so a wrong hint
costs time, never a wrong result.

Conditions are kernel inputs: their chains ride in the constants, their number of levels is a compile-time
constant (saw_verl.kernels.common.condition_levels), and the kernels gate the rewards in registers wherever they
read them; the gated fractions come back in the summary. A weight schedule reaches the kernels as the config's
static weights at the step (SawConfig.at_step): each step whose alpha differs from every cached one is a new
configuration, so it costs one small host-to-device copy of the constants vector ((5 + (2 + 3 levels) K)
float64); a schedule held flat (before its first point, after its last) costs none once cached.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch

from saw_verl.advantages import check_input_values
from saw_verl.config import OFFICIAL_EPS, WHITEN_EPS, SawConfig
from saw_verl.errors import non_finite_error, too_few_tokens_error
from saw_verl.result import SawResult

LAUNCHES = {"grpo": 2, "gdpo": 3}  # Triton kernels per call; + torch.sort when the ids are not said to be sorted
HOST_SYNCS = 1


@functools.lru_cache(maxsize=64)
def device_constants(cfg: SawConfig, device: torch.device) -> torch.Tensor:
    """(5 + (2 + 3 levels) K,) float64 on `device` (saw_verl.kernels.constants_vector layout, the conditions
    included); copied once per configuration, then cached (a schedule's every new alpha is a new configuration)."""
    from saw_verl.kernels import constants_vector

    values = constants_vector(cfg.delta, cfg.epsilon, OFFICIAL_EPS, WHITEN_EPS, cfg.history_decay, cfg.reward_min,
                              cfg.static_weights, cfg.conditions)
    return torch.tensor(values, dtype=torch.float64, device=device)


@functools.lru_cache(maxsize=None)
def _kernels():
    import saw_verl.kernels as kernels

    return kernels


def triton_saw_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig,
    ids_sorted: bool = False, pool: Optional[torch.Tensor] = None,
) -> SawResult:
    """rewards (N, K) float, group_ids (N,) integer (any values; ids_sorted: non-decreasing, checked on the
    device), response_mask (N, L); shapes and devices checked by saw_verl.advantages.check_shapes -> SawResult.
    pool: (5, K) float64 history pool of the earlier steps on the device, or None (docs/spec.md, "History"):
    the kernels merge it and write the new one (SawResult.pool), no extra launch or read. cfg.conditions gate the
    rewards inside the kernels (SawResult.gated_fraction (K,); None without conditions).
    Runs on the inputs' device."""
    kernels = _kernels()
    n, k = rewards.shape
    gdpo = cfg.mode == "gdpo"
    if gdpo and response_mask.shape[1] == 0:
        raise too_few_tokens_error(0)
    device = response_mask.device
    estimator = kernels.gdpo_advantages if gdpo else kernels.grpo_advantages
    arguments = (rewards, group_ids, response_mask, device_constants(cfg, device), cfg.preset, cfg.dynamic,
                 cfg.norm_by_std)
    pool_out = None if pool is None else torch.empty_like(pool, dtype=torch.float64)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        advantages, summary, status = estimator(*arguments, ids_sorted, pool, pool_out)
        read = status.tolist()  # the one host sync
        if ids_sorted and any(int(word) & kernels.UNSORTED.value for word in read[kernels.UNSORTED_AT:]):
            advantages, summary, status = estimator(*arguments, False, pool, pool_out)  # the ids descend
            read = status.tolist()
    if read[kernels.FIRST_BAD] < n * k:
        raise non_finite_error(rewards, cfg.reward_keys, *divmod(int(read[kernels.FIRST_BAD]), k))
    single_rollout_groups = not any(int(word) & kernels.OWNS_A_GROUP.value for word in read[kernels.UNSORTED_AT:])
    minimums = [read[kernels.BELOW_MIN_VALUE] if key == read[kernels.BELOW_MIN_KEY] else torch.inf for key in range(k)]
    # the mask's values are not checked here: the streaming write stays free of reductions (the torch path checks them)
    check_input_values([False, single_rollout_groups, *minimums], response_mask, cfg)
    if gdpo and read[kernels.TOKENS] < 2:
        raise too_few_tokens_error(read[kernels.TOKENS])
    weights, cv, mean, std, batch_cv, *gated_fraction = summary.unbind(0)
    return SawResult(advantages, weights, cv, mean, std, batch_cv, pool_out, *gated_fraction)
