"""Conditions and weight schedules in verl (`algorithm.saw.conditions`, `algorithm.saw.weight_schedule`): every
registry estimator through verl's real `compute_advantage` equals the tensor API on hand-gated rewards with the
schedule's weights; the step is verl's (forwarded by the v1 trainer, or the `global_steps` of the trainer that
loaded its checkpoint, a resumed one included); bad options fail in the driver's check, naming them. The real
runs (2 steps, resume) are in tests/test_e2e_cpu.py, the command-line syntax in tests/test_doc_snippets.py."""

from __future__ import annotations

import types

import pytest
import torch
from omegaconf import OmegaConf

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl import SawInputError, compute_advantages
from saw_verl.integrations.verl import estimators, metrics, steps
from saw_verl.integrations.verl.config import estimator_config_from_algorithm, validate_run
from saw_verl.integrations.verl.estimators import REGISTRY_BY_VERL_NAME
from saw_verl.registry import REGISTRY
from spec_cases import EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARDS
from test_integration_v1 import V1_GROUPS, V1_LENGTHS, V1_REWARDS, padded_mask, run_v1
from test_verl_checkpoints import make_trainer
from verl_batches import algorithm_config, example_batch
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.v1 import trainer_base

VERL_NAMES = [entry.verl_name for entry in REGISTRY.values()]
# format counts where correctness >= 1, else as -1; its weight goes from 0 at step 0 to 1 at step 100
CONDITIONS = {"format": ["correctness", 1.0, -1.0]}
SCHEDULE = {0: [1.0, 0.0], 100: [1.0, 1.0]}


def scheduled_alpha(step: float) -> list[float]:
    """SCHEDULE by hand: format's weight rises linearly from 0 (step 0) to 1 (step 100), flat after."""
    return [1.0, min(step, 100) / 100]


def hand_gated(rewards: torch.Tensor) -> tuple[torch.Tensor, float]:
    """rewards (N, 2) of EXAMPLE_KEYS -> (format replaced by -1 where correctness < 1, the share replaced)."""
    off = rewards[:, 0] < 1.0
    gated = rewards.clone()
    gated[off, 1] = -1.0
    return gated, off.double().mean().item()


def shaped_config(estimator: str, **extra):
    return algorithm_config(estimator, EXAMPLE_KEYS, conditions=CONDITIONS, weight_schedule=SCHEDULE, **extra)


def expected_advantages(estimator: str, rewards, groups, mask, step) -> torch.Tensor:
    """The tensor API on hand-gated rewards with the schedule's weights at `step` as static weights."""
    return compute_advantages(REGISTRY_BY_VERL_NAME[estimator].name, hand_gated(rewards)[0], groups, mask,
                              reward_keys=EXAMPLE_KEYS, reward_weights=scheduled_alpha(step)).advantages


def check_shaping_metrics(published: dict, step, gated_fraction: float) -> None:
    for key, alpha in zip(EXAMPLE_KEYS, scheduled_alpha(step)):
        assert published[f"saw/{key}/alpha"] == pytest.approx(alpha), key
    assert published["saw/format/gated_fraction"] == pytest.approx(gated_fraction)
    assert "saw/correctness/gated_fraction" not in published, "correctness has no condition"


@pytest.fixture(autouse=True)
def no_trainer():
    """No trainer recorded from another test; no metrics left pending."""
    steps.detach()
    metrics.take()
    yield
    steps.detach()


@pytest.mark.parametrize("step", [0, 30, 250])
@pytest.mark.parametrize("estimator", VERL_NAMES)
def test_every_estimator_at_the_step_equals_hand_gated_rewards_with_the_scheduled_weights(estimator, step):
    with estimators.forwarded(step=step):
        data = ray_trainer.compute_advantage(example_batch(), estimator, config=shaped_config(estimator))
    expected = expected_advantages(estimator, EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, step)
    torch.testing.assert_close(data.batch["advantages"], expected, atol=1e-5, rtol=0)
    check_shaping_metrics(metrics.take(), step, hand_gated(EXAMPLE_REWARDS)[1])


def test_a_list_of_step_weight_pairs_is_the_same_schedule():
    pairs = [[step, weights] for step, weights in SCHEDULE.items()]
    for estimator in ("saw_gdpo", "gd2po"):
        entry = REGISTRY_BY_VERL_NAME[estimator]
        as_pairs = algorithm_config(estimator, EXAMPLE_KEYS, conditions=CONDITIONS, weight_schedule=pairs)
        cfg, _ = estimator_config_from_algorithm(as_pairs, entry)
        assert cfg == estimator_config_from_algorithm(shaped_config(estimator), entry)[0]
        assert cfg.at_step(30).static_weights == pytest.approx(scheduled_alpha(30))


@pytest.mark.parametrize("kind", ["legacy", "v1"])
def test_the_step_is_that_of_the_trainer_that_loaded_its_checkpoint(kind, tmp_path):
    """verl's legacy trainer hands compute_advantage no step: the trainer recorded by _load_checkpoint gives it."""
    trainer = make_trainer(kind, tmp_path, decay=0.0)
    trainer._load_checkpoint()  # nothing saved: a run from scratch
    for step in (1, 60):
        trainer.global_steps = step
        data = ray_trainer.compute_advantage(example_batch(), "mo_grpo", config=shaped_config("mo_grpo"))
        expected = expected_advantages("mo_grpo", EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, step)
        torch.testing.assert_close(data.batch["advantages"], expected, atol=1e-5, rtol=0)
        check_shaping_metrics(metrics.take(), step, hand_gated(EXAMPLE_REWARDS)[1])


@pytest.mark.parametrize("kind", ["legacy", "v1"])
def test_a_resumed_trainer_goes_on_with_the_schedule(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saving = make_trainer(kind, "checkpoints", decay=0.0)
    saving.global_steps = 40
    saving._save_checkpoint()
    resuming = make_trainer(kind, "checkpoints", decay=0.0)
    resuming._load_checkpoint()
    assert resuming.global_steps == 40
    resuming.global_steps += 1  # what fit() does before its first step
    ray_trainer.compute_advantage(example_batch(), "saw_gdpo", config=shaped_config("saw_gdpo"))
    assert metrics.take()["saw/format/alpha"] == pytest.approx(scheduled_alpha(41)[1])


def test_the_v1_trainer_forwards_its_step(monkeypatch, tmp_path):
    """v1's _compute_advantage(self, ...) forwards self.global_steps, which wins over a recorded trainer's."""
    recorded = make_trainer("v1", tmp_path, decay=0.0)
    recorded._load_checkpoint()
    recorded.global_steps = 90

    def compute_advantage(trainer, batch, step_metrics):
        at_step_30 = types.SimpleNamespace(config=trainer.config, global_steps=30)
        return trainer_base.PPOTrainer._compute_advantage(at_step_30, batch, step_metrics)

    tq, step_metrics = run_v1("corr_grpo", compute_advantage, monkeypatch, conditions=CONDITIONS,
                              weight_schedule=SCHEDULE)
    groups = [int(uid.removeprefix("p")) for uid in V1_GROUPS]
    expected = expected_advantages("corr_grpo", V1_REWARDS, groups, padded_mask(V1_LENGTHS), 30)
    torch.testing.assert_close(tq.written["advantages"].to_padded_tensor(0.0), expected, atol=1e-5, rtol=0)
    check_shaping_metrics(step_metrics, 30, hand_gated(V1_REWARDS)[1])


def test_a_schedule_without_a_step_names_the_option():
    with pytest.raises(SawInputError, match=r"algorithm\.saw\.weight_schedule needs the training step"):
        ray_trainer.compute_advantage(example_batch(), "saw_grpo", config=shaped_config("saw_grpo"))


def test_conditions_alone_need_no_step():
    config = algorithm_config("saw_verl_gdpo", EXAMPLE_KEYS, conditions=CONDITIONS)
    ray_trainer.compute_advantage(example_batch(), "saw_verl_gdpo", config=config)
    assert metrics.take()["saw/format/alpha"] == 1.0


BAD_OPTIONS = {
    "unknown-key": ({"conditions": {"fromat": ["correctness", 1.0]}}, r"algorithm\.saw\.conditions: unknown reward"),
    "unknown-condition-key": ({"conditions": {"format": ["correct", 1.0]}}, r"algorithm\.saw\.conditions\['format'\]"),
    "gated-on-itself": ({"conditions": {"format": ["format", 1.0]}}, "cannot be gated on itself"),
    "loop": ({"conditions": {"format": ["correctness", 1.0], "correctness": ["format", 0.5]}},
             r"algorithm\.saw\.conditions: the conditions loop"),
    "threshold-nan": ({"conditions": {"format": ["correctness", float("nan")]}}, "threshold must be a finite"),
    "not-a-pair": ({"conditions": {"format": "correctness"}}, r"algorithm\.saw\.conditions\['format'\] must be"),
    "schedule-length": ({"weight_schedule": {0: [1.0]}}, r"algorithm\.saw\.weight_schedule: the weights at step 0"),
    "schedule-unsorted": ({"weight_schedule": [[10, [1, 1]], [5, [1, 0]]]}, "not in increasing order"),
    "schedule-repeated": ({"weight_schedule": [[5, [1, 1]], [5, [1, 0]]]}, "step 5 is repeated"),
    "schedule-negative": ({"weight_schedule": {0: [1.0, -0.5]}}, r"weight_schedule: weight of 'format' at step 0 is"),
    "schedule-string-step": ({"weight_schedule": {"ten": [1.0, 1.0]}}, r"step 'ten' is not an integer"),
    "schedule-empty": ({"weight_schedule": {}}, r"algorithm\.saw\.weight_schedule has no points"),
}


@pytest.mark.parametrize("estimator", ["saw_gdpo", "gd2po"])
@pytest.mark.parametrize("options, message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_fail_the_drivers_check(estimator, options, message):
    config = OmegaConf.create({"algorithm": algorithm_config(estimator, EXAMPLE_KEYS, **options),
                               "actor_rollout_ref": {"rollout": {"n": 4}}})
    with pytest.raises(SawInputError, match=message):
        validate_run(config, REGISTRY_BY_VERL_NAME[estimator])


@pytest.mark.parametrize("estimator", ["saw_grpo", "mo_grpo"])
def test_a_schedule_and_static_weights_are_refused_naming_both(estimator):
    config = OmegaConf.create({"algorithm": algorithm_config(estimator, EXAMPLE_KEYS, [1.0, 2.0],
                                                             weight_schedule=SCHEDULE),
                               "actor_rollout_ref": {"rollout": {"n": 4}}})
    with pytest.raises(SawInputError, match=r"give algorithm\.gdpo_reward_weights or algorithm\.saw\.weight_schedule"):
        validate_run(config, REGISTRY_BY_VERL_NAME[estimator])
