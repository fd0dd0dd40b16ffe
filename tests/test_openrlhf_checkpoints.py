"""SAW's history pool and a weight schedule's step through OpenRLHF's REAL checkpoint path, saved at one step and
resumed from.

The real ``BasePPOTrainer`` (wrapped by SAW's setup hook) trains on the real ``compute_advantages_and_returns``; its
``save_logs_and_checkpoints`` hands the client states to the real ``PolicyModelActor.save_checkpoint``, whose
``DeepspeedStrategy.save_ckpt`` saves them with a real DeepSpeed engine's checkpoint (CPU, gloo). A new trainer
resumes as OpenRLHF does: ``DeepspeedStrategy.load_ckpt`` in the actor, then ``init_checkpoint_states`` through the
actor's ``get_checkpoint_states``. In-process stand-ins: the Ray actor group (it calls the actor's methods
directly), ``ray.get`` (returns what it is given), CUDA's synchronize (a no-op) and DeepSpeed's shared-memory
collectives (not built: one process). The schedule's test runs the real ``PPOTrainer.fit`` and ``train_step`` with
stand-ins for what needs GPUs and models: the rollouts (prebuilt Experiences), the models' forward passes, the
actor's PPO update (it records the experiences it is handed, whose ``info`` OpenRLHF logs) and vLLM.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs these tests")
deepspeed = pytest.importorskip("deepspeed")

from openrlhf_standins import import_experience_maker, make_args, make_micro_batches, openrlhf_importable

from saw_verl import metric_name
from saw_verl.integrations.openrlhf import hook, saw_runtime_env
from saw_verl.integrations.openrlhf.checkpoints import CLIENT_STATE_KEY
from saw_verl.integrations.openrlhf.options import ENV_VAR, saw_config

KEYS = ("correct", "format")
GROUP_SIZE = 4
HISTORY = dict(reward_min=(0.0, 0.0), history_decay=0.5)


class InProcessActorGroup:
    """RayActorGroup.async_run_method on one actor in this process: the results, where Ray gives refs."""

    def __init__(self, actor):
        self.actor = actor

    def async_run_method(self, method_name, *args, **kwargs):
        return [getattr(self.actor, method_name)(*args, **kwargs)]


@pytest.fixture(scope="module")
def openrlhf():
    """OpenRLHF's trainer, actor and strategy modules, patched by SAW's hook; a one-process gloo group for DeepSpeed."""
    with openrlhf_importable(), pytest.MonkeyPatch.context() as patch:
        import_experience_maker()
        modules = SimpleNamespace(
            trainer=importlib.import_module("openrlhf.trainer.ppo_trainer"),
            actor=importlib.import_module("openrlhf.trainer.ray.ppo_actor"),
            strategy=importlib.import_module("openrlhf.utils.deepspeed"),
        )
        hook.setup()  # the modules are imported already: patches at once
        patch.setattr(modules.trainer, "ray", SimpleNamespace(get=lambda refs: refs))
        patch.setattr(torch.cuda, "synchronize", lambda *args: None)
        patch.setattr(importlib.import_module("deepspeed.comm.torch"), "build_shm_op", lambda: None)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for name, value in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                                LOCAL_RANK="0").items():
            patch.setenv(name, value)
        deepspeed.init_distributed(dist_backend="gloo")
        try:
            yield modules
        finally:
            torch.distributed.destroy_process_group()


def trainer_args(ckpt_path):
    args = make_args(GROUP_SIZE)
    args.algo.kl = SimpleNamespace(target=None, init_coef=0.0, horizon=0)
    args.logger = SimpleNamespace(wandb=SimpleNamespace(key=None), tensorboard_dir=None, logging_steps=1)
    args.ckpt = SimpleNamespace(path=str(ckpt_path), save_steps=1, load_enable=True, best_metric_key="", max_num=3,
                                max_mem=1000, save_hf=False, disable_ds=False)
    args.train = SimpleNamespace(enable_ema=False, dynamic_batch_enable=False)
    args.ds = SimpleNamespace(param_dtype="bf16")
    return args


def make_trainer(openrlhf, ckpt_path, resume: bool, trainer_class=None):
    """A real BasePPOTrainer (or `trainer_class`, built by BasePPOTrainer's __init__) whose actor group is one real
    PolicyModelActor holding a tiny DeepSpeed engine; with `resume`, the actor has loaded the latest checkpoint under
    ckpt_path as its init_model_from_pretrained does."""
    strategy = openrlhf.strategy.DeepspeedStrategy(args=trainer_args(ckpt_path))
    model = torch.nn.Linear(4, 2)
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config={
        "train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 0}})
    actor_class = openrlhf.actor.PolicyModelActor.__ray_actor_class__
    actor = actor_class.__new__(actor_class)
    actor.strategy, actor.actor = strategy, SimpleNamespace(model=engine)
    actor.disable_ds_ckpt, actor.save_hf_ckpt = False, False
    actor.checkpoint_states = {}
    if resume:
        _, actor.checkpoint_states = strategy.load_ckpt(engine, os.path.join(ckpt_path, "_actor"))
    trainer_class = trainer_class or openrlhf.trainer.BasePPOTrainer
    trainer = trainer_class.__new__(trainer_class)
    group = InProcessActorGroup(actor)
    openrlhf.trainer.BasePPOTrainer.__init__(trainer, strategy, group, None, None, None, None, None)
    return trainer


def train_step(trainer, rewards) -> dict:
    """One step's SAW advantages through the trainer's real experience maker; returns its saw/{key}/weight|cv."""
    batches = make_micro_batches(rewards, torch.Generator().manual_seed(0))
    info = trainer.experience_maker.compute_advantages_and_returns(batches)[0].info
    return {name: info[name][0].item() for key in KEYS for name in (metric_name(key, "weight"), metric_name(key, "cv"))}


def step_rewards(step: int) -> dict:
    """{key: (16,)} for 4 prompts of GROUP_SIZE rollouts, a different draw each step."""
    generator = torch.Generator().manual_seed(100 + step)
    return {key: torch.randint(0, 3, (16,), generator=generator).double() / 2 for key in KEYS}


def client_states(step: int) -> dict:
    return {"episode": 0, "global_step": step, "total_consumed_prompts": 4 * step, "data_loader_state_dict": {}}


@pytest.fixture
def saw_history(monkeypatch):
    from saw_verl.integrations.openrlhf.advantages import HISTORIES

    monkeypatch.setenv(ENV_VAR, saw_runtime_env("saw_gdpo", KEYS, **HISTORY)["env_vars"][ENV_VAR])
    HISTORIES.clear()
    yield HISTORIES, saw_config("saw_gdpo", KEYS, **HISTORY)
    HISTORIES.clear()


def test_resumed_run_has_the_saved_pool_and_the_weights_of_the_uninterrupted_run(openrlhf, saw_history, tmp_path):
    histories, cfg = saw_history
    trainer = make_trainer(openrlhf, tmp_path, resume=False)
    for step in (1, 2):
        train_step(trainer, step_rewards(step))
    trainer.save_logs_and_checkpoints(2, {}, client_states(2))
    saved = histories.get(cfg).pool.clone()
    uninterrupted = train_step(trainer, step_rewards(3)), histories.get(cfg).pool.clone()

    histories.clear()  # a new trainer process
    resumed = make_trainer(openrlhf, tmp_path, resume=True)
    states = resumed.init_checkpoint_states()
    assert states["global_step"] == 2 and CLIENT_STATE_KEY in states
    restored = histories.get(cfg)
    assert torch.equal(restored.pool, saved) and restored.steps == 2, "the restored pool is the saved one, bit for bit"
    assert train_step(resumed, step_rewards(3)) == uninterrupted[0]
    assert torch.equal(histories.get(cfg).pool, uninterrupted[1])


def test_checkpoint_without_saw_state_resumes_with_a_new_pool_and_a_warning(openrlhf, saw_history, tmp_path,
                                                                            monkeypatch, caplog):
    histories, cfg = saw_history
    trainer = make_trainer(openrlhf, tmp_path, resume=False)
    train_step(trainer, step_rewards(1))
    with monkeypatch.context() as saw_off:  # a run saved by an older saw-verl: plain OpenRLHF client states
        saw_off.delenv(ENV_VAR)
        trainer.save_logs_and_checkpoints(1, {}, client_states(1))

    from saw_verl.integrations.openrlhf.checkpoints import logger

    logger.addHandler(caplog.handler)  # OpenRLHF's loggers do not propagate to the root logger
    try:
        states = make_trainer(openrlhf, tmp_path, resume=True).init_checkpoint_states()
    finally:
        logger.removeHandler(caplog.handler)
    assert states["global_step"] == 1 and CLIENT_STATE_KEY not in states
    checkpoint = os.path.join(tmp_path, "_actor", "global_step1")
    assert f"checkpoint {checkpoint} holds no SAW history" in caplog.text
    assert "resumes with a new history pool" in caplog.text
    assert histories.get(cfg).pool is None


def test_best_checkpoints_carry_the_pool_too_and_a_fresh_run_keeps_its_own(openrlhf, saw_history, tmp_path):
    histories, cfg = saw_history
    trainer = make_trainer(openrlhf, tmp_path, resume=False)
    train_step(trainer, step_rewards(1))
    trainer.save_best_checkpoint({"eval_math_pass1": 0.5}, 1, client_states(1))
    engine = trainer.actor_model_group.actor.actor.model
    _, states = trainer.strategy.load_ckpt(engine, os.path.join(tmp_path, "_actor"), tag="best_global_step1")
    assert states[CLIENT_STATE_KEY] == histories.state_dict()

    pool = histories.get(cfg).pool
    fresh = make_trainer(openrlhf, tmp_path / "elsewhere", resume=False)
    assert fresh.init_checkpoint_states()["global_step"] == 0
    assert histories.get(cfg).pool is pool


CONDITIONS = {"format": ("correct", 1.0)}  # format counts where correct >= 1, else as 0
SCHEDULE = [(0, [1.0, 0.0]), (4, [1.0, 2.0])]  # alpha at step t: [1, t / 2]


class RolloutStandIn:
    """The samples generator and prompt loader of PPOTrainer: yields one step's prebuilt rollouts (Experience
    micro-batches, as the models' forward passes would leave them) per call, for `steps` steps."""

    def __init__(self, steps):
        self.steps, self.served = list(steps), 0

    def generate_samples(self, **kwargs):
        step = self.steps[self.served]
        self.served += 1
        batches = make_micro_batches(step_rewards(step), torch.Generator().manual_seed(step))
        for batch in batches:
            batch.sequences = torch.zeros(batch.action_mask.shape, dtype=torch.long)
            batch.response_length = batch.action_mask.sum(dim=1).float()
            batch.truncated = torch.zeros(len(batch.index), dtype=torch.bool)
            batch.info["reward"] = batch.rewards.clone()
        return batches, 1.0, 4, self.served == len(self.steps)

    def __len__(self):
        return len(self.steps)

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state):
        pass


def fit(openrlhf, ckpt_path, resume: bool, steps) -> list:
    """The real PPOTrainer.fit over `steps` steps' rollouts (stand-ins: module docstring), saving a checkpoint every
    step; returns, per step, the info of the experiences the actor was handed to train on."""
    trainer = make_trainer(openrlhf, ckpt_path, resume, openrlhf.trainer.PPOTrainer.__ray_actor_class__)
    trainer.args.train.num_episodes = 1
    trainer.args.algo.dynamic_filtering_enable = False
    trainer.args.eval = SimpleNamespace(steps=float("inf"))
    trainer.samples_generator = trainer.prompts_dataloader = RolloutStandIn(steps)
    trainer.generate_kwargs, trainer.eval_dataloader = {}, None
    trainer.tokenizer = SimpleNamespace(decode=lambda ids, **kwargs: ["a completion"])
    trainer.experience_maker.split_rollout_samples = lambda samples: samples
    trainer.experience_maker.make_experience = lambda samples: samples  # the models' forward passes
    trainer.broadcast_to_vllm = lambda: None
    trained = []

    def append(method_name, experience):  # the actor group's "append": what the actor trains on and logs
        trained.append({name: torch.cat([e.info[name] for e in experience]) for name in experience[0].info})
        return []

    trainer.actor_model_group.async_run_method_batch = append
    trainer.ppo_train = lambda global_steps: {}
    trainer.fit()
    return trained


def test_schedule_and_conditions_over_two_steps_and_a_resume(openrlhf, tmp_path, monkeypatch):
    env = saw_runtime_env("saw_gdpo", KEYS, conditions=CONDITIONS, weight_schedule=SCHEDULE)
    monkeypatch.setenv(ENV_VAR, env["env_vars"][ENV_VAR])
    steps = fit(openrlhf, tmp_path, resume=False, steps=[0, 1])
    steps += fit(openrlhf, tmp_path, resume=True, steps=[2])  # fit resumes at the checkpoint's global_step 2
    assert len(steps) == 3
    for t, info in enumerate(steps):
        rewards = step_rewards(t)
        gated = rewards["correct"] < 1.0
        for key, alpha in zip(KEYS, (1.0, (t + 1) / 2)):  # read at the logged step, t + 1
            assert torch.equal(info[f"saw/{key}/alpha"], torch.full((16,), alpha))
        assert torch.equal(info["saw/format/gated_fraction"], torch.full((16,), gated.double().mean().item()))
        assert "saw/correct/gated_fraction" not in info
        format_mean = torch.where(gated, 0.0, rewards["format"]).mean().item()  # SAW's statistics: conditioned
        assert info["saw/format/mean"][0].item() == pytest.approx(format_mean, rel=1e-6)
