"""The Triton backend: constants, device guard, the kernels (saw_verl.kernels), one status read.

Per call on a GPU: LAUNCHES kernel launches (the sort of the group ids included; counted by
tests/test_kernels.py on this code path), no zero-fill, no host-to-device copy (the constants live on
the device, one tensor per configuration and device), and ONE host sync: the read of the status word
that raises SawInputError (naming key and row, or M) before the advantages are returned.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch

from saw_verl.config import OFFICIAL_EPS, WHITEN_EPS, SawConfig
from saw_verl.errors import non_finite_error, too_few_tokens_error
from saw_verl.result import SawResult

LAUNCHES = {"grpo": 3, "gdpo": 4}  # torch.sort + 2 (GRPO) or 3 (GDPO) Triton kernels
HOST_SYNCS = 1


@functools.lru_cache(maxsize=64)
def _constants(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=device)


def device_constants(cfg: SawConfig, device: torch.device) -> torch.Tensor:
    """(4 + 2K,) float64 on `device` (saw_verl.kernels.constants_vector layout); copied once, then cached."""
    from saw_verl.kernels import constants_vector

    values = constants_vector(cfg.delta, cfg.epsilon, OFFICIAL_EPS, WHITEN_EPS, cfg.reward_min, cfg.static_weights)
    return _constants(tuple(values), device)


def triton_saw_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig,
    variant: Optional[str] = None,
) -> SawResult:
    """rewards (N, K) float, group_ids (N,) integer (any values), response_mask (N, L); shapes and devices
    checked by saw_verl.advantages.check_shapes -> SawResult. Runs on the inputs' device. variant: the kernels'
    launch geometry, one of saw_verl.kernels.VARIANTS (None: saw_verl.kernels.DEFAULT_VARIANT)."""
    from saw_verl.kernels import DEFAULT_VARIANT, gdpo_advantages, grpo_advantages

    n, k = rewards.shape
    gdpo = cfg.mode == "gdpo"
    if gdpo and response_mask.shape[1] == 0:
        raise too_few_tokens_error(0)
    device = response_mask.device
    estimator = gdpo_advantages if gdpo else grpo_advantages
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        advantages, summary, status = estimator(
            rewards, group_ids, response_mask, device_constants(cfg, device), cfg.preset, cfg.dynamic,
            cfg.norm_by_std, variant or DEFAULT_VARIANT,
        )
        read = status.tolist()  # the one host sync
    if read[0] < n * k:
        raise non_finite_error(rewards, cfg.reward_keys, *divmod(int(read[0]), k))
    if gdpo and read[1] < 2:
        raise too_few_tokens_error(read[1])
    weights, cv, mean, std, _ = summary.unbind(0)
    return SawResult(advantages, weights, cv, mean, std)
