"""The smallest patch of verl 0.9.1 that lets saw_* estimators see the per-key rewards and log metrics.

What verl lacks, and the wrapper that fills it in (only for the saw_* names; everything else is
delegated untouched):

- `compute_advantage` (bound by name in `verl.trainer.ppo.ray_trainer`, `verl.trainer.ppo.v1.utils`
  and `verl.experimental.separation.ray_trainer`) forwards `non_tensor_batch` only to `gdpo`: the
  wrapper runs verl's own function inside `estimators.forwarded(data.non_tensor_batch, ...)`
  (looked up at call time, so a reload of `estimators` keeps working).
  Skipped when verl already forwards it (upstream PR #7473 style), detected by a probe call.
- v1 `PPOTrainer._compute_advantage` fetches 7 fixed fields from TransferQueue, so the per-key
  rewards stay in `extra_fields["reward_extra_info"]`: the wrapper fetches them and forwards them
  (a fallback: keys verl itself puts in non_tensor_batch win), then puts this step's `saw/*`
  metrics into the step's `metrics` dict.
- legacy trainers: `compute_data_metrics` gets this step's `saw/*` metrics merged into its output.

Installed lazily by `saw_verl.import_hooks.after_import` (patching at once what is already imported),
idempotent, and feature-detecting: a target that changed shape gets a WARNING, never a crash.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from saw_verl.import_hooks import after_import
from saw_verl.integrations.verl import estimators
from saw_verl.integrations.verl import metrics as saw_metrics

logger = logging.getLogger(__name__)

WRAPPED = "_saw_verl_wrapped"  # marker attribute on every wrapper (survives a reload of this module)
_PROBE_ESTIMATOR = "_saw_verl_forwarding_probe"


def _estimator_name(adv_estimator) -> str:
    return getattr(adv_estimator, "value", adv_estimator)


def _parameters(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _skip(module, what: str, why: str) -> None:
    logger.warning(
        "saw_verl: not patching %s.%s (%s); saw_* estimators may miss per-key rewards or metrics on this path",
        module.__name__, what, why,
    )


def forwards_non_tensor_batch(compute_advantage) -> bool:
    """Does verl's `compute_advantage` already hand `non_tensor_batch` to a registered estimator? (2-row probe)"""
    from verl.protocol import DataProto

    received = {}

    def probe(token_level_rewards, response_mask, **kwargs):
        received.update(kwargs)
        return token_level_rewards, token_level_rewards

    core_algos.ADV_ESTIMATOR_REGISTRY[_PROBE_ESTIMATOR] = probe
    try:
        data = DataProto.from_dict(
            tensors={"token_level_rewards": torch.zeros(2, 1), "response_mask": torch.ones(2, 1)},
            non_tensors={"uid": np.array(["a", "b"], dtype=object)},
        )
        compute_advantage(data, _PROBE_ESTIMATOR, config=None)
    except Exception as exc:  # a probe failure only means "assume it does not"
        logger.debug("saw_verl: forwarding probe of compute_advantage failed: %r", exc)
        return False
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(_PROBE_ESTIMATOR, None)
    return "non_tensor_batch" in received


def patch_compute_advantage(module) -> None:
    original = getattr(module, "compute_advantage", None)
    if original is None:
        return _skip(module, "compute_advantage", "attribute missing")
    if getattr(original, WRAPPED, False):
        return
    signature = inspect.signature(original)
    if list(signature.parameters)[:2] != ["data", "adv_estimator"]:
        return _skip(module, "compute_advantage", f"unexpected signature {signature}")
    if forwards_non_tensor_batch(original):
        logger.info("saw_verl: %s.compute_advantage forwards non_tensor_batch itself; left as is", module.__name__)
        return

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if _estimator_name(adv_estimator) not in estimators.SAW_ESTIMATORS:
            return original(data, adv_estimator, *args, **kwargs)
        arguments = signature.bind(data, adv_estimator, *args, **kwargs).arguments
        with estimators.forwarded(data.non_tensor_batch, arguments.get("norm_adv_by_std_in_grpo")):
            return original(data, adv_estimator, *args, **kwargs)

    setattr(compute_advantage, WRAPPED, True)
    module.compute_advantage = compute_advantage


def patch_compute_data_metrics(module) -> None:
    original = getattr(module, "compute_data_metrics", None)
    if original is None:
        return _skip(module, "compute_data_metrics", "attribute missing")
    if getattr(original, WRAPPED, False):
        return
    if "batch" not in _parameters(original):
        return _skip(module, "compute_data_metrics", f"unexpected signature {inspect.signature(original)}")

    @functools.wraps(original)
    def compute_data_metrics(*args, **kwargs):
        result = original(*args, **kwargs)
        result.update(saw_metrics.take())
        return result

    setattr(compute_data_metrics, WRAPPED, True)
    module.compute_data_metrics = compute_data_metrics


def reward_extra_columns(tq, batch) -> dict[str, np.ndarray]:
    """v1: the per-row `extra_fields["reward_extra_info"]` of `batch` (a KVBatchMeta) as {key: (N,) object array}."""
    fetched = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    extra_fields = fetched.pop("extra_fields")
    rows = [
        (field.get("reward_extra_info") or {}) if isinstance(field, Mapping) else {}
        for field in (extra_fields.tolist() if hasattr(extra_fields, "tolist") else list(extra_fields))
    ]
    keys = dict.fromkeys(key for row in rows for key in row)
    return {key: np.array([row.get(key) for row in rows], dtype=object) for key in keys}


def patch_v1_trainer(module) -> None:
    trainer = getattr(module, "PPOTrainer", None)
    original = getattr(trainer, "_compute_advantage", None)
    if original is None:
        return _skip(module, "PPOTrainer._compute_advantage", "attribute missing")
    if getattr(original, WRAPPED, False):
        return
    if _parameters(original) != ["self", "batch", "metrics"]:
        return _skip(module, "PPOTrainer._compute_advantage", f"unexpected signature {inspect.signature(original)}")
    if not callable(getattr(getattr(module, "tq", None), "kv_batch_get", None)):
        return _skip(module, "PPOTrainer._compute_advantage", "no TransferQueue kv_batch_get in the module")

    @functools.wraps(original)
    def _compute_advantage(self, batch, metrics):
        if _estimator_name(self.config.algorithm.adv_estimator) not in estimators.SAW_ESTIMATORS:
            return original(self, batch, metrics)
        with estimators.forwarded(reward_extra_columns(module.tq, batch)):
            result = original(self, batch, metrics)
        metrics.update(saw_metrics.take())
        return result

    setattr(_compute_advantage, WRAPPED, True)
    trainer._compute_advantage = _compute_advantage


PATCHES = {
    "verl.trainer.ppo.ray_trainer": (patch_compute_advantage, patch_compute_data_metrics),
    "verl.trainer.ppo.v1.utils": (patch_compute_advantage,),
    "verl.experimental.separation.ray_trainer": (patch_compute_advantage, patch_compute_data_metrics),
    "verl.trainer.ppo.v1.trainer_base": (patch_v1_trainer,),
}


def patch_module(module) -> None:
    """Apply the patches for `module` (one of PATCHES); a failure is logged at WARNING, never raised."""
    for patch in PATCHES[module.__name__]:
        try:
            patch(module)
        except Exception:
            logger.warning("saw_verl: %s(%s) failed", patch.__name__, module.__name__, exc_info=True)


def install() -> None:
    """Patch the targets already imported and hook the others' import; safe to call any number of times."""
    for name in PATCHES:
        after_import(name, patch_module)
