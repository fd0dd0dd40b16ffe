"""Public entry point of the math: validate once, then dispatch to the torch or Triton backend.

Knows nothing of verl: inputs are plain columns / tensors.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from saw_verl.config import SawConfig, SawInputError
from saw_verl.result import SawResult
from saw_verl.torch_backend import torch_saw_advantages

BACKEND_ENV = "SAW_VERL_BACKEND"
BACKENDS = ("torch", "triton")


def rewards_from_columns(columns: Mapping, keys: Sequence[str], num_rows: int) -> torch.Tensor:
    """Stack per-key reward columns (e.g. verl's non_tensor_batch) into an (N, K) float64 tensor."""
    stacked = []
    for key in keys:
        if key not in columns:
            raise SawInputError(
                f"reward key {key!r} not found; available keys: {sorted(map(str, columns))}. "
                f"Make sure compute_score returns a dict containing {key!r} for every sample."
            )
        column = np.asarray(columns[key])
        if column.ndim != 1 or column.shape[0] != num_rows:
            raise SawInputError(f"reward key {key!r} has shape {column.shape}, expected ({num_rows},)")
        try:
            values = column.astype(np.float64)
        except (TypeError, ValueError):
            row = next(i for i, v in enumerate(column) if not _is_number(v))
            raise SawInputError(f"reward key {key!r} is not a number at row {row}: {column[row]!r}") from None
        stacked.append(torch.from_numpy(values))
    return torch.stack(stacked, dim=1) if stacked else torch.empty(num_rows, 0, dtype=torch.float64)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def group_ids_from_index(index) -> tuple[torch.Tensor, int]:
    """verl's uid array (N,) of any hashables -> (group ids (N,) int64 in [0, G), G)."""
    if isinstance(index, torch.Tensor):
        unique, inverse = torch.unique(index, return_inverse=True)
        return inverse.to(torch.int64), int(unique.numel())
    array = np.asarray(index)
    if array.dtype == object:
        array = array.astype(str)
    unique, inverse = np.unique(array, return_inverse=True)
    return torch.from_numpy(inverse.reshape(-1).astype(np.int64)), int(unique.size)


def check_inputs(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig,
    num_groups: Optional[int] = None,
) -> int:
    """Raise SawInputError naming the key / row / shape at fault; changes nothing. Returns num_groups
    (max group id + 1 when not given). One host sync: finiteness and the group-id range read together."""
    if rewards.dim() != 2 or rewards.shape[1] != cfg.num_keys:
        raise SawInputError(f"rewards must be (N, K={cfg.num_keys}) for keys {list(cfg.reward_keys)}, got {tuple(rewards.shape)}")
    n = rewards.shape[0]
    if response_mask.dim() != 2 or response_mask.shape[0] != n:
        raise SawInputError(f"response_mask must be (N={n}, L), got {tuple(response_mask.shape)}")
    if group_ids.shape != (n,):
        raise SawInputError(f"group index must have shape ({n},), got {tuple(group_ids.shape)}")
    if n < 2:
        raise SawInputError(f"SAW needs at least 2 rollouts for the batch std; got N={n}")
    finite = torch.isfinite(rewards)
    all_finite, low, high = torch.stack([finite.all().to(torch.int64), *torch.aminmax(group_ids)]).tolist()
    if not all_finite:
        row, col = (~finite).nonzero()[0].tolist()
        raise SawInputError(
            f"reward {cfg.reward_keys[col]!r} is {rewards[row, col].item()} at row {row}: rewards must be finite"
        )
    num_groups = high + 1 if num_groups is None else num_groups
    if low < 0 or high >= num_groups:
        raise SawInputError(f"group ids must lie in [0, {num_groups}), got values in [{low}, {high}]")
    return num_groups


def resolve_backend(device: torch.device, requested: Optional[str] = None) -> str:
    """'triton' for CUDA tensors, 'torch' otherwise; SAW_VERL_BACKEND or `requested` forces one."""
    choice = requested or os.environ.get(BACKEND_ENV) or ("triton" if device.type == "cuda" else "torch")
    if choice not in BACKENDS:
        raise SawInputError(f"{BACKEND_ENV}={choice!r}: expected one of {BACKENDS}")
    if choice == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise SawInputError(
            f"the triton backend needs CUDA tensors (got device {device}); on CPU it runs only under "
            f"TRITON_INTERPRET=1. Use {BACKEND_ENV}=torch."
        )
    return choice


def saw_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    response_mask: torch.Tensor,
    cfg: SawConfig,
    num_groups: Optional[int] = None,
    backend: Optional[str] = None,
) -> SawResult:
    """SAW advantages on the mask's device.

    rewards (N, K) float, group_ids (N,) int64 in [0, num_groups), response_mask (N, L) bool/int/float.
    Returns SawResult: advantages (N, L) float32 and per-key weights, cv, mean, std (K,).
    """
    device = response_mask.device
    rewards = rewards.to(device)
    group_ids = group_ids.to(device=device, dtype=torch.int64)
    num_groups = check_inputs(rewards, group_ids, response_mask, cfg, num_groups)
    if resolve_backend(device, backend) == "triton":
        from saw_verl.kernels import triton_saw_advantages

        return triton_saw_advantages(rewards, group_ids, response_mask, cfg, num_groups)
    return torch_saw_advantages(rewards, group_ids, response_mask, cfg, num_groups)
