"""Fused Triton kernels for SAW advantages (shipped as ``saw_verl.kernels``).

A leaf: takes tensors and scalars, imports nothing of saw_verl. ``saw_kernels`` launches the pipeline
(see kernels/pipeline.py); saw_verl.triton_backend validates, builds the constants, reads the status
word and raises SawInputError. The tensor API (saw_grpo_advantages / saw_gdpo_advantages) lives in
saw_verl.advantages.
"""

from .common import constants_vector
from .pipeline import saw_kernels

__all__ = ["constants_vector", "saw_kernels"]
