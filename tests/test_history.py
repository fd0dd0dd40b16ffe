"""SAW statistics over a decayed pool of past steps (docs/spec.md, "History"): the worked example, the torch path
against the float64 reference on random sequences of batches, bit-identity at decay 0, and SawHistory's state."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from saw_verl import SawConfig, SawHistory, SawInputError, saw_advantages, saw_gdpo_advantages, step_metrics
from saw_verl.history import RunHistories
from saw_verl.reference import reference_saw_advantages, reference_weights
from saw_verl.weights import batch_weights, empty_pool
from spec_cases import (
    HISTORY_DECAY, HISTORY_DECAYS, HISTORY_EXPECTED, HISTORY_KEYS, HISTORY_STEPS, assert_close, history_step_config,
    history_steps, scaled_tolerance,
)

STATISTICS = ("weights", "cv", "mean", "std", "batch_cv")


def history_config(decay, mode="gdpo", **options):
    return SawConfig(HISTORY_KEYS, mode=mode, history_decay=decay, **options)


@pytest.mark.parametrize("impl", ["reference", "torch"])
def test_worked_example_three_steps(impl):
    cfg = history_config(HISTORY_DECAY)
    history, mask, groups = SawHistory(), torch.ones(4, 1), torch.tensor([0, 0, 1, 1])
    for step, (rewards, expected) in enumerate(zip(HISTORY_STEPS, HISTORY_EXPECTED)):
        if impl == "reference":
            result = reference_saw_advantages(rewards, groups, mask, cfg, past=HISTORY_STEPS[:step])
        else:
            result = saw_advantages(rewards, groups, mask, cfg, history=history)
            weight, mean, m2 = history.pool[:3]
            assert_close(weight, expected["W"], 1e-12, f"step {step + 1} pool weight")
            assert_close(mean, expected["pool_mean"], 1e-6, f"step {step + 1} pool mean")
            assert_close((m2 / (weight - 1)).sqrt(), expected["pool_std"], 1e-6, f"step {step + 1} pool std")
        for field in ("cv", "weights", "batch_cv"):
            assert_close(getattr(result, field), expected[field], 1e-6, f"step {step + 1} {field}")
        alone = reference_saw_advantages(rewards, groups, mask, history_config(0.0))
        assert_close(alone.weights, expected["batch_weights"], 1e-6, f"step {step + 1} weights of the batch alone")
        assert_close(result.mean, alone.mean, 1e-12, f"step {step + 1} mean: this batch's")
        assert_close(result.std, alone.std, 1e-12, f"step {step + 1} std: this batch's")


@pytest.mark.parametrize("decay", HISTORY_DECAYS)
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_path_equals_reference_over_a_sequence_of_steps(decay, mode, preset, seed):
    cfg = history_step_config(mode, preset, decay)
    history, past = SawHistory(), []
    for step, (rewards, groups, mask) in enumerate(history_steps(seed)):
        actual = saw_advantages(rewards, groups, mask, cfg, history=history)
        expected = reference_saw_advantages(rewards, groups, mask, cfg, past=past)
        past.append(rewards)
        for field in STATISTICS:
            want = getattr(expected, field)
            assert_close(getattr(actual, field).nan_to_num(7.0), want.nan_to_num(7.0), scaled_tolerance(want, 1e-9),
                         f"step {step} {field}")
        assert_close(actual.advantages, expected.advantages, scaled_tolerance(expected.advantages, 1e-5),
                     f"step {step} advantages")
        if step < 4:  # one value (0.1) since the pool started: exactly 0, never rounding noise
            assert actual.cv[1].item() == 0.0 and actual.weights[1].item() == 0.0
    assert history.steps == len(past)


@pytest.mark.parametrize("decay", HISTORY_DECAYS)
def test_unscored_steps_keep_the_decayed_pool(decay):
    """NaN = not scored (TRL): a key no rollout scored this step keeps its decayed pool and its weight from it."""
    cfg = SawConfig(("a", "b"), mode="gdpo", history_decay=decay)
    generator = torch.Generator().manual_seed(3)
    steps = [torch.rand(16, 2, generator=generator, dtype=torch.float64) for _ in range(6)]
    for step in (1, 2, 4):
        steps[step][:, 1] = float("nan")  # key b unscored
    steps[4][:15, 0] = float("nan")  # key a scored once
    pool = empty_pool(2)
    for step, rewards in enumerate(steps):
        stats = batch_weights(rewards, cfg, pool)
        pool = stats.pool
        expected = reference_weights(rewards, cfg, past=steps[:step])
        for field, want in zip(("weights", "cv", "mean", "std"), expected):
            want = torch.tensor(want, dtype=torch.float64)
            assert_close(getattr(stats, field).nan_to_num(7.0), want.nan_to_num(7.0), 1e-9, f"step {step} {field}")
    if decay == 0:  # nothing carried over: b unscored at step 4 has mean NaN and weight 0, as without a history
        assert stats.weights[1].item() != 0.0  # step 5 scored b again
        assert torch.isnan(batch_weights(steps[4], cfg, empty_pool(2)).mean[1])


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_decay_zero_with_a_history_is_bit_identical_to_none(mode):
    cfg = history_step_config(mode, "paper", 0.0)
    history = SawHistory()
    for rewards, groups, mask in history_steps(5):
        plain = saw_advantages(rewards, groups, mask, cfg)
        kept = saw_advantages(rewards, groups, mask, cfg, history=history)
        for field in ("advantages", "weights", "cv", "std"):
            assert torch.equal(getattr(plain, field), getattr(kept, field)), field
        assert torch.equal(plain.mean.nan_to_num(7.0), kept.mean.nan_to_num(7.0))
        assert plain.pool is None and kept.pool is not None
    assert history.steps == 7


def test_history_is_bound_to_its_keys_and_untouched_by_a_failed_step():
    cfg, history = history_config(0.9), SawHistory()
    rewards, groups, mask = HISTORY_STEPS[1], torch.tensor([0, 0, 1, 1]), torch.ones(4, 2)
    saw_advantages(rewards, groups, mask, cfg, history=history)
    before = history.pool.clone()
    bad = rewards.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(SawInputError, match=r"reward 'correct' is nan at row 2"):
        saw_advantages(bad, groups, mask, cfg, history=history)
    assert history.steps == 1 and torch.equal(history.pool, before)
    with pytest.raises(SawInputError, match=r"this SawHistory holds reward keys \['format', 'correct'\], but the "
                                            r"step has reward keys \['format', 'length'\]"):
        saw_advantages(rewards, groups, mask, SawConfig(("format", "length"), history_decay=0.9), history=history)


@pytest.mark.parametrize("change,named", [
    ({"mode": "grpo"}, r"mode 'gdpo', but the step has mode 'grpo'"),
    ({"history_decay": 0.5}, r"history_decay 0.9, but the step has history_decay 0.5"),
])
def test_a_history_reused_with_another_mode_or_decay_is_refused_naming_it(change, named):
    """A SawHistory holds one run's steps: another estimator or decay would mix pools of different weightings."""
    cfg, history = history_config(0.9), SawHistory()
    rewards, groups, mask = HISTORY_STEPS[1], torch.tensor([0, 0, 1, 1]), torch.ones(4, 2)
    saw_advantages(rewards, groups, mask, cfg, history=history)
    other = dataclasses.replace(cfg, **change)
    with pytest.raises(SawInputError, match=rf"this SawHistory holds {named}: use one SawHistory per run"):
        saw_advantages(rewards, groups, mask, other, history=history)
    resumed = SawHistory()
    resumed.load_state_dict(json.loads(json.dumps(history.state_dict())))
    with pytest.raises(SawInputError, match=named):
        saw_advantages(rewards, groups, mask, other, history=resumed)


def test_state_dict_resumes_the_run_exactly():
    """A run stopped after 3 steps and resumed from its JSON state gives the same results as one uninterrupted."""
    cfg = history_step_config("gdpo", "paper", 0.9)
    steps = history_steps(7)
    whole, first = SawHistory(), SawHistory()
    expected = [saw_advantages(*step, cfg, history=whole) for step in steps]
    for step in steps[:3]:
        saw_advantages(*step, cfg, history=first)
    resumed = SawHistory()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for step, want in zip(steps[3:], expected[3:]):
        got = saw_advantages(*step, cfg, history=resumed)
        assert torch.equal(got.advantages, want.advantages) and torch.equal(got.weights, want.weights)
    assert resumed.steps == whole.steps and torch.equal(resumed.pool, whole.pool)
    with pytest.raises(SawInputError, match="not a SawHistory state"):
        SawHistory().load_state_dict({"pool": []})
    with pytest.raises(SawInputError, match=r"pool of shape \(5, 3\) for reward keys \['a'\]"):
        SawHistory().load_state_dict({"reward_keys": ["a"], "pool": whole.pool.tolist(), "steps": 1})


def test_batch_cv_is_logged_with_a_history_only():
    rewards, groups, mask = HISTORY_STEPS[1], torch.tensor([0, 0, 1, 1]), torch.ones(4, 1)
    plain = step_metrics(HISTORY_KEYS, saw_gdpo_advantages(rewards, groups, mask, reward_keys=HISTORY_KEYS))
    pooled = step_metrics(HISTORY_KEYS, saw_gdpo_advantages(rewards, groups, mask, reward_keys=HISTORY_KEYS,
                                                             history_decay=0.5, history=SawHistory()))
    assert "saw/correct/batch_cv" not in plain
    assert set(pooled) == set(plain) | {"saw/format/batch_cv", "saw/correct/batch_cv"}
    assert pooled["saw/correct/batch_cv"] == pytest.approx(2.0) == pooled["saw/correct/cv"]  # first step: the batch


def test_run_histories_resume_every_pool_from_a_checkpoint_state():
    """RunHistories (verl, OpenRLHF): state_dict() through JSON restores each estimator's pool bit for bit; a
    checkpoint with no pool for the run's estimator and keys gives a new pool and a warning naming it."""
    histories = RunHistories()
    configs = [history_step_config(mode, "paper", 0.5) for mode in ("grpo", "gdpo")]
    for cfg in configs:
        for rewards, groups, mask in history_steps(0)[:2]:
            saw_advantages(rewards, groups, mask, cfg, history=histories.get(cfg))
    state = json.loads(json.dumps(histories.state_dict()))
    resumed = RunHistories()
    assert resumed.resume(state, configs[1], "ckpt/global_step_2") is None
    for cfg in configs:
        assert torch.equal(resumed.get(cfg).pool, histories.get(cfg).pool)
        assert resumed.get(cfg).steps == 2

    other = SawConfig(("x",), history_decay=0.5)
    warning = resumed.resume(state, other, "ckpt/global_step_2")
    keys = list(configs[0].reward_keys)
    assert f"checkpoint ckpt/global_step_2 holds SAW history pools for grpo {keys}; gdpo {keys}, not for gdpo ['x']" \
        in warning
    assert resumed.get(other).pool is None and resumed.get(configs[0]).pool is not None
    warning = resumed.resume(None, configs[0], "ckpt/global_step_2")
    assert warning.startswith("checkpoint ckpt/global_step_2 holds no SAW history: SAW (grpo, history_decay=0.5)")
    assert resumed.get(configs[0]).pool is None and resumed.get(configs[1]).pool is None
    with pytest.raises(SawInputError, match="not a RunHistories state"):
        RunHistories().load_state_dict({"pools": []})
