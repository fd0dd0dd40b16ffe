"""verl plugin that lets ``python -m verl.trainer.main_ppo`` run on a CPU-only machine.

Opt-in only: load it with ``VERL_USE_EXTERNAL_MODULES=cpu_harness.plugin`` together with
``VERL_PLATFORM=cpu`` (the launcher in :mod:`cpu_harness.launcher` sets both). It is not
a ``verl.plugins`` entry point, so installing saw-verl never changes how verl runs on a GPU.

verl imports this module from inside ``import verl`` in every process (driver and Ray actors),
so it stays light: it registers the ``cpu`` platform and defers everything else to the moment the
verl module concerned is imported.
"""

from __future__ import annotations

from types import ModuleType

from cpu_harness import platform
from cpu_harness.compat import require
from saw_verl.integrations.import_hooks import after_import

ROLLOUT_NAME = "hf"
_ADAPTER_PATH = "cpu_harness.rollout.HFServerAdapter"


def _load_hf_replica() -> type:
    from cpu_harness.rollout import HFReplica

    return HFReplica


def _register_rollout_adapter(rollout_base: ModuleType) -> None:
    require(rollout_base, "_ROLLOUT_REGISTRY")[(ROLLOUT_NAME, "async")] = _ADAPTER_PATH


def _register_rollout_replica(replica: ModuleType) -> None:
    require(require(replica, "RolloutReplicaRegistry"), "register")(ROLLOUT_NAME, _load_hf_replica)


platform.install()
after_import("verl.workers.rollout.base", _register_rollout_adapter)
after_import("verl.workers.rollout.replica", _register_rollout_replica)
