"""Which tests a pytest invocation runs, and hypothesis' CI profile.

Tests marked `interpreter` run the Triton kernels: natively when CUDA is present, else only in their own
invocation under TRITON_INTERPRET=1 (.ci/run: `TRITON_INTERPRET=1 python -m pytest -m interpreter
tests/test_kernels.py`). Triton decides whether to interpret when a kernel module is first imported, so
one process cannot do both: without CUDA, the plain run DESELECTS the interpreter tests (they do not
show up as skipped) and an interpreting run deselects everything else.

With CI=true, hypothesis runs derandomized (the same examples every run) and prints its statistics.
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "interpreter: runs the Triton kernels (CUDA, or TRITON_INTERPRET=1 on CPU)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() and not INTERPRETING:
        return
    keep, drop = [], []
    for item in items:
        (keep if (item.get_closest_marker("interpreter") is not None) == INTERPRETING else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
