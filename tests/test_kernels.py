"""The Triton backend against the float64 reference: natively on CUDA, else on CPU under TRITON_INTERPRET=1
in its own pytest invocation (.ci/run; tests/conftest.py deselects these tests from the plain run).

Tolerances, relative to max(1, max |expected|): the batch mean and std are accumulated in float64 from the
same values the reference reads, for every reward dtype: STATISTICS_RTOL. cv and weights divide by
|mean - m + delta| + delta, which turns a last-bit difference of a mean near 0 into ~1e-9 relative:
WEIGHTS_RTOL. Advantages are float32: ADVANTAGES_RTOL.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from benchmarks.launch_count import count_launches
from saw_verl import SawConfig, SawInputError, saw_advantages
from saw_verl.advantages import check_shapes, saw_gdpo_advantages, saw_grpo_advantages
from saw_verl.kernels import VARIANTS
from saw_verl.reference import reference_saw_advantages
from saw_verl.triton_backend import HOST_SYNCS, LAUNCHES, triton_saw_advantages
from spec_cases import (
    EXAMPLE_ADVANTAGES, EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, assert_close,
    saw_batches, scaled_tolerance,
)

pytestmark = pytest.mark.interpreter
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
STATISTICS_RTOL = 1e-12
WEIGHTS_RTOL = 1e-8
ADVANTAGES_RTOL = 1e-6
KEYS3 = ("a", "b", "c")


def triton(rewards, group_ids, mask, cfg, variant=None):
    """The public path (default kernel variant), or one kernel variant by name behind the same shape checks."""
    rewards, group_ids, mask = rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE)
    if variant is None:
        return saw_advantages(rewards, group_ids, mask, cfg, backend="triton")
    check_shapes(rewards, group_ids, mask, cfg)
    return triton_saw_advantages(rewards, group_ids, mask, cfg, variant)


def run_and_compare(rewards, group_ids, mask, cfg, variant=None):
    """Triton on DEVICE vs the reference (same rewards, read as float64); returns the Triton result."""
    expected = reference_saw_advantages(rewards.double().cpu(), group_ids.cpu(), mask.cpu(), cfg)
    actual = triton(rewards, group_ids, mask, cfg, variant)
    for field, rtol in (("mean", STATISTICS_RTOL), ("std", STATISTICS_RTOL), ("cv", WEIGHTS_RTOL),
                        ("weights", WEIGHTS_RTOL)):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, rtol), field)
    assert actual.advantages.dtype == torch.float32 and actual.advantages.is_contiguous()
    tolerance = scaled_tolerance(expected.advantages, ADVANTAGES_RTOL)
    assert_close(actual.advantages, expected.advantages, tolerance, "advantages")
    assert (actual.advantages.cpu()[mask.cpu() == 0] == 0).all(), "tokens outside the mask must be exactly 0"
    return actual


def awkward_batch(case: str, seed: int = 0):
    """(rewards (N, K) float64, group_ids (N,), mask (N, L) int64) for a named awkward shape."""
    generator = torch.Generator().manual_seed(seed)
    sizes, keys, length = {
        "L63-groups-7-7-1": ([7, 7, 1], 3, 63),
        "singletons": ([1, 1, 1, 1, 1], 2, 9),
        "group-of-70": ([70, 2], 2, 5),
        "L2100": ([3, 2], 4, 2100),  # two write tiles a row, L not a multiple of 8
        "K1": ([4, 3], 1, 17),
        "K9": ([5, 4], 9, 3),  # a key block of 16
        "160-rows": ([2] * 80, 2, 5),  # more row blocks than write programs: the persistent loop
    }[case]
    group_ids = torch.cat([torch.full((size,), g) for g, size in enumerate(sizes)])
    group_ids = group_ids[torch.randperm(len(group_ids), generator=generator)]  # non-contiguous groups
    rewards = torch.randint(-3, 4, (len(group_ids), keys), generator=generator).double() * 0.7
    mask = (torch.rand(len(group_ids), length, generator=generator) < 0.7).long()  # holes
    mask[0] = 0  # an all-zero row
    mask[-1] = 1
    return rewards, group_ids, mask


AWKWARD = ["L63-groups-7-7-1", "singletons", "group-of-70", "L2100", "K1", "K9", "160-rows"]


@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("case", [case for case in AWKWARD if case != "160-rows"])
def test_matches_reference_on_awkward_shapes(case, mode, preset):
    rewards, group_ids, mask = awkward_batch(case)
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode, preset=preset)
    run_and_compare(rewards, group_ids, mask, cfg)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("case", AWKWARD)
def test_every_variant_matches_reference_and_repeats_its_bits(case, mode, variant):
    """Each launch geometry (saw_verl.kernels.VARIANTS) against the float64 reference, same bits twice."""
    rewards, group_ids, mask = awkward_batch(case, seed=10)
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)
    first = run_and_compare(rewards, group_ids, mask, cfg, variant)
    second = triton(rewards, group_ids, mask, cfg, variant)
    for a, b in zip(first, second):
        assert torch.equal(a, b), "bits differ between two identical calls"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("rewards_dtype,mask_dtype", [
    (torch.float64, torch.int64), (torch.float32, torch.bool), (torch.bfloat16, torch.float32),
    (torch.float16, torch.int32)], ids=lambda dtype: str(dtype).replace("torch.", ""))
def test_every_variant_on_each_dtype(rewards_dtype, mask_dtype, mode, variant):
    """One tolerance per field serves every dtype: the kernels read the rewards exactly as float64 (as the
    reference does), and every mask dtype is multiplied into the float32 value once."""
    rewards, group_ids, mask = awkward_batch("L2100", seed=11)
    noise = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    mask = mask.to(mask_dtype) if mask_dtype != torch.float32 else mask * 0.75
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)
    run_and_compare((rewards + noise).to(rewards_dtype), group_ids, mask, cfg, variant)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_constant_groups_are_exactly_zero_and_constant_keys_get_zero_weight(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1")
    rewards[group_ids == 0] = torch.tensor([0.1, 4.2, 1.0], dtype=torch.float64)  # inexact means
    rewards[:, 2] = 4.2  # a dimension with zero batch variance (and a mean that does not round exactly)
    for dtype in (torch.float64, torch.float32):
        result = run_and_compare(rewards.to(dtype), group_ids, mask, SawConfig(KEYS3, mode=mode))
        assert result.std[2].item() == 0.0 and result.weights[2].item() == 0.0, dtype
    if mode == "grpo":
        assert (result.advantages.cpu()[group_ids == 0] == 0).all()


@pytest.mark.parametrize("dynamic", [False, True], ids=["dynamic-false", "dynamic"])
def test_grpo_group_with_a_constant_sum_of_varying_keys_is_exactly_zero(dynamic):
    """Complementary 0/1 keys with equal weights: every R(j) equals 1 while both keys vary in every group (sizes
    3, 4 and 3; means 2/3, 1/2, 1/3): the z-scores are exactly 0, as the reference's max == min gives."""
    format_ok = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 0, 0], dtype=torch.float64)
    rewards = torch.stack([format_ok, 1 - format_ok], dim=1)  # batch means 0.5 and 0.5: equal CVs, equal weights
    group_ids = torch.tensor([4, 9, 4, 9, 4, 9, 9, 2, 2, 2])
    config = SawConfig(("format", "correct"), mode="grpo", dynamic=dynamic)
    result = run_and_compare(rewards, group_ids, torch.ones(10, 5, dtype=torch.int64), config)
    assert result.weights[0].item() == result.weights[1].item()
    assert (result.advantages.cpu() == 0).all(), result.advantages


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
    run_and_compare(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize(
    "options",
    [dict(dynamic=False), dict(norm_by_std=False), dict(static_weights=(2.0, 0.0, 0.25)),
     dict(reward_min=(-3.0, 0.0, 1.0)), dict(preset="official", dynamic=False, norm_by_std=False)],
    ids=["dynamic-false", "norm-by-std-false", "static-weights", "reward-min", "official-plain-dr-grpo"],
)
def test_options(options, mode):
    run_and_compare(*awkward_batch("L63-groups-7-7-1", seed=2), SawConfig(KEYS3, mode=mode, **options))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_reward_dtypes(dtype, mode):
    """Statistics within 1e-12 of the reference for every dtype (the kernels read the rewards as float64)."""
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=3)
    noise = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = run_and_compare((rewards + noise).to(dtype), group_ids, mask, SawConfig(KEYS3, mode=mode))
    assert torch.isfinite(result.advantages).all() and result.advantages.abs().max() > 0.1


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_fractional_mask_reads_the_mask_itself(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=4)
    mask = mask.float() * 0.5 + (mask == 1) * 0.25
    mask[1] = (mask[1] > 0).float()  # a 0/1 row next to fractional ones: GDPO reads its bit copy
    run_and_compare(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize(
    "ids", [[0, 10**8], [2**62 - 1, -(2**62)], [-5, -1], [7, 3]], ids=["0-1e8", "near-2^62", "negative", "unsorted"])
def test_any_int64_group_ids_give_the_dense_result(ids, mode):
    """Ids are ranked, never used as sizes: the result equals that of the dense ids 0..G-1 (same order)."""
    rewards, dense, mask = awkward_batch("group-of-70", seed=5)
    sparse = torch.tensor(ids, dtype=torch.int64)[dense]
    ranked = torch.argsort(torch.argsort(torch.tensor(ids)))[dense]  # dense ids in the sparse ids' order
    cfg = SawConfig(("a", "b"), mode=mode)
    result = run_and_compare(rewards, sparse, mask, cfg)
    assert torch.equal(result.advantages, triton(rewards, ranked, mask, cfg).advantages)


@pytest.mark.parametrize("mode,dtype", [("gdpo", torch.float64), ("grpo", torch.float32)], ids=str)
def test_a_group_over_several_blocks_is_exact_and_deterministic(dtype, mode):
    """1100 rows in one group (3 blocks of 512 sorted positions) next to small ones: the pieces merge."""
    generator = torch.Generator().manual_seed(6)
    n = 1300
    group_ids = torch.cat([torch.zeros(1100, dtype=torch.int64), 1 + torch.arange(200) // 3])
    group_ids = group_ids[torch.randperm(n, generator=generator)]
    rewards = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 4 - 1).to(dtype)
    mask = (torch.rand(n, 3, generator=generator) < 0.8).to(torch.bool)
    cfg = SawConfig(("a", "b"), mode=mode)
    first = run_and_compare(rewards, group_ids, mask, cfg)
    second = triton(rewards, group_ids, mask, cfg)
    for a, b in zip(first, second):
        assert torch.equal(a, b), "bits differ between two identical calls"


@pytest.mark.parametrize("mode,dynamic", list(EXAMPLE_ADVANTAGES), ids=lambda v: str(v))
def test_worked_example(mode, dynamic):
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode, dynamic=dynamic, reward_min=EXAMPLE_REWARD_MIN)
    result = run_and_compare(EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, cfg)
    expected = torch.tensor(EXAMPLE_ADVANTAGES[mode, dynamic])
    assert_close(result.advantages[:, 0], expected, scaled_tolerance(expected, 1e-6), "spec advantages")


@pytest.mark.parametrize("mask", [[[1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]], ids=["one-token", "no-token"])
def test_gdpo_with_fewer_than_two_tokens_is_refused(mask):
    rewards = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    with pytest.raises(SawInputError, match=r"at least 2 response tokens in the batch; got M=[01]$"):
        triton(rewards, torch.tensor([0, 0]), torch.tensor(mask), SawConfig(("score",), mode="gdpo"))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf in the interpreter
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("bad,row,key", [(float("nan"), 9, 1), (float("inf"), 0, 2), (-float("inf"), 14, 0)])
def test_non_finite_reward_is_refused_naming_key_and_row(bad, row, key, mode):
    """The status word carries the first non-finite (row, key) out of the kernels."""
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=8)
    rewards[row, key] = bad
    rewards[row + 1:, key] = float("nan")  # later bad rows: the first one is named
    with pytest.raises(SawInputError, match=rf"reward '{KEYS3[key]}' is {bad} at row {row}: rewards must be finite"):
        triton(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_launch_and_sync_budget(mode):
    """Every torch op and kernel launch of one call on the public path, after a warm-up (constants cached)."""
    rewards, group_ids, mask = (t.to(DEVICE) for t in awkward_batch("L63-groups-7-7-1", seed=9))
    cfg = SawConfig(KEYS3, mode=mode)
    counted = count_launches(lambda: saw_advantages(rewards, group_ids, mask, cfg, backend="triton"))
    assert len(counted.launching_ops) + counted.kernels == LAUNCHES[mode], counted
    assert counted.launching_ops == ["sort"], counted  # no zero-fill, no copy, no host-to-device constants
    assert counted.host_reads == HOST_SYNCS, counted


@pytest.mark.parametrize("function,mode", [(saw_grpo_advantages, "grpo"), (saw_gdpo_advantages, "gdpo")])
def test_public_tensor_functions(function, mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=7)
    options = dict(preset="official", reward_min=(0.0, -3.0, 0.0))
    actual = function(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), backend="triton", **options)
    expected = reference_saw_advantages(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode, **options))
    for field in ("advantages", "weights"):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, ADVANTAGES_RTOL), field)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saw_batches(max_rows=16, max_len=9))
def test_random_batches(batch):
    rewards, group_ids, mask, cfg = batch
    try:
        reference_saw_advantages(rewards, group_ids, mask, cfg)
    except SawInputError as error:
        with pytest.raises(SawInputError, match=str(error).split(";")[0]):
            triton(rewards, group_ids, mask, cfg)
        return
    run_and_compare(rewards, group_ids, mask, cfg)
