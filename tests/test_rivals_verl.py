"""The registry's rivals through verl's real `ray_trainer.compute_advantage` (plugin shim active): each verl name
equals the tensor API, `saw_verl_gdpo` equals verl 0.9.1's own `gdpo` on its domain, and the options and per-key
metrics arrive."""

from __future__ import annotations

import pytest
import torch

from saw_verl import SawInputError, compute_advantages
from saw_verl.integrations.verl import metrics
from saw_verl.registry import REGISTRY
from test_rivals import random_batch
from verl_batches import algorithm_config, verl_batch

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from verl.trainer.ppo.ray_trainer import compute_advantage

TOLERANCE = 1e-5
RIVALS = [name for name, entry in REGISTRY.items() if not entry.saw_mode]


def keys_of(rewards):
    return [f"key{k}" for k in range(rewards.shape[1])]


def run_verl(estimator: str, rewards, group_ids, mask, weights, **options):
    data = verl_batch(rewards, keys_of(rewards), group_ids, mask, weights)
    config = algorithm_config(estimator, keys_of(rewards), weights, **options)
    return compute_advantage(data, adv_estimator=estimator, config=config).batch["advantages"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", RIVALS)
def test_verl_name_equals_the_tensor_api(name, seed):
    rewards, group_ids, mask, weights = random_batch(seed)
    metrics.take()
    ours = run_verl(REGISTRY[name].verl_name, rewards, group_ids, mask, weights)
    expected = compute_advantages(name, rewards, group_ids, mask, reward_keys=keys_of(rewards), reward_weights=weights)
    torch.testing.assert_close(ours, expected.advantages, atol=TOLERANCE, rtol=0)
    published = metrics.take()
    assert published == pytest.approx(expected.metrics(keys_of(rewards)))
    assert {f"{name}/key0/mean", f"{name}/key0/std", f"{name}/key0/weight"} <= set(published)


@pytest.mark.parametrize("seed", range(20))
def test_saw_verl_gdpo_equals_verl_own_gdpo(seed):
    """Dyadic rewards (no fp32 rounding in verl's group means) and a batch whose advantages are not all ~0."""
    rewards, group_ids, mask, weights = random_batch(seed)
    rewards = (rewards * 4).round() / 4
    ours = run_verl("saw_verl_gdpo", rewards, group_ids, mask, weights)
    theirs = run_verl("gdpo", rewards, group_ids, mask, weights)
    assert ours.abs().max() > 1e-3
    torch.testing.assert_close(ours, theirs, atol=TOLERANCE, rtol=0)


def test_options_from_the_algorithm_saw_block():
    rewards, group_ids, mask, weights = random_batch(2)
    for name, option in (("gd2po", {"tau": 0.8}), ("saw_verl_gdpo", {"whitening": "sequence"})):
        entry = next(e for e in REGISTRY.values() if e.verl_name == name)
        ours = run_verl(name, rewards, group_ids, mask, weights, **option)
        expected = compute_advantages(entry.name, rewards, group_ids, mask, reward_weights=weights, **option)
        torch.testing.assert_close(ours, expected.advantages, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "name, option, message",
    [
        ("mo_grpo", {"tau": 0.5}, r"algorithm.saw.tau does nothing for algorithm.adv_estimator=mo_grpo"),
        ("corr_grpo", {"dynamic": False}, r"algorithm.saw.dynamic does nothing"),
        ("gd2po", {"tua": 0.5}, r"unknown option\(s\) in algorithm.saw: \['tua'\]"),
        ("gd2po", {"tau": 2}, r"tau=2"),
    ],
)
def test_option_errors_name_the_verl_key(name, option, message):
    rewards, group_ids, mask, weights = random_batch(1)
    with pytest.raises(SawInputError, match=message):
        run_verl(name, rewards, group_ids, mask, weights, **option)
