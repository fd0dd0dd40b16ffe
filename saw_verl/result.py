"""What every SAW path returns, and the numeric constants the spec fixes (no torch math, no verl)."""

from __future__ import annotations

from typing import NamedTuple

import torch

OFFICIAL_EPS = 1e-8  # the released code's constant in the CV and in the weight normalisation
WHITEN_EPS = 1e-8  # verl's masked_whiten


class SawResult(NamedTuple):
    """advantages: (N, L) float32. weights/cv/mean/std: (K,) float64 (mean/std of the raw rewards)."""

    advantages: torch.Tensor
    weights: torch.Tensor
    cv: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
