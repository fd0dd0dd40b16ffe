"""SAW's history pool in verl's checkpoints: the real `_save_checkpoint` / `_load_checkpoint` of both verl trainers
(legacy `RayPPOTrainer`, v1 `PPOTrainer` through its subclass `PPOTrainerSync`), wrapped by the plugin, with
stand-ins for the worker groups and the data loader (the real run, which trains, saves and resumes, is in
tests/test_e2e_cpu.py)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from omegaconf import OmegaConf

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl import SawHistory, saw_advantages
from saw_verl.integrations.verl import checkpoints, estimators
from saw_verl.integrations.verl.config import saw_config_from_algorithm
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

KEYS = ["correct", "format"]
DECAY = 0.5
TRAINERS = {"legacy": RayPPOTrainer, "v1": PPOTrainerSync}  # v1: its sync trainer, a PPOTrainer subclass


class WorkerGroup:
    """Stands in for the actor's worker group: writes and reads a marker in the actor folder."""

    def save_checkpoint(self, local_path, remote_path, global_step, max_ckpt_to_keep=None):
        os.makedirs(local_path, exist_ok=True)

    def load_checkpoint(self, local_path, del_local_after_load=False):
        assert os.path.isdir(local_path), local_path


class DataLoader:
    def __len__(self):
        return 100

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def make_trainer(kind: str, run_dir, estimator="saw_gdpo", decay=DECAY, **trainer_options):
    """A verl trainer object with what its checkpoint methods read (no workers, no Ray)."""
    trainer = TRAINERS[kind].__new__(TRAINERS[kind])
    options = {"default_local_dir": str(run_dir), "default_hdfs_dir": None, "resume_mode": "auto",
               "resume_from_path": None, "del_local_ckpt_after_load": False, **trainer_options}
    trainer.config = OmegaConf.create({
        "trainer": options,
        "algorithm": {"adv_estimator": estimator, "gdpo_reward_keys": KEYS, "saw": {"history_decay": decay}},
        "actor_rollout_ref": {"actor": {"checkpoint": {"async_save": False}}},
    })
    trainer.actor_rollout_wg, trainer.use_critic, trainer.train_dataloader = WorkerGroup(), False, DataLoader()
    trainer.trainer_mode = "sync"
    trainer.checkpoint_callback = type("Callback", (), {"on_save": lambda self, **kwargs: None})()
    trainer.global_steps = 0
    return trainer


def run_config(trainer):
    return saw_config_from_algorithm(trainer.config.algorithm, "gdpo")


def rewards(seed: int) -> torch.Tensor:
    return torch.rand(8, len(KEYS), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def train_steps(cfg, history: SawHistory, seeds) -> torch.Tensor:
    """SAW steps on the rewards of `seeds` (4 groups of 2); returns the last step's weights (K,)."""
    for seed in seeds:
        result = saw_advantages(rewards(seed), torch.arange(8) // 2, torch.ones(8, 1), cfg, history=history)
    return result.weights


@pytest.fixture(autouse=True)
def fresh_histories():
    estimators.HISTORIES.clear()
    yield
    estimators.HISTORIES.clear()


@pytest.mark.parametrize("kind", TRAINERS)
@pytest.mark.parametrize("resume_mode", ["auto", "resume_path"])
def test_resumed_run_has_the_saved_pool_and_the_same_next_weights(kind, resume_mode, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    saving = make_trainer(kind, "checkpoints")
    cfg = run_config(saving)
    train_steps(cfg, estimators.HISTORIES.get(cfg), seeds=[1, 2])
    saved = estimators.HISTORIES.get(cfg).pool.clone()
    saving.global_steps = 2
    saving._save_checkpoint()
    folder = tmp_path / "checkpoints" / "global_step_2"
    assert json.loads((folder / checkpoints.HISTORY_FILE).read_text()) == estimators.HISTORIES.state_dict()
    uninterrupted = SawHistory()
    uninterrupted.load_state_dict(estimators.HISTORIES.get(cfg).state_dict())

    estimators.HISTORIES.clear()  # a new TaskRunner
    resuming = make_trainer(kind, "checkpoints", resume_mode=resume_mode, resume_from_path="checkpoints/global_step_2")
    with caplog.at_level(logging.INFO, logger=checkpoints.__name__):
        resuming._load_checkpoint()
    assert resuming.global_steps == 2
    restored = estimators.HISTORIES.get(cfg)
    assert torch.equal(restored.pool, saved) and restored.steps == 2, "the restored pool is the saved one, bit for bit"
    assert f"the history pool of {folder / checkpoints.HISTORY_FILE}" in caplog.text
    assert torch.equal(train_steps(cfg, restored, [3]), train_steps(cfg, uninterrupted, [3]))
    assert torch.equal(restored.pool, uninterrupted.pool)


def checkpoint_after_one_step(kind, folder):
    """A trainer of `kind` trains one step and saves global_step_1 under `folder`; its run's config."""
    saving = make_trainer(kind, folder)
    cfg = run_config(saving)
    train_steps(cfg, estimators.HISTORIES.get(cfg), seeds=[1])
    saving.global_steps = 1
    saving._save_checkpoint()
    return cfg


@pytest.mark.parametrize("kind", TRAINERS)
def test_checkpoint_without_saw_state_resumes_with_a_new_pool_and_a_warning(kind, tmp_path, caplog):
    cfg = checkpoint_after_one_step(kind, tmp_path)
    folder = tmp_path / "global_step_1"
    (folder / checkpoints.HISTORY_FILE).unlink()  # as saved by an older saw-verl

    train_steps(cfg, estimators.HISTORIES.get(cfg), seeds=[2])  # the pool this process held must not survive
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        make_trainer(kind, tmp_path)._load_checkpoint()
    assert f"checkpoint {folder} holds no SAW history" in caplog.text
    assert "resumes with a new history pool" in caplog.text
    assert estimators.HISTORIES.get(cfg).pool is None


@pytest.mark.parametrize("kind", TRAINERS)
def test_keys_the_checkpoint_has_no_pool_for_get_a_new_pool_and_a_warning(kind, tmp_path, caplog):
    cfg = checkpoint_after_one_step(kind, tmp_path)

    estimators.HISTORIES.clear()
    resuming = make_trainer(kind, tmp_path)
    resuming.config.algorithm.gdpo_reward_keys = ["format", "correct"]
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        resuming._load_checkpoint()
    assert (f"checkpoint {tmp_path / 'global_step_1'} holds SAW history pools for gdpo ['correct', 'format'], "
            "not for gdpo ['format', 'correct']") in caplog.text
    assert estimators.HISTORIES.get(run_config(resuming)).pool is None


@pytest.mark.parametrize("kind", TRAINERS)
@pytest.mark.parametrize("estimator,decay", [("saw_gdpo", 0.0), ("gdpo", DECAY), ("mo_grpo", 0.0)])
def test_runs_without_a_history_write_and_read_nothing(kind, estimator, decay, tmp_path, caplog):
    """Plain runs, verl's own estimators and the registry's rivals (which keep no state)."""
    saving = make_trainer(kind, tmp_path, estimator=estimator, decay=decay)
    saving.global_steps = 1
    saving._save_checkpoint()
    assert (tmp_path / "global_step_1" / "data.pt").exists()
    assert not (tmp_path / "global_step_1" / checkpoints.HISTORY_FILE).exists()
    with caplog.at_level(logging.WARNING):
        make_trainer(kind, tmp_path, estimator=estimator, decay=decay)._load_checkpoint()
    assert "SAW" not in caplog.text


@pytest.mark.parametrize("kind", TRAINERS)
def test_a_fresh_run_or_resume_disabled_keeps_its_pool(kind, tmp_path, caplog):
    cfg = run_config(make_trainer(kind, tmp_path))
    train_steps(cfg, estimators.HISTORIES.get(cfg), seeds=[1])
    pool = estimators.HISTORIES.get(cfg).pool
    with caplog.at_level(logging.INFO, logger=checkpoints.__name__):
        make_trainer(kind, tmp_path)._load_checkpoint()  # auto, nothing saved yet
        saving = make_trainer(kind, tmp_path)
        saving.global_steps = 1
        saving._save_checkpoint()
        make_trainer(kind, tmp_path, resume_mode="disable")._load_checkpoint()
    assert estimators.HISTORIES.get(cfg).pool is pool
    assert not [record for record in caplog.records if record.name.startswith("saw_verl")]


def test_both_trainers_checkpoint_methods_are_wrapped():
    for trainer in (RayPPOTrainer, PPOTrainer):
        for name in ("_save_checkpoint", "_load_checkpoint"):
            assert getattr(getattr(trainer, name), "_saw_verl_wrapped", False), f"{trainer.__name__}.{name}"
