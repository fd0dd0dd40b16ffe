"""Ray ``worker_process_setup_hook``: SAW patches OpenRLHF in whatever worker imports its experience maker.

Ray runs :func:`setup` in every worker of the job (vLLM engines, DeepSpeed model actors, the
``PPOTrainer`` actor and, in async mode, the ``TrainingActor`` that ``PPOTrainerAsync`` spawns). It
imports nothing of OpenRLHF, DeepSpeed or vLLM: it only registers a post-import patch
(:func:`saw_verl.integrations.import_hooks.after_import`), applied in the one process that imports
``openrlhf.trainer.ppo_utils.experience_maker``, right after that import.
"""

from __future__ import annotations

from types import ModuleType

from saw_verl.integrations.import_hooks import after_import

TARGET_MODULE = "openrlhf.trainer.ppo_utils.experience_maker"


def setup() -> None:
    """Patch ``RemoteExperienceMaker.compute_advantages_and_returns`` once its module is imported."""
    after_import(TARGET_MODULE, patch_experience_maker)


def patch_experience_maker(module: ModuleType) -> None:
    """Wrap the method (idempotent); the wrapper computes SAW only while SAW_VERL_OPENRLHF is set."""
    from saw_verl.integrations.openrlhf.advantages import wrap_compute_advantages

    maker = module.RemoteExperienceMaker
    maker.compute_advantages_and_returns = wrap_compute_advantages(maker.compute_advantages_and_returns)
