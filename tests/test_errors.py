"""Every bad input (docs/spec.md) raises SawInputError naming the key / row / shape at fault."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from saw_verl import SawConfig, SawInputError, saw_advantages, saw_gdpo_advantages, saw_grpo_advantages
from saw_verl.advantages import resolve_backend

FIND_SPEC = importlib.util.find_spec

KEYS = ("format", "correctness")


def good_batch(n=4, length=3):
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 3.0]], dtype=torch.float64)[:n]
    return rewards, torch.tensor([0, 0, 1, 1])[:n], torch.ones(n, length, dtype=torch.int64)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(reward_keys=()), "K = 0"),
        (dict(reward_keys=KEYS, reward_min=(0.0,)), r"reward_min has 1 entries but there are 2"),
        (dict(reward_keys=KEYS, static_weights=(1.0, 1.0, 1.0)), r"^static_weights has 3 entries"),
        (dict(reward_keys=KEYS, static_weights=(1.0, -0.5)), r"weight of 'correctness' is negative"),
        (dict(reward_keys=KEYS, preset="released"), r"^unknown preset 'released'"),
        (dict(reward_keys=KEYS, mode="ppo"), r"unknown SAW mode 'ppo'"),
        (dict(reward_keys=KEYS, dynamic="yes"), r"dynamic must be true or false"),
        (dict(reward_keys=KEYS, delta=0.0), r"delta must be a finite number > 0"),
        (dict(reward_keys=KEYS, reward_min=(0.0, float("nan"))), r"entry for 'correctness' is not finite"),
        (dict(reward_keys=("a", "a")), r"duplicates"),
    ],
    ids=["no-keys", "reward-min-length", "weights-length", "negative-weight", "unknown-preset", "unknown-mode",
         "dynamic-not-bool", "zero-delta", "nan-reward-min", "duplicate-keys"],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(SawInputError, match=message):
        SawConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(reward_min=(0.0,)), r"^--saw.reward_min has 1 entries"),
        (dict(static_weights=(1.0, -0.5)), r"^--saw.reward_weights: weight of 'correctness' is negative"),
        (dict(preset="released"), r"^unknown --saw.preset 'released'"),
        (dict(delta=-1.0), r"^delta must be"),  # not named by the caller: SawConfig's field name
    ],
    ids=["per-key", "weights", "preset", "default-name"],
)
def test_errors_use_the_callers_option_names(kwargs, message):
    names = {"reward_min": "--saw.reward_min", "static_weights": "--saw.reward_weights", "preset": "--saw.preset"}
    with pytest.raises(SawInputError, match=message):
        SawConfig(reward_keys=KEYS, option_names=names, **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_reward_names_key_and_row(bad):
    rewards, groups, mask = good_batch()
    rewards[2, 1] = bad
    with pytest.raises(SawInputError, match=rf"reward 'correctness' is {bad} at row 2"):
        saw_advantages(rewards, groups, mask, SawConfig(KEYS))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda r, g, m: (r[:1], g[:1], m[:1]), r"at least 2 rollouts .* N=1"),
        (lambda r, g, m: (r, g, m[:3]), r"response_mask must be \(N=4, L\), got \(3, 3\)"),
        (lambda r, g, m: (r, g, m[:, 0]), r"response_mask must be \(N=4, L\), got \(4,\)"),
        (lambda r, g, m: (r, g[:3], m), r"group_ids must have shape \(N,\) = \(4,\), one id per rollout; got \(3,\)"),
        (lambda r, g, m: (r[:, :1], g, m), r"rewards must be \(N, K=2\)"),
        (lambda r, g, m: (r, g.double(), m), r"group_ids must be an integer tensor .* got torch.float64"),
        (lambda r, g, m: (r.long(), g, m), r"rewards must be a floating-point tensor, got torch.int64"),
        (lambda r, g, m: (r, g, torch.tensor([[1, 0, 0]] + [[0, 0, 0]] * 3)), r"at least 2 response tokens .* M=1"),
    ],
    ids=["single-rollout", "mask-rows", "mask-1d", "index-length", "too-few-keys", "float-group-ids", "integer-rewards",
         "gdpo-one-token"],
)
def test_bad_shapes_are_refused(mutate, message):
    with pytest.raises(SawInputError, match=message):
        saw_advantages(*mutate(*good_batch()), SawConfig(KEYS, mode="gdpo"))


def test_triton_forced_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("SAW_VERL_BACKEND", "triton")
    with pytest.raises(SawInputError, match=r"triton backend needs CUDA tensors .* SAW_VERL_BACKEND=torch"):
        saw_advantages(*good_batch(), SawConfig(KEYS))
    monkeypatch.setenv("SAW_VERL_BACKEND", "cuda")
    with pytest.raises(SawInputError, match=r"SAW_VERL_BACKEND='cuda': expected one of"):
        saw_advantages(*good_batch(), SawConfig(KEYS))


def test_cuda_tensors_take_torch_without_triton_or_when_told(monkeypatch):
    monkeypatch.delenv("SAW_VERL_BACKEND", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("SAW_VERL_BACKEND", "torch")
    assert resolve_backend(cuda) == "torch"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "triton" else FIND_SPEC(name, *args))
    monkeypatch.delenv("SAW_VERL_BACKEND")
    assert resolve_backend(cuda) == "torch"
    with pytest.raises(SawInputError, match=r"the triton backend needs triton: pip install 'saw-verl\[triton\]'"):
        resolve_backend(cuda, "triton")


@pytest.mark.parametrize("moved", ["rewards", "group_ids"])
def test_inputs_on_different_devices_are_refused_naming_them(moved):
    """A tensor on another device than the mask is refused before any work (CPU columns follow a GPU mask)."""
    inputs = dict(zip(("rewards", "group_ids", "response_mask"), good_batch()))
    inputs[moved] = inputs[moved].to("meta")
    listed = ", ".join(f"{name} on {'meta' if name == moved else 'cpu'}" for name in inputs)
    with pytest.raises(SawInputError, match=rf"SAW inputs must be on one device; got {listed}$"):
        saw_advantages(*inputs.values(), SawConfig(KEYS))


def test_array_likes_are_taken_as_tensors():
    """NumPy rewards, list group ids and a nested-list mask give the result of the same tensors."""
    rewards, groups, mask = good_batch()
    expected = saw_gdpo_advantages(rewards, groups, mask, reward_keys=KEYS)
    given = saw_gdpo_advantages(rewards.numpy(), groups.tolist(), mask.tolist(), reward_keys=KEYS)
    assert torch.equal(given.advantages, expected.advantages) and torch.equal(given.weights, expected.weights)


@pytest.mark.parametrize(
    "argument,value,message",
    [
        ("group_ids", ["a", "a", "b", "b"], r"group_ids must be a tensor, NumPy array or list of \(N,\) integers"),
        ("rewards", object(), r"rewards must be a tensor, NumPy array or list of \(N, K\) floats; got object"),
        ("response_mask", [[1, 0], [1]], r"response_mask must be a tensor, NumPy array or list of \(N, L\)"),
        ("group_ids", torch.zeros(4, 1, dtype=torch.int64), r"group_ids must have shape \(N,\) = \(4,\), .* got \(4, 1\)"),
    ],
    ids=["string-ids", "object-rewards", "ragged-mask", "column-ids"],
)
def test_bad_array_likes_name_the_argument(argument, value, message):
    inputs = dict(zip(("rewards", "group_ids", "response_mask"), good_batch()))
    inputs[argument] = value
    with pytest.raises(SawInputError, match=message):
        saw_gdpo_advantages(**inputs, reward_keys=KEYS)


def test_misspelt_tensor_api_option_names_the_options():
    with pytest.raises(SawInputError, match=r"unknown SAW option 'rewad_min' \(did you mean 'reward_min'\?\); the "
                                            r"options are reward_keys, preset, .*history_decay"):
        saw_grpo_advantages(*good_batch(), reward_keys=KEYS, rewad_min=[0, 0])


def test_history_decay_without_a_history_is_refused():
    with pytest.raises(SawInputError, match=r"history_decay=0.9 needs the run's history: pass history=SawHistory\(\)"):
        saw_gdpo_advantages(*good_batch(), reward_keys=KEYS, history_decay=0.9)


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan"), True, "0.5"])
def test_history_decay_out_of_range_names_the_option(decay):
    names = {"history_decay": "algorithm.saw.history_decay"}
    with pytest.raises(SawInputError, match=r"algorithm.saw.history_decay must be a number in \[0, 1\), got"):
        SawConfig(reward_keys=KEYS, history_decay=decay, option_names=names)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_a_mask_with_values_other_than_0_and_1_is_refused_naming_row_and_token(mode):
    """A weighting mask would scale the advantages (and GDPO's token counts): refused, not applied silently."""
    rewards, groups, mask = good_batch()
    mask = mask.float()
    mask[2, 1] = 0.5
    with pytest.raises(SawInputError, match=r"response_mask must hold 0 and 1 only .* it holds 0.5 at row 2, token 1"):
        saw_advantages(rewards, groups, mask, SawConfig(KEYS, mode=mode))
    assert saw_advantages(rewards, groups, mask != 0, SawConfig(KEYS, mode=mode)).advantages.shape == (4, 3)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_groups_all_of_one_rollout_are_refused(mode):
    rewards, _, mask = good_batch()
    with pytest.raises(SawInputError, match=r"group_ids: every group has one rollout \(4 rollouts, 4 distinct ids\)"):
        saw_advantages(rewards, torch.tensor([7, -2, 5, 0]), mask, SawConfig(KEYS, mode=mode))
    saw_advantages(rewards, torch.tensor([7, -2, 5, 5]), mask, SawConfig(KEYS, mode=mode))  # one pair is enough


def test_rewards_below_reward_min_warn_once_naming_key_minimum_and_option(caplog):
    """docs/spec.md "Shift": the CV is that of r - m_k >= 0; a reward below m_k is named once per key."""
    rewards, groups, mask = good_batch()
    rewards[1, 0] = -0.25
    cfg = SawConfig(KEYS, option_names={"reward_min": "algorithm.saw.reward_min"})
    with caplog.at_level("WARNING", logger="saw_verl.weights"):
        for _ in range(3):
            saw_advantages(rewards, groups, mask, cfg)
        saw_advantages(rewards, groups, mask, SawConfig(KEYS, reward_min=(-1.0, 0.0)))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "reward 'format' reaches -0.25, below its algorithm.saw.reward_min entry 0" in said[0]
