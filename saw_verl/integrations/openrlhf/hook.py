"""Ray ``worker_process_setup_hook``: SAW patches OpenRLHF in whatever worker imports its experience maker.

Ray runs :func:`setup` in every worker of the job (vLLM engines, DeepSpeed model actors, the
``PPOTrainer`` actor and, in async mode, the ``TrainingActor`` that ``PPOTrainerAsync`` spawns). It
imports nothing of OpenRLHF, DeepSpeed or vLLM: it only registers post-import patches
(:func:`saw_verl.integrations.import_hooks.after_import`), each applied in the process that imports its module,
right after that import: ``openrlhf.trainer.ppo_utils.experience_maker`` (SAW's advantage) and
``openrlhf.trainer.ppo_trainer`` (the training step for a weight schedule, SAW's history pool in the checkpoints),
both in the trainer's process.
"""

from __future__ import annotations

from types import ModuleType

from saw_verl.integrations.import_hooks import after_import

TARGET_MODULE = "openrlhf.trainer.ppo_utils.experience_maker"
TRAINER_MODULE = "openrlhf.trainer.ppo_trainer"


def setup() -> None:
    """Patch ``RemoteExperienceMaker.compute_advantages_and_returns`` and ``train_step`` and the checkpoint methods
    of ``BasePPOTrainer`` once their modules are imported."""
    after_import(TARGET_MODULE, patch_experience_maker)
    after_import(TRAINER_MODULE, patch_ppo_trainer)


def patch_experience_maker(module: ModuleType) -> None:
    """Wrap the method (idempotent); the wrapper computes SAW only while SAW_VERL_OPENRLHF is set."""
    from saw_verl.integrations.openrlhf.advantages import wrap_compute_advantages

    maker = module.RemoteExperienceMaker
    maker.compute_advantages_and_returns = wrap_compute_advantages(maker.compute_advantages_and_returns)


def patch_ppo_trainer(module: ModuleType) -> None:
    """Hand each train_step's global step to the experience maker, and make the trainer's checkpoints carry SAW's
    history pool (idempotent; the pool only while SAW_VERL_OPENRLHF is set)."""
    from saw_verl.integrations.openrlhf.advantages import patch_train_step
    from saw_verl.integrations.openrlhf.checkpoints import patch_ppo_trainer as patch

    patch_train_step(module)
    patch(module)
