"""saw-verl: Stage-Aware Dynamic Weighting (SAW) advantage estimators for verl, TRL and OpenRLHF.

Install the package and set ``algorithm.adv_estimator=saw_gdpo`` (or ``saw_grpo``) in a stock verl
config. The core imports no trainer: ``saw_verl.integrations.{verl,trl,openrlhf}`` each alone import
theirs. ``saw_verl.reference`` (the float64 oracle) is for tests and is not imported here.

The names below load on first use (PEP 562): a Ray worker setup hook that imports a stdlib-only
submodule (``saw_verl.integrations.openrlhf.hook``) does not pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SawConfig": "saw_verl.config",
    "SawInputError": "saw_verl.errors",
    "SawResult": "saw_verl.result",
    "SawHistory": "saw_verl.history",
    "BatchWeights": "saw_verl.weights",
    "batch_weights": "saw_verl.weights",
    "metric_name": "saw_verl.weights",
    "step_metrics": "saw_verl.weights",
    "saw_advantages": "saw_verl.advantages",
    "saw_grpo_advantages": "saw_verl.advantages",
    "saw_gdpo_advantages": "saw_verl.advantages",
    "compute_advantages": "saw_verl.registry",
    "EstimatorResult": "saw_verl.result",
    "ESTIMATORS": "saw_verl.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'saw_verl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
