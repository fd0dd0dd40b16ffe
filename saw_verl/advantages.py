"""Public entry point of the math: check shapes, then dispatch to the torch or Triton backend.

Knows no trainer: inputs are tensors (NumPy arrays and lists are converted). Also the tensor API for trainers
whose advantages live on the GPU: saw_grpo_advantages / saw_gdpo_advantages.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from typing import Optional

import torch

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError, mask_not_binary_error, single_rollout_groups_error
from saw_verl.history import SawHistory
from saw_verl.kernel_check import kernels_verified
from saw_verl.result import SawResult
from saw_verl.shaping import condition_rewards
from saw_verl.torch_backend import torch_saw_advantages
from saw_verl.weights import reward_minimums, warn_rewards_below_min

BACKEND_ENV = "SAW_VERL_BACKEND"
BACKENDS = ("torch", "triton")
# SawConfig fields the tensor API takes as keywords (the function sets the mode; errors use the field names)
TENSOR_API_OPTIONS = tuple(f.name for f in dataclasses.fields(SawConfig) if f.name not in ("mode", "option_names"))


def as_tensors(rewards, group_ids, response_mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors as they are; NumPy arrays and (nested) lists become tensors (rewards float64, group ids and the mask
    in the dtype their values have). Anything else is a SawInputError naming the argument and what it must be."""
    wanted = {
        "rewards": (rewards, torch.float64, "(N, K) floats"),
        "group_ids": (group_ids, None, "(N,) integers, one group id per rollout"),
        "response_mask": (response_mask, None, "(N, L) 0/1 values (bool, int or float)"),
    }
    out = []
    for name, (value, dtype, expected) in wanted.items():
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value, dtype=dtype)
            except (TypeError, ValueError, RuntimeError) as error:
                raise SawInputError(
                    f"{name} must be a tensor, NumPy array or list of {expected}; got {type(value).__name__} "
                    f"({error})"
                ) from None
        out.append(value)
    return tuple(out)


def on_mask_device(rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor):
    """CPU rewards / group ids moved to a CUDA mask's device (host-built columns follow the mask); tensors on
    another accelerator are left for check_shapes to refuse. Returns (rewards, group_ids, response_mask)."""
    device = response_mask.device
    if device.type != "cpu":
        rewards = rewards.to(device) if rewards.device.type == "cpu" else rewards
        group_ids = group_ids.to(device) if group_ids.device.type == "cpu" else group_ids
    return rewards, group_ids, response_mask


def check_shapes(rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, cfg: SawConfig) -> None:
    """Raise SawInputError naming the argument / shape / dtype / device at fault. Host-side only: no sync.

    The values (finite rewards, GDPO's M >= 2) are checked by the backends, in their one status read.
    """
    if rewards.dim() != 2 or rewards.shape[1] != cfg.num_keys:
        raise SawInputError(
            f"rewards must be (N, K={cfg.num_keys}) for keys {list(cfg.reward_keys)}, got {tuple(rewards.shape)}"
        )
    n = rewards.shape[0]
    if response_mask.dim() != 2 or response_mask.shape[0] != n:
        raise SawInputError(f"response_mask must be (N={n}, L), got {tuple(response_mask.shape)}")
    if group_ids.shape != (n,):
        raise SawInputError(f"group_ids must have shape (N,) = ({n},), one id per rollout; got {tuple(group_ids.shape)}")
    if n < 2:
        raise SawInputError(f"SAW needs at least 2 rollouts for the batch std; got N={n}")
    if not rewards.dtype.is_floating_point:
        raise SawInputError(f"rewards must be a floating-point tensor, got {rewards.dtype}")
    if group_ids.dtype.is_floating_point or group_ids.dtype.is_complex or group_ids.dtype == torch.bool:
        raise SawInputError(f"group_ids must be an integer tensor (any int64 values), got {group_ids.dtype}")
    devices = {"rewards": rewards.device, "group_ids": group_ids.device, "response_mask": response_mask.device}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise SawInputError(f"SAW inputs must be on one device; got {listed}")


def input_value_summary(rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The values the tensor API checks, on the inputs' device without a host read -> (2 + K,) float64: 1 where some
    mask value is neither 0 nor 1, 1 where every group has one rollout, then each key's smallest reward.
    Read it once, then check_input_values."""
    return torch.cat([mask_and_group_flags(group_ids, response_mask), reward_minimums(rewards.double())])


def mask_and_group_flags(group_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """(2,) float64 on the inputs' device, no host read: 1 where some mask value is neither 0 nor 1, 1 where every
    group has one rollout (the first two values of input_value_summary; check_mask_and_groups reads them)."""
    mask = response_mask
    not_binary = torch.zeros((), dtype=torch.bool, device=mask.device)
    if mask.dtype != torch.bool and mask.numel():  # one pass, no (N, L) temporary
        low, high = torch.aminmax(mask)
        not_binary = (low < 0) | (high > 1)
        if mask.dtype.is_floating_point:  # within [0, 1] the sum counts the nonzeros only if each is 1
            not_binary = not_binary | (torch.count_nonzero(mask) != mask.sum(dtype=torch.float64))
    ordered = torch.sort(group_ids).values
    singletons = ~(ordered[1:] == ordered[:-1]).any()
    return torch.stack([not_binary, singletons]).to(torch.float64)


def check_mask_and_groups(summary: list[float], response_mask: torch.Tensor) -> None:
    """summary: input_value_summary, read. SawInputError for a mask value other than 0 / 1 (naming row and token) or
    groups all of one rollout (every estimator of the registry refuses both)."""
    if summary[0]:
        raise mask_not_binary_error(response_mask)
    if summary[1]:
        raise single_rollout_groups_error(response_mask.shape[0])


def check_input_values(summary: list[float], response_mask: torch.Tensor, cfg: SawConfig) -> None:
    """summary: input_value_summary, read. check_mask_and_groups, then the one-time warning for rewards below
    reward_min (saw_verl.weights)."""
    check_mask_and_groups(summary, response_mask)
    warn_rewards_below_min(summary[2:], cfg)


def resolve_backend(device: torch.device, requested: Optional[str] = None) -> str:
    """The backend for tensors on `device`: `requested`, else SAW_VERL_BACKEND, else triton for CUDA tensors
    when triton is installed (the `triton` extra) and these kernel sources passed the GPU check
    (saw_verl.kernel_check; otherwise one WARNING says why), and torch otherwise."""
    choice = requested or os.environ.get(BACKEND_ENV)
    if choice is None:
        if device.type != "cuda" or importlib.util.find_spec("triton") is None:
            return "torch"
        return "triton" if kernels_verified() else "torch"
    if choice not in BACKENDS:
        raise SawInputError(f"{BACKEND_ENV}={choice!r}: expected one of {BACKENDS}")
    if choice == "triton" and importlib.util.find_spec("triton") is None:
        raise SawInputError(f"the triton backend needs triton: pip install 'saw-verl[triton]', or {BACKEND_ENV}=torch")
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
    ids_sorted: bool = False,
    history: Optional[SawHistory] = None,
    step=None,
) -> SawResult:
    """SAW advantages on the mask's device, at training step `step` (needed when cfg has a weight schedule).

    rewards (N, K) float; group_ids (N,) integer, any values (sparse, unsorted, negative, near +-2^62: groups
    are compacted on the device at O(N) cost); response_mask (N, L) bool/int/float. NumPy arrays and lists are
    taken as tensors. CPU rewards / group ids follow a CUDA mask (e.g. columns built from numpy); any other
    device mismatch is refused.
    num_groups: optional hint that the ids are already dense in [0, num_groups) (verl's
    integration passes it): the torch path on the CPU then skips ranking them; wrong hints are ignored, never trusted.
    ids_sorted: optional hint that group_ids are non-decreasing (e.g. ranked by first appearance in a batch whose
    groups are contiguous): the Triton path then skips its sort; checked on the device, a wrong hint costs a rerun
    with the sort, never a wrong result.
    history: the run's SawHistory, needed when cfg.history_decay > 0 (docs/spec.md, "History"); updated with
    this step once the result is final (not on an error).
    Returns SawResult: advantages (N, L) float32 and per-key weights, cv, mean, std, batch_cv (K,) float64
    (and the new pool with a history; the gated fractions with conditions). Statistics are those of the
    conditioned rewards (docs/spec.md, "Conditions and schedules").
    """
    cfg = cfg.at_step(step)
    rewards, group_ids, response_mask = on_mask_device(*as_tensors(rewards, group_ids, response_mask))
    device = response_mask.device
    check_shapes(rewards, group_ids, response_mask, cfg)
    if cfg.history_decay > 0 and history is None:
        raise SawInputError(
            f"{cfg.option('history_decay')}={cfg.history_decay} needs the run's history: pass history=SawHistory() "
            "(one per run, the same object every step)"
        )
    pool = None if history is None else history.pool_for(cfg, device)
    if resolve_backend(device, backend) == "triton":
        from saw_verl.triton_backend import triton_saw_advantages

        result = triton_saw_advantages(rewards, group_ids, response_mask, cfg, ids_sorted=ids_sorted, pool=pool)
    else:
        rewards, gated = condition_rewards(rewards, cfg.conditions)
        result = torch_saw_advantages(rewards, group_ids, response_mask, cfg, num_groups, pool)
        if cfg.conditions:
            result = result._replace(gated_fraction=gated)
    if history is not None:
        history.commit(cfg, result.pool)
    return result


def saw_grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, backend: Optional[str] = None,
    ids_sorted: bool = False, history: Optional[SawHistory] = None, step=None, **options,
) -> SawResult:
    """saw_grpo on tensors (trainers whose advantages live on the GPU).

    rewards (N, K) float, group_ids (N,) integer (any values), response_mask (N, L) bool/int/float (NumPy
    arrays and lists are taken as tensors). options: SawConfig fields (TENSOR_API_OPTIONS). backend, ids_sorted,
    history, step: as saw_advantages. Returns SawResult (advantages (N, L) float32).
    """
    return _saw_tensors("grpo", rewards, group_ids, response_mask, backend, ids_sorted, history, step, options)


def saw_gdpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, response_mask: torch.Tensor, backend: Optional[str] = None,
    ids_sorted: bool = False, history: Optional[SawHistory] = None, step=None, **options,
) -> SawResult:
    """saw_gdpo on tensors; arguments as saw_grpo_advantages."""
    return _saw_tensors("gdpo", rewards, group_ids, response_mask, backend, ids_sorted, history, step, options)


def _saw_tensors(mode, rewards, group_ids, response_mask, backend, ids_sorted, history, step, options) -> SawResult:
    unknown = sorted(set(options) - set(TENSOR_API_OPTIONS))
    if unknown:
        hints = {name: difflib.get_close_matches(name, TENSOR_API_OPTIONS, n=1) for name in unknown}
        named = ", ".join(f"{name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for name, hint in hints.items())
        raise SawInputError(f"unknown SAW option {named}; the options are {', '.join(TENSOR_API_OPTIONS)}")
    rewards, group_ids, response_mask = as_tensors(rewards, group_ids, response_mask)
    if rewards.dim() != 2:
        raise SawInputError(f"rewards must be (N, K), got {tuple(rewards.shape)}")
    keys = options.pop("reward_keys", None) or tuple(f"reward_{k}" for k in range(rewards.shape[1]))
    cfg = SawConfig(reward_keys=tuple(keys), mode=mode, **options)
    return saw_advantages(rewards, group_ids, response_mask, cfg, backend=backend, ids_sorted=ids_sorted,
                          history=history, step=step)
