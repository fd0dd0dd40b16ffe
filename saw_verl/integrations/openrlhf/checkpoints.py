"""SAW's history pool in OpenRLHF's checkpoints: one more entry of the DeepSpeed client state.

OpenRLHF's ``BasePPOTrainer`` (``openrlhf.trainer.ppo_trainer``: the ``PPOTrainer`` actor, or the async
``TrainingActor``) builds each checkpoint's ``client_states`` and hands them to the actor group's
``save_checkpoint``, which saves them with the DeepSpeed checkpoint in ``{--ckpt.path}/_actor/{tag}``. On resume
(``--ckpt.load_enable``) its ``init_checkpoint_states`` reads them back from the actor (``get_checkpoint_states``).
The pools (``advantages.HISTORIES``) live in that same process, with the experience maker. With
``--saw.history_decay`` > 0 the wrappers here add them as ``client_states["saw_history"]``
(``RunHistories.state_dict()``) in ``save_logs_and_checkpoints`` and ``save_best_checkpoint``, and restore them in
``init_checkpoint_states`` when OpenRLHF resumes (a checkpoint global_step > 0). A checkpoint without them resumes
with a new pool and a warning naming the checkpoint.

The ``PPOTrainer`` actor class that Ray ships from the driver finds these methods by reference in the worker's own
``openrlhf.trainer.ppo_trainer``, patched on import: checked with Ray 2.55 (OpenRLHF 0.11.2's pin). A Ray job that
loads actor classes from local code (``code_search_path``) may build the class before the patch, and bypass it.
"""

from __future__ import annotations

import functools
import inspect
import os

from saw_verl.integrations.openrlhf.advantages import HISTORIES, logger
from saw_verl.integrations.openrlhf.options import config_from_env

CLIENT_STATE_KEY = "saw_history"
SAVE_METHODS = ("save_logs_and_checkpoints", "save_best_checkpoint")  # each takes client_states


def history_config():
    """The run's SawConfig if it keeps a SAW history (SAW_VERL_OPENRLHF set, history_decay > 0), else None."""
    cfg = config_from_env()
    return cfg if cfg is not None and cfg.history_decay > 0 else None


def wrap_save(original):
    """A BasePPOTrainer save method taking ``client_states`` -> one that adds SAW's pools to them (in place, as
    OpenRLHF adds its own entries)."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def save(self, *args, **kwargs):
        if history_config() is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("client_states") is None:
            bound.arguments["client_states"] = {}
        bound.arguments["client_states"][CLIENT_STATE_KEY] = HISTORIES.state_dict()
        return original(*bound.args, **bound.kwargs)

    save.saw_verl_wrapped = True
    return save


def loaded_checkpoint(ckpt_path: str) -> str:
    """The DeepSpeed checkpoint OpenRLHF resumes from: ``{ckpt_path}/_actor/{the tag its 'latest' file names}``."""
    actor = os.path.join(ckpt_path, "_actor")
    latest = os.path.join(actor, "latest")
    if not os.path.exists(latest):
        return actor
    with open(latest) as tag:
        return os.path.join(actor, tag.read().strip())


def wrap_init_checkpoint_states(original):
    """``BasePPOTrainer.init_checkpoint_states(self)`` -> one that also restores SAW's pools when resuming."""

    @functools.wraps(original)
    def init_checkpoint_states(self):
        states = original(self)
        cfg = history_config()
        if cfg is not None and states.get("global_step", 0) > 0:
            checkpoint = loaded_checkpoint(self.args.ckpt.path)
            warning = HISTORIES.resume(states.get(CLIENT_STATE_KEY), cfg, checkpoint)
            if warning is None:
                logger.info("saw_verl: saw_%s resumes with the history pool of %s", cfg.mode, checkpoint)
            else:
                logger.warning("saw_verl: %s", warning)
        return states

    init_checkpoint_states.saw_verl_wrapped = True
    return init_checkpoint_states


def has_expected_shape(method, name: str) -> bool:
    """A save method takes ``client_states``; ``init_checkpoint_states`` needs ``self`` only (Ray's tracing may
    add an optional ``_ray_trace_ctx``)."""
    if method is None:
        return False
    parameters = inspect.signature(method).parameters
    if name in SAVE_METHODS:
        return "client_states" in parameters
    return [n for n, p in parameters.items() if p.default is p.empty and p.kind is not p.VAR_KEYWORD] == ["self"]


def patch_ppo_trainer(module) -> None:
    """Wrap BasePPOTrainer's checkpoint methods in ``module`` (idempotent); a changed one gets a warning."""
    trainer = module.BasePPOTrainer
    targets = {name: wrap_save for name in SAVE_METHODS}
    targets["init_checkpoint_states"] = wrap_init_checkpoint_states
    for name, wrap in targets.items():
        method = getattr(trainer, name, None)
        if not has_expected_shape(method, name):
            logger.warning("saw_verl: not patching %s.BasePPOTrainer.%s (missing or changed); SAW's history pool "
                           "will not travel in OpenRLHF's checkpoints", module.__name__, name)
        elif not getattr(method, "saw_verl_wrapped", False):
            setattr(trainer, name, wrap(method))
