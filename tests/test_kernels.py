"""The fused Triton kernels against the float64 reference: on CUDA when there is one, else on CPU under
TRITON_INTERPRET=1 in a child pytest (Triton decides whether to interpret when a kernel module is imported,
so the flag cannot be switched on inside this process without leaking into the other test files).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from saw_verl import SawConfig, SawInputError
from saw_verl.reference import reference_saw_advantages
from spec_cases import (
    EXAMPLE_ADVANTAGES, EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, assert_close,
    saw_batches, scaled_tolerance,
)

ON_CUDA = torch.cuda.is_available()
RUNS_KERNELS = ON_CUDA or os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
kernel_test = pytest.mark.skipif(not RUNS_KERNELS, reason="runs in the child of test_kernels_under_the_interpreter")
if RUNS_KERNELS:
    from saw_verl.kernels import saw_gdpo_advantages, saw_grpo_advantages, triton_saw_advantages

TOLERANCE = {torch.float64: 2e-6, torch.float32: 1e-4}  # by rewards dtype, relative to max(1, max |expected|)


@pytest.mark.skipif(RUNS_KERNELS, reason="this process runs the kernels itself")
def test_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        env=env, capture_output=True, text=True, timeout=900, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    print(child.stdout[-6000:])
    assert child.returncode == 0, (
        f"kernel tests failed under TRITON_INTERPRET=1:\n{child.stdout[-12000:]}\n{child.stderr[-3000:]}"
    )


def run_and_compare(rewards, group_ids, mask, cfg, num_groups=None):
    """Kernels on DEVICE vs the reference; returns the kernel result."""
    num_groups = int(group_ids.max()) + 1 if num_groups is None else num_groups
    expected = reference_saw_advantages(rewards.cpu(), group_ids.cpu(), mask.cpu(), cfg)
    actual = triton_saw_advantages(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), cfg, num_groups)
    tolerance = TOLERANCE[torch.float64 if rewards.dtype == torch.float64 else torch.float32]
    for field in ("weights", "cv", "mean", "std"):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, tolerance), field)
    assert actual.advantages.dtype == torch.float32 and actual.advantages.is_contiguous()
    assert_close(actual.advantages, expected.advantages, scaled_tolerance(expected.advantages, tolerance), "advantages")
    assert (actual.advantages.cpu()[mask.cpu() == 0] == 0).all(), "tokens outside the mask must be exactly 0"
    return actual


def awkward_batch(case: str, seed: int = 0):
    """(rewards (N, K) float64, group_ids (N,), mask (N, L) int64) for a named awkward shape."""
    generator = torch.Generator().manual_seed(seed)
    sizes, keys, length = {
        "L63-groups-7-7-1": ([7, 7, 1], 3, 63),
        "singletons": ([1, 1, 1, 1, 1], 2, 9),
        "group-of-70": ([70, 2], 2, 5),  # more rows than one group step (BLOCK_G = 32)
        "L1030": ([3, 2], 4, 1030),  # two column blocks, L not a multiple of 8
        "K1": ([4, 3], 1, 17),
    }[case]
    group_ids = torch.cat([torch.full((size,), g) for g, size in enumerate(sizes)])
    group_ids = group_ids[torch.randperm(len(group_ids), generator=generator)]  # non-contiguous groups
    rewards = torch.randint(-3, 4, (len(group_ids), keys), generator=generator).double() * 0.7
    mask = (torch.rand(len(group_ids), length, generator=generator) < 0.7).long()  # holes
    mask[0] = 0  # an all-zero row
    mask[-1] = 1
    return rewards, group_ids, mask


CASES = ["L63-groups-7-7-1", "singletons", "group-of-70", "L1030", "K1"]


@kernel_test
@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_on_awkward_shapes(case, mode, preset):
    rewards, group_ids, mask = awkward_batch(case)
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode, preset=preset)
    run_and_compare(rewards, group_ids, mask, cfg)


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_constant_groups_are_exactly_zero_and_constant_keys_get_zero_weight(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1")
    rewards[group_ids == 0] = torch.tensor([0.1, 4.2, 1.0], dtype=torch.float64)  # inexact means
    rewards[:, 2] = 4.2  # a dimension with zero batch variance (and a mean that does not round exactly)
    for dtype in (torch.float64, torch.float32):
        result = run_and_compare(rewards.to(dtype), group_ids, mask, SawConfig(("a", "b", "c"), mode=mode))
        assert result.std[2].item() == 0.0 and result.weights[2].item() == 0.0, dtype
    if mode == "grpo":
        assert (result.advantages.cpu()[group_ids == 0] == 0).all()


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("layout", ["contiguous", "every-other-column", "transposed"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.int32, torch.float32], ids=str)
def test_mask_dtypes_and_strided_views(dtype, layout, mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=1)
    mask = mask.to(device=DEVICE, dtype=dtype)  # views are made on the device: .to() would make them dense
    if layout == "every-other-column":
        mask = torch.repeat_interleave(mask, 2, dim=1)[:, ::2]
    elif layout == "transposed":
        mask = mask.T.contiguous().T
    assert mask.is_contiguous() == (layout == "contiguous")
    run_and_compare(rewards, group_ids, mask, SawConfig(("a", "b", "c"), mode=mode))


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize(
    "options",
    [dict(dynamic=False), dict(norm_by_std=False), dict(static_weights=(2.0, 0.0, 0.25)),
     dict(reward_min=(-3.0, 0.0, 1.0)),
     dict(preset="official", dynamic=False, norm_by_std=False)],
    ids=["dynamic-false", "norm-by-std-false", "static-weights", "reward-min", "official-plain-dr-grpo"],
)
def test_options(options, mode):
    run_and_compare(*awkward_batch("L63-groups-7-7-1", seed=2), SawConfig(("a", "b", "c"), mode=mode, **options))


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_reward_dtypes(dtype, mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=3)
    noise = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rewards = (rewards + noise).to(dtype)
    run_and_compare(rewards, group_ids, mask, SawConfig(("a", "b", "c"), mode=mode))


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_fractional_mask_reads_the_mask_itself(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=4)
    run_and_compare(rewards, group_ids, mask.float() * 0.5 + (mask == 1) * 0.25, SawConfig(("a", "b", "c"), mode=mode))


@kernel_test
def test_unused_group_ids_are_empty_groups():
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=5)
    run_and_compare(rewards, group_ids * 3, mask, SawConfig(("a", "b", "c"), mode="gdpo"), num_groups=9)


@kernel_test
@pytest.mark.parametrize("mode,dynamic", list(EXAMPLE_ADVANTAGES), ids=lambda v: str(v))
def test_worked_example(mode, dynamic):
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode, dynamic=dynamic, reward_min=EXAMPLE_REWARD_MIN)
    result = run_and_compare(EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, cfg)
    expected = torch.tensor(EXAMPLE_ADVANTAGES[mode, dynamic])
    assert_close(result.advantages[:, 0], expected, scaled_tolerance(expected, 1e-6), "spec advantages")


@kernel_test
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_same_bits_twice(mode):
    rewards, group_ids, mask = (t.to(DEVICE) for t in awkward_batch("group-of-70", seed=6))
    cfg = SawConfig(("a", "b"), mode=mode)
    first, second = (triton_saw_advantages(rewards, group_ids, mask, cfg, 2) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@kernel_test
@pytest.mark.parametrize("mask", [[[1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]], ids=["one-token", "no-token"])
def test_gdpo_with_fewer_than_two_tokens_is_refused(mask):
    rewards = torch.tensor([[1.0], [2.0]], dtype=torch.float64, device=DEVICE)
    with pytest.raises(SawInputError, match=r"at least 2 response tokens in the batch; got M=[01]$"):
        triton_saw_advantages(rewards, torch.tensor([0, 0], device=DEVICE), torch.tensor(mask, device=DEVICE),
                              SawConfig(("score",), mode="gdpo"), 1)


@kernel_test
@pytest.mark.parametrize("function,mode", [("saw_grpo_advantages", "grpo"), ("saw_gdpo_advantages", "gdpo")])
def test_public_tensor_functions(function, mode, monkeypatch):
    monkeypatch.setenv("SAW_VERL_BACKEND", "triton")  # CPU tensors under the interpreter; CUDA picks triton anyway
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=7)
    public = {"saw_grpo_advantages": saw_grpo_advantages, "saw_gdpo_advantages": saw_gdpo_advantages}[function]
    options = dict(preset="official", reward_min=(0.0, -3.0, 0.0))
    actual = public(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), num_groups=3, **options)
    expected = reference_saw_advantages(rewards, group_ids, mask, SawConfig(("a", "b", "c"), mode=mode, **options))
    for field in ("advantages", "weights"):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, TOLERANCE[torch.float64]), field)


@kernel_test
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saw_batches(max_rows=16, max_len=9))
def test_random_batches(batch):
    rewards, group_ids, mask, cfg = batch
    try:
        reference_saw_advantages(rewards, group_ids, mask, cfg)
    except SawInputError as error:
        with pytest.raises(SawInputError, match=str(error).split(";")[0]):
            num_groups = int(group_ids.max()) + 1
            triton_saw_advantages(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), cfg, num_groups)
        return
    run_and_compare(rewards, group_ids, mask, cfg)
