"""The smallest patch of verl 0.9.1 that lets saw_* estimators see the per-key rewards and log metrics.

What verl lacks, and the wrapper that fills it in (only for the saw_* names; everything else is
delegated untouched):

- `validate_config` (verl's driver, before Ray starts) knows nothing of `algorithm.saw`: the wrapper also runs
  `config.validate_run` for a job of a registry estimator, so an option error ends the job before any worker
  starts.
- `compute_advantage` forwards `non_tensor_batch` only to `gdpo`: the wrapper runs verl's own
  function inside `estimators.forwarded(data.non_tensor_batch, ...)` (looked up at call time, so a
  reload of `estimators` keeps working). Left alone when verl already forwards it (upstream PR #7473
  style), detected by a probe call.
- v1 `compute_advantage_for_multi_trajectories` sends every estimator but GRPO down the plain path,
  so each intermediate output of a multi-output agent session would count as one more rollout: the
  wrapper forwards the sessions of its `batch_keys` (`sessions.agent_sessions`) and the estimator
  keeps only final outputs and broadcasts (GRPO's rule). Left alone when a probe shows verl already
  hands a registered estimator the final outputs only.
- legacy trainers: `compute_data_metrics` gets this step's `saw/*` metrics merged into its output.
- v1 `PPOTrainer._compute_advantage` fetches 7 fixed fields from TransferQueue, so the per-key
  rewards stay in `extra_fields["reward_extra_info"]`: the wrapper fetches them and forwards them
  (a fallback: keys verl itself puts in non_tensor_batch win) with the rows verl added to pad the
  batch (tag `is_padding`, copies of the first sample: they must not move the statistics) and the trainer's
  step (`self.global_steps`, read by a weight schedule), then puts this step's `saw/*` metrics into the step's
  `metrics` dict.
- both trainers' `_save_checkpoint` / `_load_checkpoint`: SAW's history pool travels in the
  `global_step_N` folder (`checkpoints`); `_load_checkpoint` also records the trainer whose step a weight
  schedule reads where verl forwards none (`steps`).

The four functions are wrapped wherever a verl module binds them, whichever module defines them
(`bindings`: survives verl moving them); the methods are patched when their module
(`verl.trainer.ppo.v1.trainer_base`, `verl.trainer.ppo.ray_trainer`) is imported
(`saw_verl.integrations.import_hooks.after_import`). Everything already imported is patched at once.
Idempotent and feature-detecting: a target that changed shape gets a WARNING, never a crash.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from typing import Callable, Optional

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from saw_verl.integrations.import_hooks import after_import
from saw_verl.integrations.verl import bindings, checkpoints, estimators
from saw_verl.integrations.verl import metrics as saw_metrics
from saw_verl.integrations.verl.bindings import WRAPPED
from saw_verl.integrations.verl.config import validate_run
from saw_verl.integrations.verl.sessions import agent_sessions

logger = logging.getLogger(__name__)

_PROBE_ESTIMATOR = "_saw_verl_forwarding_probe"
V1_TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"


def _estimator_name(adv_estimator) -> str:
    return getattr(adv_estimator, "value", adv_estimator)


def _parameters(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _skip(where: str, why: str) -> None:
    logger.warning(
        "saw_verl: not patching %s (%s); saw_* estimators may miss per-key rewards or metrics on this path", where, why
    )


def _name(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _probe(call: Callable) -> dict:
    """Run `call(data, estimator_name)` on a 2-row DataProto (uids "a", "b") with a probe estimator
    registered; returns the keywords the estimator received plus `rows` (its mask's row count),
    or {} when the call failed (a probe failure only means "assume verl does not")."""
    from verl.protocol import DataProto

    received = {}

    def probe(token_level_rewards, response_mask, **kwargs):
        received.update(kwargs, rows=response_mask.shape[0])
        return token_level_rewards, token_level_rewards

    core_algos.ADV_ESTIMATOR_REGISTRY[_PROBE_ESTIMATOR] = probe
    try:
        data = DataProto.from_dict(
            tensors={"token_level_rewards": torch.zeros(2, 1), "response_mask": torch.ones(2, 1)},
            non_tensors={"uid": np.array(["a", "b"], dtype=object)},
        )
        call(data, _PROBE_ESTIMATOR)
    except Exception as exc:
        logger.debug("saw_verl: probe call failed: %r", exc)
        return {}
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(_PROBE_ESTIMATOR, None)
    return received


def forwards_non_tensor_batch(compute_advantage) -> bool:
    """Does verl's `compute_advantage` already hand `non_tensor_batch` to a registered estimator?"""
    return "non_tensor_batch" in _probe(lambda data, name: compute_advantage(data, name, config=None))


def keeps_final_outputs_only(multi_trajectories) -> bool:
    """Does verl's `compute_advantage_for_multi_trajectories` already hand a registered estimator only
    the final output of each session? (probe: one session "p_0" with outputs 0 and 1)"""
    received = _probe(lambda data, name: multi_trajectories(data, ["p_0_0", "p_0_1"], name, config=None))
    return received.get("rows") == 1


def wrap_compute_advantage(original):
    """verl's `compute_advantage(data, adv_estimator, ...)` -> a wrapper forwarding data.non_tensor_batch."""
    signature = inspect.signature(original)
    if list(signature.parameters)[:2] != ["data", "adv_estimator"]:
        _skip(_name(original), f"unexpected signature {signature}")
        return original
    if forwards_non_tensor_batch(original):
        logger.info("saw_verl: %s forwards non_tensor_batch itself; left as is", _name(original))
        return original

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if _estimator_name(adv_estimator) not in estimators.SAW_ESTIMATORS:
            return original(data, adv_estimator, *args, **kwargs)
        arguments = signature.bind(data, adv_estimator, *args, **kwargs).arguments
        with estimators.forwarded(data.non_tensor_batch, arguments.get("norm_adv_by_std_in_grpo")):
            return original(data, adv_estimator, *args, **kwargs)

    return compute_advantage


def wrap_multi_trajectories(original):
    """verl's v1 `compute_advantage_for_multi_trajectories(data, batch_keys, adv_estimator, ...)` -> a
    wrapper forwarding the agent sessions of batch_keys."""
    signature = inspect.signature(original)
    if list(signature.parameters)[:3] != ["data", "batch_keys", "adv_estimator"]:
        _skip(_name(original), f"unexpected signature {signature}")
        return original
    if keeps_final_outputs_only(original):
        logger.info("saw_verl: %s keeps final session outputs itself; left as is", _name(original))
        return original

    @functools.wraps(original)
    def compute_advantage_for_multi_trajectories(data, batch_keys, adv_estimator, *args, **kwargs):
        if _estimator_name(adv_estimator) not in estimators.SAW_ESTIMATORS:
            return original(data, batch_keys, adv_estimator, *args, **kwargs)
        with estimators.forwarded(sessions=agent_sessions(batch_keys)):
            return original(data, batch_keys, adv_estimator, *args, **kwargs)

    return compute_advantage_for_multi_trajectories


def wrap_compute_data_metrics(original):
    """verl's `compute_data_metrics(batch, ...)` -> a wrapper adding this step's saw/* metrics."""
    if "batch" not in _parameters(original):
        _skip(_name(original), f"unexpected signature {inspect.signature(original)}")
        return original

    @functools.wraps(original)
    def compute_data_metrics(*args, **kwargs):
        result = original(*args, **kwargs)
        result.update(saw_metrics.take())
        return result

    return compute_data_metrics


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
    """Wrap `module.PPOTrainer._compute_advantage` (verl's v1 trainer); a failure is logged, never raised."""
    try:
        _patch_v1_trainer(module)
    except Exception:
        logger.warning("saw_verl: patching %s.PPOTrainer failed", module.__name__, exc_info=True)


def padding_rows(batch) -> Optional[torch.Tensor]:
    """v1: (N,) bool, True on the rows verl added to pad `batch` (tag is_padding); None when there are none."""
    padding = torch.tensor([bool(tag.get("is_padding", False)) for tag in batch.tags], dtype=torch.bool)
    return padding if padding.any() else None


def _patch_v1_trainer(module) -> None:
    where = f"{module.__name__}.PPOTrainer._compute_advantage"
    trainer = getattr(module, "PPOTrainer", None)
    original = getattr(trainer, "_compute_advantage", None)
    if original is None:
        return _skip(where, "attribute missing")
    if getattr(original, WRAPPED, False):
        return
    if _parameters(original) != ["self", "batch", "metrics"]:
        return _skip(where, f"unexpected signature {inspect.signature(original)}")
    if not callable(getattr(getattr(module, "tq", None), "kv_batch_get", None)):
        return _skip(where, "no TransferQueue kv_batch_get in the module")

    @functools.wraps(original)
    def _compute_advantage(self, batch, metrics):
        if _estimator_name(self.config.algorithm.adv_estimator) not in estimators.SAW_ESTIMATORS:
            return original(self, batch, metrics)
        with estimators.forwarded(reward_extra_columns(module.tq, batch), padding_rows=padding_rows(batch),
                                  step=getattr(self, "global_steps", None)):
            result = original(self, batch, metrics)
        metrics.update(saw_metrics.take())
        return result

    setattr(_compute_advantage, WRAPPED, True)
    trainer._compute_advantage = _compute_advantage


def wrap_validate_config(original):
    """verl's `validate_config(config, ...)` (the driver, before Ray starts) -> a wrapper that also validates the
    options of a registry estimator's job (saw_verl.integrations.verl.config.validate_run)."""
    signature = inspect.signature(original)
    if _parameters(original)[:1] != ["config"]:
        _skip(_name(original), f"unexpected signature {signature}")
        return original

    @functools.wraps(original)
    def validate_config(*args, **kwargs):
        result = original(*args, **kwargs)
        config = signature.bind(*args, **kwargs).arguments["config"]
        algorithm = getattr(config, "algorithm", None)
        estimator = _estimator_name(getattr(algorithm, "adv_estimator", None))
        if estimator in estimators.SAW_ESTIMATORS:
            validate_run(config, estimators.REGISTRY_BY_VERL_NAME[estimator])
        return result

    return validate_config


WRAP_FACTORIES = {
    "validate_config": wrap_validate_config,
    "compute_advantage": wrap_compute_advantage,
    "compute_advantage_for_multi_trajectories": wrap_multi_trajectories,
    "compute_data_metrics": wrap_compute_data_metrics,
}


def install() -> None:
    """Wrap the targets in every verl module, imported now or later; safe to call any number of times."""
    bindings.install(WRAP_FACTORIES)
    after_import(V1_TRAINER_MODULE, patch_v1_trainer)
    for module_name in checkpoints.TRAINER_CLASSES:
        after_import(module_name, checkpoints.patch_trainer)
