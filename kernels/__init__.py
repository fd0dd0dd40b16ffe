"""Fused Triton kernels for SAW advantages (shipped as ``saw_verl.kernels``).

A leaf: takes tensors and scalars, imports nothing of saw_verl. One module per estimator, each holding its
kernels and its launcher: ``grpo.grpo_advantages`` (2 kernels) and ``gdpo.gdpo_advantages`` (3 kernels), plus
torch.sort of the group ids unless the caller says they are non-decreasing. What they share: ``statistics`` (Step 1
and the z-scores within groups, float64) and ``common`` (the layouts, the launch plan, the one streaming write);
``naive`` is the float64 torch reference of both. saw_verl.triton_backend validates, builds the constants, reads
the status words and raises SawInputError.

The names below load on first use (PEP 562), so importing this package needs no triton: in a checkout, the
folder is also importable as a top-level ``kernels``, a name other libraries probe for (transformers imports
``kernels`` to read its version when it finds one on the path).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BELOW_MIN_KEY": ".common", "BELOW_MIN_VALUE": ".common", "FIRST_BAD": ".common",
    "OWNS_A_GROUP": ".common", "SUMMARY": ".common", "TOKENS": ".common", "UNSORTED": ".common",
    "UNSORTED_AT": ".common",
    "constants_vector": ".common", "gdpo_advantages": ".gdpo", "grpo_advantages": ".grpo", "naive_gdpo": ".naive",
    "naive_grpo": ".naive",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
