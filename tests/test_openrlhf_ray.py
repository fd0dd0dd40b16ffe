"""A local Ray job: SAW's runtime_env patches OpenRLHF inside an actor that imports it only after it starts.

The actor is spawned by another actor, as async OpenRLHF spawns its TrainingActor from PPOTrainerAsync.
It checks that the setup hook imported nothing of OpenRLHF / DeepSpeed / vLLM, imports the real
experience maker and trainer (both patched on import), and runs the wrapped compute_advantages_and_returns on the
worked example of docs/spec.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs these tests")
ray = pytest.importorskip("ray")

from spec_cases import EXAMPLE_ADVANTAGES, EXAMPLE_KEYS, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, assert_close

from saw_verl.integrations.openrlhf import saw_runtime_env
from saw_verl.integrations.openrlhf.hook import TARGET_MODULE, TRAINER_MODULE
from saw_verl.integrations.openrlhf.options import ENV_VAR, merge_runtime_env

TESTS_DIR = str(Path(__file__).parent)
HEAVY_MODULES = ("openrlhf", "deepspeed", "vllm", "flash_attn", "transformers")


def test_setup_hook_patches_openrlhf_in_a_nested_actor():
    @ray.remote(num_cpus=0)
    class Trainer:
        def run(self, tests_dir, rewards):
            import importlib
            import sys

            import torch

            from saw_verl.integrations import import_hooks

            loaded_at_start = [name for name in HEAVY_MODULES if name in sys.modules]
            pending = TARGET_MODULE in import_hooks._PENDING
            sys.path.insert(0, tests_dir)
            from openrlhf_standins import (
                import_experience_maker, make_args, make_maker, make_micro_batches, openrlhf_importable,
            )

            with openrlhf_importable():
                experience_maker = import_experience_maker()
                trainer = importlib.import_module(TRAINER_MODULE).BasePPOTrainer
            method = experience_maker.RemoteExperienceMaker.compute_advantages_and_returns
            columns = {key: rewards[:, k] for k, key in enumerate(EXAMPLE_KEYS)}
            batches = make_micro_batches(columns, torch.Generator().manual_seed(0), max_response=1)
            out = make_maker(experience_maker, make_args(4)).compute_advantages_and_returns(batches)
            advantages = torch.empty(len(rewards), dtype=torch.float64)
            for experience in out:
                advantages[torch.tensor(experience.index)] = experience.advantages[experience.action_mask].double()
            return {
                "loaded_at_start": loaded_at_start,
                "pending": pending,
                "wrapped": getattr(method, "saw_verl_wrapped", False),
                "checkpoints_wrapped": [getattr(getattr(trainer, name), "saw_verl_wrapped", False)
                                        for name in ("save_logs_and_checkpoints", "init_checkpoint_states",
                                                     "train_step")],
                "env": os.environ.get(ENV_VAR),
                "advantages": advantages,
            }

    @ray.remote(num_cpus=0)
    class Spawner:
        def run(self, tests_dir, rewards):
            return ray.get(Trainer.remote().run.remote(tests_dir, rewards))

    saw = saw_runtime_env("saw_gdpo", EXAMPLE_KEYS, reward_min=EXAMPLE_REWARD_MIN)
    runtime_env = merge_runtime_env({"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}, saw)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=100 * 2**20, runtime_env=runtime_env)
    try:
        report = ray.get(Spawner.remote().run.remote(TESTS_DIR, EXAMPLE_REWARDS), timeout=120)
    finally:
        ray.shutdown()
    assert report["loaded_at_start"] == [], "the setup hook must not import OpenRLHF, DeepSpeed, vLLM or transformers"
    assert report["pending"], "the setup hook registered the lazy patch before OpenRLHF was imported"
    assert report["wrapped"], "importing the experience maker applied the patch"
    assert report["checkpoints_wrapped"] == [True, True, True], (
        "importing the trainer made its checkpoints carry the pool and its train_step hand over the step")
    assert report["env"] == saw["env_vars"][ENV_VAR]
    assert_close(report["advantages"], EXAMPLE_ADVANTAGES[("gdpo", True)], 1e-5, "saw_gdpo in the Ray actor")
