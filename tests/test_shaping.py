"""Conditions and weight schedules (docs/spec.md, "Conditions and schedules") for every estimator of the registry:
the worked example, the torch path against the float64 reference, a conditioned call against the same call on
hand-gated rewards, a schedule against its interpolated static weights, the metrics and the option errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from saw_verl import ESTIMATORS, SawConfig, SawHistory, SawInputError, compute_advantages, saw_gdpo_advantages
from saw_verl.reference import reference_alpha, reference_conditioned_rewards, reference_saw_advantages
from saw_verl.reference_rivals import reference_corr_grpo, reference_gd2po, reference_gdpo, reference_mo_grpo
from saw_verl.shaping import condition_rewards
from spec_cases import EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS
from test_rivals import random_batch

SPEC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"
KEYS = ("correct", "format", "length", "style")
CONDITION_SETS = [  # depth 1; a chain of depth 2 with fills; two keys gated on one
    {"format": ("correct", 1.0)},
    {"format": ("correct", 0.5, 0.1), "length": ("format", 0.75, 0.25)},
    {"format": ("correct", 0.5), "style": ("correct", 1.0, 3.0)},
]
SCHEDULE = {0: [1.0, 0.0, 2.0, 0.5], 10: [1.0, 1.0, 0.0, 0.5], 30: [0.5, 1.0, 0.0, 2.0]}
RIVAL_REFERENCES = {
    "gdpo": reference_gdpo, "mo_grpo": reference_mo_grpo, "corr_grpo": reference_corr_grpo,
    "gd2po": lambda *args: reference_gd2po(*args)[0],
}


def spec_example() -> dict[str, list[float]]:
    """The worked example of docs/spec.md's "Conditions and schedules": label -> numbers."""
    section = SPEC.read_text().split("## Conditions and schedules", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^ {4}([a-z_ ]+?(?: at step \d+)?):\s+\[([^\]]*)\]", section, flags=re.M)
    return {label: [float(x) for x in numbers.split(",")] for label, numbers in rows}


def four_key_batch(seed: int):
    """random_batch's groups and mask with four keys on a grid that makes every condition pass and fail."""
    _, group_ids, mask, _ = random_batch(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    rewards = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)[
        torch.randint(0, 5, (len(group_ids), len(KEYS)), generator=gen)]
    return rewards, group_ids, mask


def test_worked_example():
    example = spec_example()
    cfg_options = {"reward_keys": EXAMPLE_KEYS, "reward_min": EXAMPLE_REWARD_MIN,
                   "conditions": {"format": ("correctness", 1.5)}, "weight_schedule": {0: [1, 0], 100: [1, 1]}}
    conditioned, gated = reference_conditioned_rewards(EXAMPLE_REWARDS, SawConfig(**cfg_options).conditions)
    assert [row[1] for row in conditioned] == example["conditioned format"]
    assert gated == example["gated_fraction"]
    for mode in ("grpo", "gdpo"):
        cfg = SawConfig(mode=mode, **cfg_options)
        expected = reference_saw_advantages(EXAMPLE_REWARDS, EXAMPLE_GROUPS.tolist(), EXAMPLE_MASK, cfg, step=50)
        result = compute_advantages(f"saw_{mode}", EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, step=50, **cfg_options)
        for got in (expected, result.saw):
            torch.testing.assert_close(got.advantages[:, 0].double(), torch.tensor(example[f"saw_{mode}"],
                                       dtype=torch.float64), atol=1e-6, rtol=0)
            torch.testing.assert_close(got.weights, torch.tensor(example["weights"], dtype=torch.float64), atol=1e-6,
                                       rtol=0)
            torch.testing.assert_close(got.cv, torch.tensor(example["cv"], dtype=torch.float64), atol=1e-6, rtol=0)
        metrics = result.metrics(EXAMPLE_KEYS)
        assert [metrics["saw/correctness/alpha"], metrics["saw/format/alpha"]] == example["alpha at step 50"]
        assert metrics["saw/format/gated_fraction"] == example["gated_fraction"][1]
        assert "saw/correctness/gated_fraction" not in metrics


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conditions", CONDITION_SETS)
def test_conditioned_rewards_match_the_reference(seed, conditions):
    rewards, _, _ = four_key_batch(seed)
    rewards[seed % len(rewards), seed % 4] = torch.nan  # never replaced; a NaN condition value fails
    cfg = SawConfig(reward_keys=KEYS, conditions=conditions)
    got, gated = condition_rewards(rewards, cfg.conditions)
    expected, expected_gated = reference_conditioned_rewards(rewards, cfg.conditions)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(gated, torch.tensor(expected_gated, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_conditioned_and_scheduled(estimator, seed):
    """A conditioned, scheduled call equals the same call on hand-gated rewards with the interpolated static weights
    (the same bits), and the float64 reference of the estimator on them."""
    rewards, group_ids, mask = four_key_batch(seed)
    conditions = CONDITION_SETS[seed % len(CONDITION_SETS)]
    step = (0, 7, 10, 45)[seed]
    cfg = SawConfig(reward_keys=KEYS, conditions=conditions, weight_schedule=SCHEDULE)
    gated, gated_fraction = reference_conditioned_rewards(rewards, cfg.conditions)
    gated = torch.tensor(gated, dtype=torch.float64)
    alpha = cfg.at_step(step).static_weights
    result = compute_advantages(estimator, rewards, group_ids, mask, step=step, reward_keys=KEYS,
                                conditions=conditions, weight_schedule=SCHEDULE)
    by_hand = compute_advantages(estimator, gated, group_ids, mask, reward_keys=KEYS, reward_weights=alpha)
    assert torch.equal(result.advantages, by_hand.advantages)
    torch.testing.assert_close(torch.tensor(alpha, dtype=torch.float64), torch.tensor(reference_alpha(cfg.weight_schedule.points, step),
                                                                 dtype=torch.float64), rtol=0, atol=1e-15)
    if estimator in RIVAL_REFERENCES:
        expected = RIVAL_REFERENCES[estimator](gated, group_ids, mask, list(alpha))
    else:
        saw_cfg = SawConfig(reward_keys=KEYS, mode=estimator[4:], conditions=conditions, weight_schedule=SCHEDULE)
        expected = reference_saw_advantages(rewards, group_ids, mask, saw_cfg, step=step).advantages
    torch.testing.assert_close(result.advantages.double(), expected.double(), atol=1e-5, rtol=1e-5)
    metrics = result.metrics(KEYS)
    assert [metrics[f"saw/{key}/alpha"] for key in KEYS] == list(alpha)
    conditioned = {KEYS.index(key) for key in conditions}
    assert {key for key in KEYS if f"saw/{key}/gated_fraction" in metrics} == {KEYS[i] for i in conditioned}
    for i in conditioned:
        assert metrics[f"saw/{KEYS[i]}/gated_fraction"] == pytest.approx(gated_fraction[i], abs=1e-15)


def test_schedule_interpolates_between_points_and_holds_flat_outside():
    cfg = SawConfig(reward_keys=("a", "b"), weight_schedule={0: [1.0, 0.0], 100: [1.0, 1.0]})
    assert cfg.at_step(50).static_weights == (1.0, 0.5)  # the example
    assert cfg.at_step(0).static_weights == (1.0, 0.0)
    assert cfg.at_step(25).static_weights == (1.0, 0.25)
    assert cfg.at_step(100).static_weights == cfg.at_step(1000).static_weights == (1.0, 1.0)
    late = SawConfig(reward_keys=("a", "b"), weight_schedule=[(10, [2.0, 0.0]), (20, [0.0, 2.0]), (40, [1.0, 1.0])])
    assert late.at_step(3).static_weights == (2.0, 0.0)
    assert late.at_step(15).static_weights == (1.0, 1.0)
    assert late.at_step(30).static_weights == (0.5, 1.5)
    assert SawConfig(reward_keys=("a", "b")).at_step(None).static_weights == (1.0, 1.0)


def test_a_history_pools_the_conditioned_rewards():
    conditions = {"format": ("correct", 1.0)}
    history = SawHistory()
    steps = [four_key_batch(seed) for seed in (1, 2, 3)]
    for t, (rewards, group_ids, mask) in enumerate(steps):
        result = saw_gdpo_advantages(rewards, group_ids, mask, reward_keys=KEYS, conditions=conditions,
                                     history_decay=0.5, history=history, weight_schedule=SCHEDULE, step=t)
    cfg = SawConfig(reward_keys=KEYS, conditions=conditions, history_decay=0.5, weight_schedule=SCHEDULE)
    expected = reference_saw_advantages(rewards, group_ids, mask, cfg, past=[s[0] for s in steps[:-1]], step=2)
    torch.testing.assert_close(result.weights, expected.weights, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(result.advantages.double(), expected.advantages.double(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.gated_fraction, expected.gated_fraction, atol=1e-15, rtol=0)


BAD_OPTIONS = [
    ({"conditions": {"format": ("format", 1.0)}}, "conditions['format']: a key cannot be gated on itself"),
    ({"conditions": {"format": ("length", 1.0), "length": ("correct", 0.0), "correct": ("format", 1.0)}},
     "conditions: the conditions loop (format -> length -> correct -> format)"),
    ({"conditions": {"formt": ("correct", 1.0)}}, "conditions: unknown reward key 'formt'"),
    ({"conditions": {"format": ("corect", 1.0)}}, "conditions['format']: unknown condition key 'corect'"),
    ({"conditions": {"format": ("correct", float("nan"))}}, "conditions['format'] threshold must be a finite number"),
    ({"conditions": {"format": ("correct", 1.0, float("inf"))}}, "conditions['format'] fill must be a finite number"),
    ({"conditions": {"format": "correct"}}, "conditions['format'] must be (condition key, threshold)"),
    ({"weight_schedule": {}}, "weight_schedule has no points"),
    ({"weight_schedule": {0: [1, 1, 1, 1], 5: [1, -1, 1, 1]}}, "weight of 'format' at step 5 is negative"),
    ({"weight_schedule": {10: [1, 1, 1, 1], 5: [1, 1, 1, 1]}}, "step 5 is not in increasing order"),
    ({"weight_schedule": [(5, [1, 1, 1, 1]), (5, [1, 1, 1, 1])]}, "step 5 is repeated"),
    ({"weight_schedule": {0: [1, 1]}}, "the weights at step 0 must be one per reward key"),
    ({"weight_schedule": {-1: [1, 1, 1, 1]}}, "step -1 is not an integer >= 0"),
    ({"weight_schedule": {0: [1, 1, 1, float("inf")]}}, "weight of 'style' at step 0 must be a finite number"),
    ({"weight_schedule": {0: [1, 1, 1, 1]}, "reward_weights": [1, 1, 1, 1]},
     "give reward_weights or weight_schedule, not both"),
    ({"weight_schedule": {0: [1, 1, 1, 1]}, "step": None}, "weight_schedule needs the training step"),
]


@pytest.mark.parametrize("estimator", ["saw_gdpo", "mo_grpo"])
@pytest.mark.parametrize("options, message", BAD_OPTIONS)
def test_bad_conditions_and_schedules_are_refused_naming_the_option(estimator, options, message):
    rewards, group_ids, mask = four_key_batch(0)
    history = SawHistory()
    extra = {"history_decay": 0.5, "history": history} if estimator == "saw_gdpo" else {}
    with pytest.raises(SawInputError) as error:
        compute_advantages(estimator, rewards, group_ids, mask, reward_keys=KEYS, **{"step": 3, **options}, **extra)
    assert message in str(error.value)
    assert history.state_dict() == SawHistory().state_dict()  # nothing changed
