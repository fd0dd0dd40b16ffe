"""A ``cpu`` platform for verl 0.9.1: gloo collectives and the FSDP engines on device ``cpu``.

verl resolves its device through ``verl.plugin.platform`` (``VERL_PLATFORM=cpu`` selects the class
registered here). Three CUDA assumptions elsewhere in verl are patched when their modules load:

* ``verl.utils.distributed.initialize_global_process_group_ray`` builds the backend string
  ``"cpu:gloo,{device}:{backend}"``, which is ``"cpu:gloo,cpu:gloo"`` on CPU and rejected by
  torch; the harness defaults it to plain ``"gloo"``.
* The FSDP engines are registered for devices ``cuda``/``npu`` only; the same classes are
  registered for ``cpu``.
* FSDP2's ``CPUOffloadPolicy(pin_memory=True)`` (used by a forward-only reference model) needs an
  accelerator to pin memory; the harness builds it with ``pin_memory=False``.

Ray still schedules verl's workers on the resource named "GPU": the launcher declares logical
GPUs with ``ray_init.num_gpus``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType

import psutil
import torch

from cpu_harness.compat import incompatible, require
from saw_verl.integrations.import_hooks import after_import

try:
    from verl.plugin.platform.platform_base import PlatformBase
except ImportError as error:  # pragma: no cover - only on a verl that moved its platform layer
    raise incompatible(f"`verl.plugin.platform.platform_base.PlatformBase` cannot be imported ({error})") from error

PLATFORM_NAME = "cpu"


class CpuDeviceModule(ModuleType):
    """``torch.cuda``-shaped facade over ``torch.cpu``: the memory and RNG calls verl makes."""

    def __init__(self):
        super().__init__("saw_verl_cpu_device")

    def __getattr__(self, name):  # current_stream, Stream, Event, synchronize, ... from torch.cpu
        return getattr(torch.cpu, name)

    @staticmethod
    def mem_get_info(device=None) -> tuple[int, int]:
        memory = psutil.virtual_memory()
        return memory.available, memory.total

    @staticmethod
    def get_rng_state(device=None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device=None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def get_device_name(device=None) -> str:
        return PLATFORM_NAME

    @staticmethod
    def current_device() -> int:
        return 0

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def _nothing(*args, **kwargs) -> None:
        return None

    @staticmethod
    def _zero_bytes(*args, **kwargs) -> int:
        return 0

    empty_cache = ipc_collect = reset_peak_memory_stats = _nothing
    set_device = set_per_process_memory_fraction = synchronize = _nothing
    memory_allocated = memory_reserved = max_memory_allocated = max_memory_reserved = _zero_bytes


CPU_DEVICE_MODULE = CpuDeviceModule()


class PlatformCPU(PlatformBase):
    """verl platform whose device is ``cpu`` and whose collective backend is gloo."""

    device_name = property(lambda self: PLATFORM_NAME)
    vendor_name = property(lambda self: PLATFORM_NAME)
    device_module = property(lambda self: CPU_DEVICE_MODULE)

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME

    def current_device(self) -> str:
        return PLATFORM_NAME  # verl uses it as `.to(get_device_id())` and as FSDP's device_id

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index=0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"  # the launcher gives Ray logical GPUs so verl's resource pools can be placed

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def register_platform() -> None:
    """Register the ``cpu`` platform with verl's ``PlatformRegistry`` (idempotent)."""
    from verl.plugin.platform import platform_manager

    if PlatformCPU.__abstractmethods__:
        raise incompatible(f"verl's PlatformBase gained abstract methods {sorted(PlatformCPU.__abstractmethods__)}")
    registry = require(platform_manager, "PlatformRegistry")
    if registry.get(PLATFORM_NAME) is not PlatformCPU:
        require(registry, "register")(platform=PLATFORM_NAME)(PlatformCPU)


def _default_backend_to_gloo(distributed: ModuleType) -> None:
    original = require(distributed, "initialize_global_process_group_ray", params=("timeout_second", "backend"))
    if getattr(original, "_saw_cpu_harness", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray._saw_cpu_harness = True
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


def _register_fsdp_engines_for_cpu(transformer_impl: ModuleType) -> None:
    from verl.workers.engine.base import EngineRegistry

    engines = require(EngineRegistry, "_engines")
    pairs = {
        "language_model": require(transformer_impl, "FSDPEngineWithLMHead"),
        "value_model": require(transformer_impl, "FSDPEngineWithValueHead"),
    }
    for model_type, engine_cls in pairs.items():
        for backend in ("fsdp", "fsdp2"):
            engines.setdefault(model_type, {}).setdefault(backend, {}).setdefault(PLATFORM_NAME, engine_cls)


def _unpinned_cpu_offload(transformer_impl: ModuleType) -> None:
    policy_cls = require(transformer_impl, "CPUOffloadPolicy")
    if policy_cls is None or getattr(policy_cls, "_saw_cpu_harness", False):
        return

    def cpu_offload_policy(pin_memory: bool = True, **kwargs):
        return policy_cls(pin_memory=False, **kwargs)

    cpu_offload_policy._saw_cpu_harness = True
    transformer_impl.CPUOffloadPolicy = cpu_offload_policy


def install() -> None:
    """Register the platform now; patch the distributed init and FSDP engines when they load."""
    register_platform()
    after_import("verl.utils.distributed", _default_backend_to_gloo)
    after_import("verl.workers.engine.fsdp.transformer_impl", _register_fsdp_engines_for_cpu)
    after_import("verl.workers.engine.fsdp.transformer_impl", _unpinned_cpu_offload)
