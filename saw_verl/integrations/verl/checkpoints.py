"""SAW's history pool in verl's checkpoints: saved into the `global_step_N` folder, restored on resume.

With `algorithm.saw.history_decay` > 0 the run's pools (`estimators.HISTORIES`) live in the process that
runs the trainer (the TaskRunner). verl 0.9.1 saves a checkpoint in `_save_checkpoint` of both trainers
(legacy `RayPPOTrainer`, v1 `PPOTrainer` and its subclasses) into `{trainer.default_local_dir}/global_step_{N}`,
and loads one in `_load_checkpoint` (`trainer.resume_mode`: `auto` takes the folder that
`latest_checkpointed_iteration.txt` names, `resume_path` takes `trainer.resume_from_path`). The wrappers
here write `saw_history.json` into that folder before verl saves (so before verl's tracker file names it)
and read it back once verl has loaded the folder. A checkpoint without it (saved by an older saw-verl, or by a
run without a history) resumes with a new pool and a WARNING naming the folder. Like verl's own `data.pt`,
the file stays in the local folder (`trainer.default_hdfs_dir` receives the actor only).

The `_load_checkpoint` wrapper also records the trainer whose `global_steps` a weight schedule reads (`steps`):
every trainer loads its checkpoint, or finds none, before its first step.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
from types import ModuleType
from typing import Optional

from saw_verl.config import SawConfig
from saw_verl.integrations.verl import estimators, steps
from saw_verl.integrations.verl.bindings import WRAPPED
from saw_verl.integrations.verl.config import saw_config_from_algorithm

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("SAW_VERL_LOGGING_LEVEL", "INFO").upper())  # verl's root logger is at WARNING

HISTORY_FILE = "saw_history.json"
TRAINER_CLASSES = {"verl.trainer.ppo.ray_trainer": "RayPPOTrainer", "verl.trainer.ppo.v1.trainer_base": "PPOTrainer"}


def history_config(trainer) -> Optional[SawConfig]:
    """The SawConfig of the trainer's run if it keeps a SAW history (saw_grpo / saw_gdpo, history_decay > 0; the
    registry's other estimators keep no state)."""
    algorithm = trainer.config.algorithm
    entry = estimators.REGISTRY_BY_VERL_NAME.get(getattr(algorithm.adv_estimator, "value", algorithm.adv_estimator))
    if entry is None or not entry.saw_mode:
        return None
    cfg = saw_config_from_algorithm(algorithm, entry.saw_mode)
    return cfg if cfg.history_decay > 0 else None


def save_history(folder: str) -> str:
    """Write the run's pools to `folder`/saw_history.json (replaced whole, never half written); returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, HISTORY_FILE)
    with open(f"{path}.tmp", "w") as out:
        json.dump(estimators.HISTORIES.state_dict(), out)
    os.replace(f"{path}.tmp", path)
    return path


def restore_history(folder: str, cfg: SawConfig) -> None:
    """Take the run's pools from `folder`/saw_history.json; without it, a new pool and a WARNING naming `folder`."""
    path = os.path.join(folder, HISTORY_FILE)
    state = None
    if os.path.exists(path):
        with open(path) as saved:
            state = json.load(saved)
    warning = estimators.HISTORIES.resume(state, cfg, folder)
    if warning is None:
        logger.info("saw_verl: saw_%s resumes with the history pool of %s", cfg.mode, path)
    else:
        logger.warning("saw_verl: %s", warning)


def resumed_folder(trainer) -> Optional[str]:
    """The global_step_N folder verl's `_load_checkpoint` has just loaded, found as verl finds it; None when it
    started from scratch (verl leaves `trainer.global_steps` at 0 then)."""
    if not trainer.global_steps:
        return None
    options = trainer.config.trainer
    if options.resume_mode == "resume_path":
        return os.path.abspath(options.resume_from_path)
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path  # not at plugin load: heavy

    return find_latest_ckpt_path(os.path.abspath(options.default_local_dir))


def wrap_save_checkpoint(original):
    """verl's `_save_checkpoint(self)` -> a wrapper that first writes SAW's pools into the step's folder."""

    @functools.wraps(original)
    def _save_checkpoint(self):
        if history_config(self) is not None:
            save_history(os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"))
        return original(self)

    return _save_checkpoint


def wrap_load_checkpoint(original):
    """verl's `_load_checkpoint(self)` -> a wrapper that then restores SAW's pools from the folder it loaded, and
    records the trainer as the one whose step the estimators read (`steps.attach`)."""

    @functools.wraps(original)
    def _load_checkpoint(self):
        result = original(self)
        steps.attach(self)
        cfg = history_config(self)
        folder = None if cfg is None else resumed_folder(self)
        if folder is not None:
            restore_history(folder, cfg)
        return result

    return _load_checkpoint


def patch_trainer(module: ModuleType) -> None:
    """Wrap the checkpoint methods of the module's trainer class (idempotent); a changed target gets a WARNING."""
    where = f"{module.__name__}.{TRAINER_CLASSES[module.__name__]}"
    trainer = getattr(module, TRAINER_CLASSES[module.__name__], None)
    for name, wrap in (("_save_checkpoint", wrap_save_checkpoint), ("_load_checkpoint", wrap_load_checkpoint)):
        original = getattr(trainer, name, None)
        if original is None or list(inspect.signature(original).parameters) != ["self"]:
            logger.warning("saw_verl: not patching %s.%s (missing, or not (self)); SAW's history pool will not "
                           "travel in verl's checkpoints", where, name)
            continue
        if not getattr(original, WRAPPED, False):
            wrapper = wrap(original)
            setattr(wrapper, WRAPPED, True)
            setattr(trainer, name, wrapper)
