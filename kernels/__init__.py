"""Fused Triton kernels for SAW advantages (shipped as ``saw_verl.kernels``).

``triton_saw_advantages`` is the backend saw_verl.advantages dispatches CUDA tensors to;
``saw_grpo_advantages`` / ``saw_gdpo_advantages`` are the tensor-level entry points for other trainers.
"""

from .saw import saw_gdpo_advantages, saw_grpo_advantages, triton_saw_advantages

__all__ = ["saw_gdpo_advantages", "saw_grpo_advantages", "triton_saw_advantages"]
