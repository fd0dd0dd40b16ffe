"""The REAL OpenRLHF compute_advantages_and_returns, wrapped by SAW's setup hook, against the float64 reference.

Shuffled micro-batches of real Experiences (as dynamic batching builds them), both estimators, both
presets, dynamic on and off; then every bad input the wrapper must refuse before writing anything.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs these tests")

from openrlhf_standins import import_experience_maker, make_args, make_maker, make_micro_batches, openrlhf_importable
from spec_cases import EXAMPLE_ADVANTAGES, EXAMPLE_KEYS, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, assert_close, scaled_tolerance

from saw_verl import SawInputError, metric_name
from saw_verl.integrations.openrlhf import hook, saw_runtime_env
from saw_verl.integrations.openrlhf.options import ENV_VAR, saw_config
from saw_verl.reference import reference_saw_advantages
from saw_verl.reference_rivals import reference_corr_grpo, reference_gdpo, reference_mo_grpo
from saw_verl.weights import STATISTICS


@pytest.fixture(scope="module")
def experience_maker():
    with openrlhf_importable():
        module = import_experience_maker()
        hook.setup()  # the module is imported already: patches at once
        yield module


def enable_saw(monkeypatch, estimator, keys, **options):
    monkeypatch.setenv(ENV_VAR, saw_runtime_env(estimator, keys, **options)["env_vars"][ENV_VAR])


def random_rewards(generator, num_groups, group_size, keys):
    """{key: (N,) float64}: dyadic values (ties, constant groups), one key constant over the batch, one group 4.2."""
    grid = torch.tensor([-3.0, -1.5, 0.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    n = num_groups * group_size
    rewards = {key: grid[torch.randint(0, len(grid), (n,), generator=generator)] for key in keys}
    rewards[keys[-1]][:] = 1.0  # a learned dimension: weight 0
    rewards[keys[0]][:group_size] = 4.2  # group 0 constant on every key, with an inexact float32 mean
    rewards[keys[1]][:group_size] = 0.5
    return rewards


def run_and_compare(experience_maker, rewards, group_size, cfg, generator, clip_range=(-10.0, 10.0), past=()):
    """Run the wrapped real method; compare advantages, returns and metrics with the reference (prompt order).
    past: the earlier steps' reward matrices of a run with a history (reference_weights)."""
    batches = make_micro_batches(rewards, generator)
    maker = make_maker(experience_maker, make_args(group_size, clip_range=clip_range))
    out = maker.compute_advantages_and_returns(batches)
    matrix = torch.stack([rewards[key] for key in cfg.reward_keys], dim=1).float().double()  # info holds float32
    n = matrix.shape[0]
    expected = reference_saw_advantages(matrix, torch.arange(n) // group_size, torch.ones(n, 1), cfg, past=past)
    value = expected.advantages[:, 0].double()
    tolerance = scaled_tolerance(value, 2e-6)
    for batch, experience in enumerate(out):
        rows = torch.tensor(experience.index)
        mask = experience.action_mask.double()
        assert_close(experience.advantages * mask, value[rows, None] * mask, tolerance, f"advantages, micro-batch {batch}")
        assert_close(experience.returns * mask, value[rows, None] * mask, tolerance, f"returns, micro-batch {batch}")
        for k, key in enumerate(cfg.reward_keys):
            for statistic, column in zip(STATISTICS, (expected.weights, expected.cv, expected.mean, expected.std)):
                metric = experience.info[metric_name(key, statistic)]
                assert metric.shape == rows.shape, f"{metric_name(key, statistic)} must be (B,) for dynamic batching"
                assert_close(metric, column[k].expand(len(rows)), 1e-5, metric_name(key, statistic))
    return out, value, matrix


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo"])
@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_real_openrlhf_equals_reference(experience_maker, monkeypatch, estimator, preset, dynamic, seed):
    generator = torch.Generator().manual_seed(seed)
    keys = ("correct", "format", "length")
    num_groups, group_size = 3 + seed, 4
    options = dict(reward_min=(-3.0, 0.0, 0.0), reward_weights=(1.0, 0.5, 2.0), preset=preset, dynamic=dynamic)
    enable_saw(monkeypatch, estimator, keys, **options)
    rewards = random_rewards(generator, num_groups, group_size, keys)
    out, _, _ = run_and_compare(experience_maker, rewards, group_size, saw_config(estimator, keys, **options), generator)
    if estimator == "saw_grpo":  # group 0 scores the same on every key: 0 exactly (group_norm: float32 noise / 1e-9)
        for experience in out:
            for i, row in enumerate(experience.index):
                if row < group_size:
                    assert torch.all(experience.advantages[i] == 0), f"row {row} of a constant group"


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_spec_worked_example(experience_maker, monkeypatch, mode):
    """The numbers of docs/spec.md's worked example (one-token responses: rollout and token whitening agree) through the real method."""
    enable_saw(monkeypatch, f"saw_{mode}", EXAMPLE_KEYS, reward_min=EXAMPLE_REWARD_MIN)
    rewards = {key: EXAMPLE_REWARDS[:, k] for k, key in enumerate(EXAMPLE_KEYS)}
    batches = make_micro_batches(rewards, torch.Generator().manual_seed(3), max_response=1)
    out = make_maker(experience_maker, make_args(4)).compute_advantages_and_returns(batches)
    got = torch.empty(8, dtype=torch.float64)
    for experience in out:
        got[torch.tensor(experience.index)] = experience.advantages[experience.action_mask].double()
    assert_close(got, torch.tensor(EXAMPLE_ADVANTAGES[(mode, True)]), 1e-5, f"saw_{mode} worked example")


def test_without_saw_env_the_original_runs_untouched(experience_maker, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    method = experience_maker.RemoteExperienceMaker.compute_advantages_and_returns
    assert method.saw_verl_wrapped and hook.setup() is None  # a second setup does not wrap twice
    assert experience_maker.RemoteExperienceMaker.compute_advantages_and_returns is method
    rewards = random_rewards(torch.Generator().manual_seed(5), 3, 4, ("a", "b"))
    maker = make_maker(experience_maker, make_args(4))
    wrapped = maker.compute_advantages_and_returns(make_micro_batches(rewards, torch.Generator().manual_seed(6)))
    plain = method.__wrapped__(maker, make_micro_batches(rewards, torch.Generator().manual_seed(6)))
    for a, b in zip(wrapped, plain):
        assert torch.equal(a.advantages, b.advantages) and not any(k.startswith("saw/") for k in a.info)


def bad_batches(generator, keys=("a", "b"), num_groups=2, group_size=4):
    return make_micro_batches(random_rewards(generator, num_groups, group_size, keys), generator)


def assert_refused(experience_maker, batches, args, match):
    before = [e.rewards.clone() for e in batches]
    with pytest.raises(SawInputError, match=match):
        make_maker(experience_maker, args).compute_advantages_and_returns(batches)
    assert all(torch.equal(e.rewards, r) for e, r in zip(batches, before)), "nothing may be written before the error"


def test_missing_key_names_it_and_the_micro_batch(experience_maker, monkeypatch):
    enable_saw(monkeypatch, "saw_gdpo", ("a", "b"))
    batches = bad_batches(torch.Generator().manual_seed(7))
    del batches[1].info["b"]
    assert_refused(experience_maker, batches, make_args(4), r"'b' is missing from Experience.info of micro-batch 1.*extra_logs")


def test_key_missing_for_some_samples_is_refused(experience_maker, monkeypatch):
    enable_saw(monkeypatch, "saw_grpo", ("a", "b"))
    batches = bad_batches(torch.Generator().manual_seed(8))
    target = next(i for i, e in enumerate(batches) if len(e.index) > 1)
    batches[target].info["a"] = batches[target].info["a"][:-1]  # what concat_experiences does when a sample lacks it
    assert_refused(experience_maker, batches, make_args(4), rf"'a' has shape .* in micro-batch {target} of")


def test_nan_reward_names_key_and_row(experience_maker, monkeypatch):
    enable_saw(monkeypatch, "saw_grpo", ("a", "b"))
    batches = bad_batches(torch.Generator().manual_seed(9))
    batches[0].info["b"][0] = float("nan")
    row = batches[0].index[0]
    assert_refused(experience_maker, batches, make_args(4), rf"reward 'b' is nan at row {row}")


@pytest.mark.parametrize(
    "args, match",
    [
        (make_args(4, estimator="group_norm"), "pass --algo.advantage.estimator dr_grpo"),
        (make_args(4, overlong_buffer_len=16.0), "--reward.overlong_buffer_len 16.0 would change saw_gdpo"),
        (make_args(4, stop_properly_penalty_coef=0.5), "--reward.stop_properly_penalty_coef"),
        (make_args(4, clip_range=(-2.0, 2.0)), r"--reward.clip_range -2 2 can clip saw_gdpo.*N=8"),
        (make_args(1), "n_samples_per_prompt >= 2"),
        (make_args(3), "got 8 samples, n_samples_per_prompt=3"),
    ],
    ids=["not-dr_grpo", "overlong", "stop-properly", "clip", "n=1", "ragged-groups"],
)
def test_bad_options_are_refused(experience_maker, monkeypatch, args, match):
    enable_saw(monkeypatch, "saw_gdpo", ("a", "b"))
    assert_refused(experience_maker, bad_batches(torch.Generator().manual_seed(10)), args, match)


def test_clip_range_that_cannot_clip_is_accepted(experience_maker, monkeypatch):
    """Whitened over N rollouts |A| < sqrt(N): the default +-10 is safe up to N = 100, and saw_grpo keeps it."""
    generator = torch.Generator().manual_seed(11)
    enable_saw(monkeypatch, "saw_gdpo", ("a", "b"))
    rewards = random_rewards(generator, 2, 4, ("a", "b"))
    run_and_compare(experience_maker, rewards, 4, saw_config("saw_gdpo", ("a", "b")), generator, clip_range=(-3.0, 3.0))


def test_corrupt_env_var_is_refused(experience_maker, monkeypatch):
    monkeypatch.setenv(ENV_VAR, '{"estimator": "saw_gdpo"}')
    assert_refused(experience_maker, bad_batches(torch.Generator().manual_seed(12)), make_args(4), ENV_VAR)


def test_saw_grpo_without_dynamic_weights_is_openrlhf_group_norm(experience_maker, monkeypatch):
    """dynamic=false, alpha = 1: OpenRLHF's own group_norm of the summed reward, up to the epsilons (1e-6 vs 1e-9)."""
    generator = torch.Generator().manual_seed(13)
    rewards = {key: torch.randn(12, generator=generator, dtype=torch.float64) for key in ("a", "b")}
    summed = (rewards["a"].float() + rewards["b"].float()).double()
    plain = make_micro_batches({"total": summed}, torch.Generator().manual_seed(14))
    for experience in plain:
        experience.rewards = experience.info["total"].clone()
    method = experience_maker.RemoteExperienceMaker.compute_advantages_and_returns
    group_norm = method.__wrapped__(make_maker(experience_maker, make_args(4, estimator="group_norm")), plain)
    enable_saw(monkeypatch, "saw_grpo", ("a", "b"), dynamic=False)
    saw = make_maker(experience_maker, make_args(4)).compute_advantages_and_returns(
        make_micro_batches(rewards, torch.Generator().manual_seed(14))
    )
    for batch, (ours, theirs) in enumerate(zip(saw, group_norm)):
        assert ours.index == theirs.index
        mask = ours.action_mask
        assert_close(ours.advantages * mask, theirs.advantages * mask, 2e-5, f"micro-batch {batch}")


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo"])
def test_history_carries_across_training_steps(experience_maker, monkeypatch, estimator):
    """--saw.history_decay: the process's pool carries each step into the next (docs/spec.md, "History")."""
    from saw_verl.integrations.openrlhf.advantages import HISTORIES

    HISTORIES.clear()
    generator = torch.Generator().manual_seed(15)
    keys = ("correct", "format", "length")
    options = dict(reward_min=(-3.0, 0.0, 0.0), history_decay=0.5)
    enable_saw(monkeypatch, estimator, keys, **options)
    cfg, past = saw_config(estimator, keys, **options), []
    for _ in range(3):
        rewards = random_rewards(generator, 3, 4, keys)
        out, _, matrix = run_and_compare(experience_maker, rewards, 4, cfg, generator, past=past)
        past.append(matrix)
    assert {metric_name(key, "batch_cv") for key in keys} <= set(out[0].info)
    HISTORIES.clear()


RIVAL_REFERENCES = {"gdpo": reference_gdpo, "mo_grpo": reference_mo_grpo, "corr_grpo": reference_corr_grpo}


@pytest.mark.parametrize("estimator", sorted(RIVAL_REFERENCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_rivals_through_real_openrlhf_equal_their_reference(experience_maker, monkeypatch, estimator, seed):
    """Each rival OpenRLHF hosts (one value per rollout: gdpo whitens over rollouts) against its float64 reference,
    with its per-key metrics in Experience.info."""
    generator = torch.Generator().manual_seed(seed)
    keys, weights, group_size = ("correct", "format", "length"), (1.0, 0.5, 2.0), 4
    enable_saw(monkeypatch, estimator, keys, reward_weights=weights)
    rewards = random_rewards(generator, 3 + seed, group_size, keys)
    maker = make_maker(experience_maker, make_args(group_size, clip_range=(-1e9, 1e9)))
    out = maker.compute_advantages_and_returns(make_micro_batches(rewards, generator))
    matrix = torch.stack([rewards[key] for key in keys], dim=1).float().double()
    n = matrix.shape[0]
    expected = RIVAL_REFERENCES[estimator](matrix, torch.arange(n) // group_size, torch.ones(n, 1), weights)[:, 0]
    for batch, experience in enumerate(out):
        rows = torch.tensor(experience.index)
        mask = experience.action_mask.double()
        assert_close(experience.advantages * mask, expected[rows, None] * mask, scaled_tolerance(expected, 2e-6),
                     f"{estimator} advantages, micro-batch {batch}")
        assert_close(experience.info[f"{estimator}/format/weight"], torch.full((len(rows),), 0.5), 1e-6, "weight")
        assert experience.info[f"{estimator}/length/mean"].shape == rows.shape


def test_rival_clip_range_that_clips_is_refused(experience_maker, monkeypatch):
    enable_saw(monkeypatch, "mo_grpo", ("a", "b"))
    batches = bad_batches(torch.Generator().manual_seed(15))
    assert_refused(experience_maker, batches, make_args(4, clip_range=(-0.1, 0.1)),
                   r"--reward.clip_range -0.1 0.1 clips mo_grpo's advantages")


@pytest.mark.parametrize("estimator", ["saw_grpo", "mo_grpo"])
def test_conditions_and_schedule_at_the_trainer_step_equal_hand_gated_static_weights(experience_maker, monkeypatch,
                                                                                     estimator):
    """--saw.conditions and --saw.weight_schedule at the step train_step hands the experience maker: the advantages
    of the hand-gated rewards with the schedule's weights at that step (the fit test in test_openrlhf_checkpoints.py
    runs train_step itself)."""
    from saw_verl.integrations.openrlhf.advantages import STEP_ATTRIBUTE
    from saw_verl.registry import compute_advantages

    generator = torch.Generator().manual_seed(3)
    keys, group_size = ("correct", "format", "length"), 4
    enable_saw(monkeypatch, estimator, keys, conditions={"length": ("format", 0.5, -1.0)},
               weight_schedule={0: [1.0, 1.0, 0.0], 10: [1.0, 0.0, 2.0]})
    rewards = random_rewards(generator, 3, group_size, keys)
    maker = make_maker(experience_maker, make_args(group_size, clip_range=(-1e9, 1e9)))
    with pytest.raises(SawInputError, match=r"--saw.weight_schedule needs OpenRLHF's global step"):
        maker.compute_advantages_and_returns(make_micro_batches(rewards, generator))
    setattr(maker, STEP_ATTRIBUTE, 4)
    out = maker.compute_advantages_and_returns(make_micro_batches(rewards, generator))
    matrix = torch.stack([rewards[key] for key in keys], dim=1).float().double()
    gated = matrix[:, 1] < 0.5
    matrix[gated, 2] = -1.0
    n, alpha = matrix.shape[0], [1.0, 0.6, 0.8]
    expected = compute_advantages(estimator, matrix, torch.arange(n) // group_size, torch.ones(n, 1),
                                  reward_keys=keys, reward_weights=alpha)
    for experience in out:
        rows = torch.tensor(experience.index)
        mask = experience.action_mask.double()
        assert_close(experience.advantages * mask, expected.advantages[rows, 0:1].double() * mask, 2e-5, estimator)
        for key, value in zip(keys, alpha):
            assert_close(experience.info[f"saw/{key}/alpha"], torch.full((len(rows),), value), 1e-7, "alpha")
        fraction = torch.full((len(rows),), gated.double().mean().item())
        assert_close(experience.info["saw/length/gated_fraction"], fraction, 1e-7, "gated_fraction")
