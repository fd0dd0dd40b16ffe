"""What every SAW path returns (no torch math, no trainer)."""

from __future__ import annotations

from typing import NamedTuple

import torch

class SawResult(NamedTuple):
    """advantages: (N, L) float32. weights/cv/mean/std: (K,) float64 (mean/std of the raw rewards)."""

    advantages: torch.Tensor
    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
