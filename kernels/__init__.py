"""Fused Triton kernels for SAW advantages (shipped as ``saw_verl.kernels``).

A leaf: takes tensors and scalars, imports nothing of saw_verl. One module per estimator, each holding its
kernels and its launcher: ``grpo.grpo_advantages`` (2 kernels) and ``gdpo.gdpo_advantages`` (3 kernels), plus
torch.sort of the group ids unless the caller says they are non-decreasing. What they share: ``statistics`` (Step 1
and the z-scores within groups, float64) and ``common`` (the layouts, the launch plan, the one streaming write);
``naive`` is the float64 torch reference of both. saw_verl.triton_backend validates, builds the constants, reads
the status words and raises SawInputError.
"""

from .common import FIRST_BAD, SUMMARY, TOKENS, UNSORTED_AT, constants_vector
from .gdpo import gdpo_advantages
from .grpo import grpo_advantages
from .naive import naive_gdpo, naive_grpo

__all__ = ["FIRST_BAD", "SUMMARY", "TOKENS", "UNSORTED_AT", "constants_vector", "gdpo_advantages", "grpo_advantages",
           "naive_gdpo", "naive_grpo"]
