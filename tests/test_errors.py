"""Every bad input (docs/spec.md) raises SawInputError naming the key / row / shape at fault."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from saw_verl import SawConfig, SawInputError, saw_advantages
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
        (lambda r, g, m: (r, g[:3], m), r"group index must have shape \(4,\), got \(3,\)"),
        (lambda r, g, m: (r[:, :1], g, m), r"rewards must be \(N, K=2\)"),
        (lambda r, g, m: (r, g.double(), m), r"group ids must be an integer tensor .* got torch.float64"),
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


def test_cuda_tensors_take_triton_when_installed_and_torch_otherwise(monkeypatch):
    monkeypatch.delenv("SAW_VERL_BACKEND", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    installed = importlib.util.find_spec("triton") is not None
    assert resolve_backend(cuda) == ("triton" if installed else "torch")
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
