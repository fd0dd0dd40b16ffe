"""What every SAW kernel shares: the float64 constants vector and the accumulator dtype."""

from __future__ import annotations

import torch
import triton.language as tl

from saw_verl.config import SawConfig
from saw_verl.result import OFFICIAL_EPS, WHITEN_EPS

# Layout of the constants vector (float64, so 1e-8 reaches fp64 kernels exactly; a Python float
# kernel argument would arrive as fp32): 4 scalars, then reward_min (K), then static weights alpha (K).
DELTA = tl.constexpr(0)
EPSILON = tl.constexpr(1)
OFFICIAL_EPS_AT = tl.constexpr(2)
WHITEN_EPS_AT = tl.constexpr(3)
PER_KEY = tl.constexpr(4)


def device_constants(cfg: SawConfig, device: torch.device) -> torch.Tensor:
    """(4 + 2K,) float64 on `device`; copied asynchronously (pinned memory) so that no host sync happens."""
    values = [cfg.delta, cfg.epsilon, OFFICIAL_EPS, WHITEN_EPS, *cfg.reward_min, *cfg.static_weights]
    host = torch.tensor(values, dtype=torch.float64)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def accumulator(rewards_dtype: torch.dtype) -> torch.dtype:
    """dtype the statistics are accumulated in: float64 for float64 rewards, float32 otherwise."""
    return torch.float64 if rewards_dtype == torch.float64 else torch.float32


def tl_dtype(dtype: torch.dtype):
    """The Triton dtype of a float32 / float64 torch dtype (a constexpr kernel argument)."""
    return tl.float64 if dtype == torch.float64 else tl.float32
