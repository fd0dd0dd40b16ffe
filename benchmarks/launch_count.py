"""What one SAW call costs on the device: Triton launches, torch ops, host reads (tests/test_kernels.py and
the GPU check).

Every aten op that runs outside a kernel launch is recorded (TorchDispatchMode); those in VIEWS_AND_ALLOCATION
launch nothing on a GPU (allocation without fill, views), every other op counts as a launch. Host reads are
calls of Tensor.tolist / Tensor.item (on CUDA each is a device-to-host sync). Works natively on CUDA and under
TRITON_INTERPRET=1 (the interpreter's own tensor copies inside a launch are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

VIEWS_AND_ALLOCATION = {
    "empty", "empty_strided", "empty_like", "slice", "select", "unbind", "view", "_unsafe_view", "alias",
    "as_strided", "detach", "t", "transpose", "expand", "unsqueeze", "squeeze", "permute",
}


@dataclass
class Counted:
    kernels: int = 0  # Triton launches
    launching_ops: list = field(default_factory=list)  # torch ops that launch work on the device
    other_ops: list = field(default_factory=list)  # allocation and views
    host_reads: int = 0


class _Recorder(TorchDispatchMode):
    def __init__(self, counted: Counted):
        super().__init__()
        self.counted = counted
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            name = func.overloadpacket.__name__
            (self.counted.other_ops if name in VIEWS_AND_ALLOCATION else self.counted.launching_ops).append(name)
        return func(*args, **(kwargs or {}))


def _launcher_class():
    """The class whose `run` launches a kernel: the interpreter's under TRITON_INTERPRET=1, else JITFunction."""
    from saw_verl.kernels.common import _write_kernel

    return type(_write_kernel)


def count_launches(call) -> Counted:
    """Run call() once to warm up (compile, cache constants), then once counted."""
    call()
    counted = Counted()
    recorder = _Recorder(counted)
    launcher = _launcher_class()

    def uncounted(function, field: str):
        """function, tallied in `field`; the torch ops it runs inside (the interpreter's copies, the copy of a
        host read from CUDA) are not recorded as ops."""

        def wrapper(self, *args, **kwargs):
            setattr(counted, field, getattr(counted, field) + 1)
            recorder.paused = True
            try:
                return function(self, *args, **kwargs)
            finally:
                recorder.paused = False

        return wrapper

    with mock.patch.object(launcher, "run", uncounted(launcher.run, "kernels")), \
            mock.patch.object(torch.Tensor, "tolist", uncounted(torch.Tensor.tolist, "host_reads")), \
            mock.patch.object(torch.Tensor, "item", uncounted(torch.Tensor.item, "host_reads")), recorder:
        call()
    return counted
