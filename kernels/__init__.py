"""Fused Triton kernels for SAW advantages (shipped as ``saw_verl.kernels``).

A leaf: takes tensors and scalars, imports nothing of saw_verl. One module per estimator, each holding its
kernels and its host launcher: ``grpo.grpo_advantages`` (sort + 2 kernels) and ``gdpo.gdpo_advantages``
(sort + 3 kernels); ``common`` holds the shared @triton.jit helpers, the constants layout and the launch
geometry of each variant (``VARIANTS``). saw_verl.triton_backend validates, builds the constants, reads the
status word and raises SawInputError; the float64 reference is saw_verl.reference.
"""

from .common import DEFAULT_VARIANT, VARIANTS, constants_vector
from .gdpo import gdpo_advantages
from .grpo import grpo_advantages

__all__ = ["DEFAULT_VARIANT", "VARIANTS", "constants_vector", "gdpo_advantages", "grpo_advantages"]
