"""What every SAW path returns (no torch math, no trainer)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class SawResult(NamedTuple):
    """advantages: (N, L) float32. weights/cv: (K,) float64, the ones used (with a history: the pool's). mean/std:
    (K,) float64 of this batch's raw rewards; batch_cv: (K,) float64 CV of this batch alone. pool: (5, K) float64
    history pool with this batch in it (saw_verl.weights.POOL_ROWS), None without a history."""

    advantages: torch.Tensor
    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_cv: Optional[torch.Tensor] = None
    pool: Optional[torch.Tensor] = None
