"""SAW options in verl's `algorithm` config (DictConfig, dict, SawAlgoConfig), and bad input through
verl's real `compute_advantage`: a clear SawInputError before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl import SawConfig, SawInputError
from saw_verl.reference import reference_saw_advantages
from saw_verl.registry import REGISTRY
from saw_verl.integrations.verl import config as saw_config
from saw_verl.integrations.verl.config import (
    SawAlgoConfig, check_trl_for_verl, saw_config_from_algorithm, validate_run,
)
from spec_cases import EXAMPLE_ADVANTAGES, EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARD_MIN
from spec_cases import EXAMPLE_REWARDS
from verl_batches import example_batch, example_config
from verl.trainer.ppo import ray_trainer
from verl.utils.config import omega_conf_to_dataclass


SAW_BLOCK = {"preset": "official", "dynamic": True, "reward_min": [-3.0, 0.0], "delta": 1e-6, "history_decay": 0.0}


def algo_node(**extra):
    return {"adv_estimator": "saw_grpo", "gdpo_reward_keys": list(EXAMPLE_KEYS), "saw": dict(SAW_BLOCK), **extra}


CONFIG_FLAVOURS = {
    "DictConfig": lambda: OmegaConf.create(algo_node()),
    "dict": algo_node,
    "SawAlgoConfig-via-_target_": lambda: omega_conf_to_dataclass(
        OmegaConf.create(algo_node(_target_="saw_verl.integrations.verl.config.SawAlgoConfig"))
    ),
    "SawAlgoConfig-via-type": lambda: omega_conf_to_dataclass(OmegaConf.create(algo_node()), SawAlgoConfig),
}


@pytest.mark.parametrize("make_config", CONFIG_FLAVOURS.values(), ids=CONFIG_FLAVOURS.keys())
def test_every_config_flavour_gives_the_same_saw_config(make_config):
    expected = SawConfig(EXAMPLE_KEYS, mode="grpo", preset="official", reward_min=(-3.0, 0.0), delta=1e-6)
    assert saw_config_from_algorithm(make_config(), "grpo") == expected
    data = ray_trainer.compute_advantage(example_batch(), "saw_grpo", config=make_config())
    expected_rows = torch.tensor(EXAMPLE_ADVANTAGES[("grpo", True)], dtype=torch.float32)
    torch.testing.assert_close(data.batch["advantages"][:, 0], expected_rows, atol=1e-5, rtol=0)


def test_saw_algo_config_rejects_unknown_options_when_built():
    node = OmegaConf.create(algo_node(_target_="saw_verl.integrations.verl.config.SawAlgoConfig"))
    node.saw.cv_eps = 1e-3
    with pytest.raises(Exception, match=r"unknown option\(s\) in algorithm.saw: \['cv_eps'\]"):
        omega_conf_to_dataclass(node)


def test_norm_adv_by_std_is_read_from_the_config():
    config = example_config("saw_grpo")
    config.norm_adv_by_std_in_grpo = False
    data = ray_trainer.compute_advantage(example_batch(), "saw_grpo", config=config)  # kwarg left at verl's default
    cfg = SawConfig(EXAMPLE_KEYS, mode="grpo", reward_min=EXAMPLE_REWARD_MIN, norm_by_std=False)
    expected = reference_saw_advantages(EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, cfg).advantages
    torch.testing.assert_close(data.batch["advantages"], expected, atol=1e-5, rtol=0)


def test_kl_in_reward_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(saw_config, "_warned_kl_in_reward", False)
    config = example_config()
    config.use_kl_in_reward = True
    for _ in range(2):
        ray_trainer.compute_advantage(example_batch(), "saw_gdpo", config=config)
    assert sum("use_kl_in_reward" in r.message and r.levelname == "WARNING" for r in caplog.records) == 1


# ------------------------------------------------------------------ bad input


def set_reward(key, row, value):
    def mutate(data, config):
        column = data.non_tensor_batch[key].astype(object)
        column[row] = value
        data.non_tensor_batch[key] = column

    return mutate


def set_option(path, value):
    return lambda data, config: OmegaConf.update(config, path, value, force_add=True)


BAD_INPUTS = {
    "missing-reward-key": (set_option("gdpo_reward_keys", ["correctness", "accuracy"]), "'accuracy' not found"),
    "key-array-length": (
        lambda data, config: data.non_tensor_batch.update(format=np.ones(7)), r"'format' has shape \(7,\)"
    ),
    "nan-reward": (set_reward("format", 3, float("nan")), "'format' is nan at row 3"),
    "inf-reward": (set_reward("correctness", 5, float("inf")), "'correctness' is inf at row 5"),
    "text-reward": (set_reward("format", 2, "yes"), "'format' is not a number at row 2"),
    "no-reward-keys": (set_option("gdpo_reward_keys", []), "K = 0"),
    "reward-keys-unset": (set_option("gdpo_reward_keys", None), "needs algorithm.gdpo_reward_keys"),
    "reward_min-length": (set_option("saw.reward_min", [0.0]), "reward_min has 1 entries but there are 2"),
    "weights-length": (set_option("gdpo_reward_weights", [1.0, 1.0, 1.0]), "gdpo_reward_weights has 3 entries"),
    "negative-weight": (set_option("gdpo_reward_weights", [1.0, -0.5]), "weight of 'format' is negative"),
    "unknown-preset": (set_option("saw.preset", "papers"), "unknown algorithm.saw.preset 'papers'"),
    "unknown-saw-option": (set_option("saw.reward_max", [1, 1]), r"unknown option\(s\) in algorithm.saw"),
    "dynamic-not-bool": (set_option("saw.dynamic", "sometimes"), "dynamic must be true or false"),
    "no-uid": (lambda data, config: data.non_tensor_batch.pop("uid"), "needs the group index"),
}


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo"])
@pytest.mark.parametrize("mutate, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_before_anything_is_written(estimator, mutate, message):
    data, config = example_batch(), example_config(estimator)
    mutate(data, config)
    with pytest.raises(SawInputError, match=message):
        ray_trainer.compute_advantage(data, estimator, config=config)
    assert "advantages" not in data.batch.keys() and "returns" not in data.batch.keys()


@pytest.mark.parametrize("version,refused", [(None, False), ("1.12.0", False), ("0.27.0", False), ("1.13.0", True),
                                             ("1.16.2", True), ("2.0.0rc1", True)])
def test_a_trl_that_verl_cannot_start_workers_next_to_is_refused(version, refused):
    """verl 0.9.1 imports trl's AutoModelForCausalLMWithValueHead whenever trl is importable; trl 1.13 removed it."""
    if not refused:
        check_trl_for_verl(version)
        return
    with pytest.raises(SawInputError, match=rf"trl {version} is installed next to verl: .* pip install 'trl<1.13'"):
        check_trl_for_verl(version)


def test_rollout_n_of_one_is_refused_before_ray():
    config = OmegaConf.create({"algorithm": algo_node(), "actor_rollout_ref": {"rollout": {"n": 1}}})
    with pytest.raises(SawInputError, match=r"actor_rollout_ref.rollout.n=1: saw_gdpo .* set actor_rollout_ref"):
        validate_run(config, REGISTRY["saw_gdpo"])
