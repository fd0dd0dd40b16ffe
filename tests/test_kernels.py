"""The Triton backend against the float64 reference: natively on CUDA, else on CPU under TRITON_INTERPRET=1
in its own pytest invocation (.ci/run; tests/conftest.py deselects these tests from the plain run).

Tolerances, relative to max(1, max |expected|): the batch mean and std are accumulated in float64 from the
same values the reference reads, for every reward dtype: STATISTICS_RTOL. cv and weights divide by
|mean - m + delta| + delta, which turns a last-bit difference of a mean near 0 into ~1e-9 relative:
WEIGHTS_RTOL. Advantages are float32: ADVANTAGES_RTOL. Tests of "the same bits twice" run on CUDA only: the
interpreter cannot give different bits.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.launch_count import count_launches
from saw_verl import SawConfig, SawHistory, SawInputError, saw_advantages
from saw_verl.advantages import saw_gdpo_advantages, saw_grpo_advantages
from saw_verl.config import OFFICIAL_EPS, WHITEN_EPS
from saw_verl.kernels import common, constants_vector, gdpo_advantages, grpo_advantages, naive_gdpo, naive_grpo
from saw_verl.reference import reference_saw_advantages
from saw_verl.triton_backend import HOST_SYNCS, LAUNCHES
from spec_cases import (
    EQUAL_CV_GROUPS, EQUAL_CV_MASK, EQUAL_CV_REWARDS, EXAMPLE_ADVANTAGES, EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK,
    EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, HISTORY_DECAYS,
    assert_close, equal_cv_cases, history_step_config, history_steps, saw_batches, scaled_tolerance,
)

pytestmark = pytest.mark.interpreter
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="same bits twice: the interpreter cannot differ")
STATISTICS_RTOL = 1e-12
WEIGHTS_RTOL = 1e-8
ADVANTAGES_RTOL = 1e-6
KEYS3 = ("a", "b", "c")


def triton(rewards, group_ids, mask, cfg, ids_sorted=False):
    """The public path on DEVICE."""
    rewards, group_ids, mask = rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE)
    return saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=ids_sorted)


def compare(actual, expected, mask):
    for field, rtol in (("mean", STATISTICS_RTOL), ("std", STATISTICS_RTOL), ("cv", WEIGHTS_RTOL),
                        ("weights", WEIGHTS_RTOL)):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, rtol), field)
    assert actual.advantages.dtype == torch.float32 and actual.advantages.is_contiguous()
    tolerance = scaled_tolerance(expected.advantages, ADVANTAGES_RTOL)
    assert_close(actual.advantages, expected.advantages, tolerance, "advantages")
    outside = actual.advantages.cpu()[mask.cpu() == 0]
    assert (outside == 0).all() and not torch.signbit(outside).any(), "tokens outside the mask must be +0.0"


def run_and_compare(rewards, group_ids, mask, cfg, ids_sorted=False):
    """Triton on DEVICE vs the reference (same rewards, read as float64); returns the Triton result."""
    expected = reference_saw_advantages(rewards.double().cpu(), group_ids.cpu(), mask.cpu(), cfg)
    actual = triton(rewards, group_ids, mask, cfg, ids_sorted)
    compare(actual, expected, mask)
    return actual


def assert_same_bits(first, second):
    for a, b in zip(first, second):
        assert (a is None and b is None) or torch.equal(a, b), "bits differ between two identical calls"


def grouped(rewards, group_ids, mask):
    """The batch with its rows in the order of their ids (what ids_sorted=True describes)."""
    order = torch.sort(group_ids, stable=True).indices
    return rewards[order], group_ids[order], mask[order]


def awkward_batch(case: str, seed: int = 0):
    """(rewards (N, K) float64, group_ids (N,), mask (N, L) int64) for a named awkward shape."""
    generator = torch.Generator().manual_seed(seed)
    sizes, keys, length = {
        "L63-groups-7-7-1": ([7, 7, 1], 3, 63),
        "singletons": ([1, 1, 1, 1, 2], 2, 9),  # one pair: groups all of one rollout are refused
        "group-of-70": ([70, 2], 2, 5),
        "L2100": ([3, 2], 4, 2100),  # two write tiles a row, L not a multiple of 8
        "K1": ([4, 3], 1, 17),
        "K9": ([5, 4], 9, 3),  # a key block of 16
        "600-rows": ([2] * 300, 2, 5),  # several statistics programs
    }[case]
    group_ids = torch.cat([torch.full((size,), g) for g, size in enumerate(sizes)])
    group_ids = group_ids[torch.randperm(len(group_ids), generator=generator)]  # non-contiguous groups
    rewards = torch.randint(-3, 4, (len(group_ids), keys), generator=generator).double() * 0.7
    mask = (torch.rand(len(group_ids), length, generator=generator) < 0.7).long()  # holes
    mask[0] = 0  # an all-zero row
    mask[-1] = 1
    return rewards, group_ids, mask


AWKWARD = ["L63-groups-7-7-1", "singletons", "group-of-70", "L2100", "K1", "K9", "600-rows"]


@pytest.mark.parametrize("preset", ["paper", "official"])
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("case", AWKWARD)
def test_matches_reference_on_awkward_shapes(case, mode, preset):
    rewards, group_ids, mask = awkward_batch(case)
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode, preset=preset)
    run_and_compare(rewards, group_ids, mask, cfg)


@cuda_only
@pytest.mark.parametrize("ids_sorted", [False, True], ids=["sorted-on-device", "ids-sorted"])
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("case", AWKWARD)
def test_same_bits_twice(case, mode, ids_sorted):
    rewards, group_ids, mask = awkward_batch(case, seed=10)
    if ids_sorted:
        rewards, group_ids, mask = grouped(rewards, group_ids, mask)
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)
    first = triton(rewards, group_ids, mask, cfg, ids_sorted)
    assert_same_bits(first, triton(rewards, group_ids, mask, cfg, ids_sorted))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("rewards_dtype,mask_dtype", [
    (torch.float64, torch.int64), (torch.float32, torch.bool), (torch.bfloat16, torch.float32),
    (torch.float16, torch.int32)], ids=lambda dtype: str(dtype).replace("torch.", ""))
def test_each_dtype(rewards_dtype, mask_dtype, mode):
    """One tolerance per field serves every dtype: the kernels read the rewards exactly as float64 (as the
    reference does), and every mask dtype is multiplied into the float32 value once."""
    rewards, group_ids, mask = awkward_batch("L2100", seed=11)
    noise = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    mask = mask.to(mask_dtype) if mask_dtype != torch.float32 else mask * 0.75
    cfg = SawConfig(tuple(f"r{k}" for k in range(rewards.shape[1])), mode=mode)
    run_and_compare((rewards + noise).to(rewards_dtype), group_ids, mask, cfg)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_constant_groups_are_exactly_zero_and_constant_keys_get_zero_weight(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1")
    rewards[group_ids == 0] = torch.tensor([0.1, 4.2, 1.0], dtype=torch.float64)  # inexact means
    rewards[:, 2] = 4.2  # a dimension with zero batch variance (and a mean that does not round exactly)
    for dtype in (torch.float64, torch.float32):
        result = run_and_compare(rewards.to(dtype), group_ids, mask, SawConfig(KEYS3, mode=mode))
        assert result.std[2].item() == 0.0 and result.weights[2].item() == 0.0, dtype
    if mode == "grpo":
        zeros = result.advantages.cpu()[group_ids == 0]
        assert (zeros == 0).all() and not torch.signbit(zeros).any()


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
def test_masked_tokens_are_positive_zero(mode):
    """v * 0 is -0.0 for a negative row value; the write adds +0.0 (docs/spec.md: tokens outside the mask are 0)."""
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=12)
    result = run_and_compare(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))
    negative_rows = (result.advantages.cpu() < 0).any(dim=1)
    assert negative_rows.sum() >= 3 and (mask[negative_rows] == 0).any()  # the case that gave -0.0
    assert not torch.signbit(result.advantages.cpu()[mask == 0]).any()


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
    mask[1] = (mask[1] > 0).float()
    run_and_compare(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize(
    "ids", [[0, 10**8], [2**62 - 1, -(2**62)], [-5, -1], [7, 3]], ids=["0-1e8", "near-2^62", "negative", "unsorted"])
def test_any_int64_group_ids_give_the_dense_result(ids, mode):
    """Ids are compared, never used as sizes: the result equals that of the dense ids 0..G-1 (same order)."""
    rewards, dense, mask = awkward_batch("group-of-70", seed=5)
    sparse = torch.tensor(ids, dtype=torch.int64)[dense]
    ranked = torch.argsort(torch.argsort(torch.tensor(ids)))[dense]  # dense ids in the sparse ids' order
    cfg = SawConfig(("a", "b"), mode=mode)
    result = run_and_compare(rewards, sparse, mask, cfg)
    assert torch.equal(result.advantages, triton(rewards, ranked, mask, cfg).advantages)


@pytest.mark.parametrize("mode,dtype", [("gdpo", torch.float64), ("grpo", torch.float32)], ids=str)
def test_a_group_over_several_statistics_blocks(dtype, mode):
    """1100 rows in one group next to small ones, over 3 statistics programs: the program that owns the big
    group follows it across the others' blocks, in several steps."""
    generator = torch.Generator().manual_seed(6)
    n = 1300
    group_ids = torch.cat([torch.zeros(1100, dtype=torch.int64), 1 + torch.arange(200) // 3])
    group_ids = group_ids[torch.randperm(n, generator=generator)]
    rewards = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 4 - 1).to(dtype)
    mask = (torch.rand(n, 3, generator=generator) < 0.8).to(torch.bool)
    cfg = SawConfig(("a", "b"), mode=mode)
    assert common.plan(n, 3, 2, 1, mode == "gdpo").programs == 3
    for ids_sorted in (False, True):
        batch = grouped(rewards, group_ids, mask) if ids_sorted else (rewards, group_ids, mask)
        result = run_and_compare(*batch, cfg, ids_sorted=ids_sorted)
        if torch.cuda.is_available():
            assert_same_bits(result, triton(*batch, cfg, ids_sorted))


@pytest.mark.parametrize("mode,dynamic", list(EXAMPLE_ADVANTAGES), ids=lambda v: str(v))
def test_worked_example(mode, dynamic):
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode, dynamic=dynamic, reward_min=EXAMPLE_REWARD_MIN)
    for ids_sorted in (False, True):
        result = run_and_compare(EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, cfg, ids_sorted)
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
    """The status words carry the first non-finite (row, key) out of the kernels."""
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=8)
    rewards[row, key] = bad
    rewards[row + 1:, key] = float("nan")  # later bad rows: the first one is named
    with pytest.raises(SawInputError, match=rf"reward '{KEYS3[key]}' is {bad} at row {row}: rewards must be finite"):
        triton(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode))


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_the_status_words_refuse_single_rollout_groups_and_warn_below_reward_min(mode, caplog):
    """The tensor API's value checks, from the kernels' one status read (docs/spec.md, "Degenerate inputs"); the
    mask's values are checked on the torch path only (the streaming write keeps no reduction)."""
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=3)
    cfg = SawConfig(KEYS3, mode=mode)
    with pytest.raises(SawInputError, match=r"group_ids: every group has one rollout \(15 rollouts, 15 distinct ids\)"):
        triton(rewards, torch.arange(15) * 7 - 50, mask, cfg)
    shifted = rewards.clone()
    shifted[:, 1] = shifted[:, 1].abs() + 1  # keys 1 and 2 above their minimum 0: only key 0 is named
    shifted[:, 2] = shifted[:, 2].abs()
    lowest = float(shifted[:, 0].min())
    with caplog.at_level("WARNING", logger="saw_verl.weights"):
        triton(shifted, group_ids, mask, SawConfig(KEYS3, mode=mode, option_names={"reward_min": f"{mode}.reward_min"}))
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"saw_verl: reward 'a' reaches {lowest:g}, below its {mode}.reward_min entry 0: SAW's CV assumes "
                    f"r - m >= 0. Set {mode}.reward_min to the reward's theoretical minimum (warned once)"], said


@pytest.mark.parametrize("preset,mode,norm_by_std,keys", equal_cv_cases())
def test_equal_cvs_give_exactly_the_dynamic_false_advantages(preset, mode, norm_by_std, keys):
    """docs/spec.md Step 1, "Equal CVs", in the kernels' Step 1: weights exactly 1, advantages the baseline's bits."""
    results = [triton(EQUAL_CV_REWARDS[:, :keys], EQUAL_CV_GROUPS, EQUAL_CV_MASK, SawConfig(
        tuple("abc"[:keys]), mode=mode, preset=preset, dynamic=dynamic, norm_by_std=norm_by_std))
        for dynamic in (True, False)]
    assert results[0].weights.tolist() == [1.0] * keys
    assert torch.equal(results[0].advantages, results[1].advantages)


@pytest.mark.parametrize("ids_sorted", [False, True], ids=["sorted-on-device", "ids-sorted"])
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_launch_and_sync_budget(mode, ids_sorted):
    """Every torch op and kernel launch of one call on the public path, after a warm-up (constants cached):
    LAUNCHES Triton kernels, torch.sort only when the ids are not said to be sorted, one host read."""
    rewards, group_ids, mask = (t.to(DEVICE) for t in grouped(*awkward_batch("L63-groups-7-7-1", seed=9)))
    cfg = SawConfig(KEYS3, mode=mode)
    counted = count_launches(lambda: saw_advantages(rewards, group_ids, mask, cfg, backend="triton",
                                                    ids_sorted=ids_sorted))
    assert counted.kernels == LAUNCHES[mode], counted
    assert counted.launching_ops == ([] if ids_sorted else ["sort"]), counted  # no fill, no copy, no constants
    assert counted.host_reads == HOST_SYNCS, counted


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_a_wrong_ids_sorted_hint_is_caught_and_run_again_with_the_sort(mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=13)  # shuffled groups
    cfg = SawConfig(KEYS3, mode=mode)
    run_and_compare(rewards, group_ids, mask, cfg, ids_sorted=True)
    rewards, group_ids, mask = (t.to(DEVICE) for t in (rewards, group_ids, mask))
    counted = count_launches(lambda: saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=True))
    assert counted.kernels == 2 * LAUNCHES[mode] and counted.launching_ops == ["sort"], counted
    assert counted.host_reads == 2 * HOST_SYNCS, counted


@pytest.mark.parametrize("function,mode", [(saw_grpo_advantages, "grpo"), (saw_gdpo_advantages, "gdpo")])
def test_public_tensor_functions(function, mode):
    rewards, group_ids, mask = awkward_batch("L63-groups-7-7-1", seed=7)
    options = dict(preset="official", reward_min=(0.0, -3.0, 0.0))
    actual = function(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), backend="triton", **options)
    expected = reference_saw_advantages(rewards, group_ids, mask, SawConfig(KEYS3, mode=mode, **options))
    for field in ("advantages", "weights"):
        reference = getattr(expected, field)
        assert_close(getattr(actual, field), reference, scaled_tolerance(reference, ADVANTAGES_RTOL), field)


def launcher_arguments(cfg: SawConfig):
    values = constants_vector(cfg.delta, cfg.epsilon, OFFICIAL_EPS, WHITEN_EPS, cfg.history_decay, cfg.reward_min,
                              cfg.static_weights)
    return torch.tensor(values, dtype=torch.float64, device=DEVICE), cfg.preset, cfg.dynamic, cfg.norm_by_std


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saw_batches(max_rows=30, max_len=6))
def test_naive_is_the_reference(batch):
    """kernels/naive.py (the kernels' reference at their interface) against saw_verl.reference (the oracle)."""
    rewards, group_ids, mask, cfg = batch
    try:
        expected = reference_saw_advantages(rewards, group_ids, mask, cfg)
    except SawInputError:
        return
    naive = naive_gdpo if cfg.mode == "gdpo" else naive_grpo
    constants, *flags = launcher_arguments(cfg)
    advantages, summary = naive(rewards, group_ids, mask, constants.cpu(), *flags)
    assert_close(advantages, expected.advantages, scaled_tolerance(expected.advantages, ADVANTAGES_RTOL), "advantages")
    assert torch.equal(advantages[mask == 0], torch.zeros(int((mask == 0).sum())))
    for row, field in enumerate(common.SUMMARY):
        reference = getattr(expected, field)
        assert_close(summary[row], reference, scaled_tolerance(reference, WEIGHTS_RTOL), field)


@pytest.fixture
def small_tiles(monkeypatch):
    """Statistics steps of 16 elements: batches of a few dozen rows span several statistics programs and several
    steps of every loop (runs carried from one step to the next, runs owned past a block's end)."""
    monkeypatch.setattr(common, "GROUP_TILE", 16)
    monkeypatch.setattr(common, "BATCH_TILE", 16)
    common.plan.cache_clear()
    yield
    common.plan.cache_clear()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(saw_batches(max_rows=36, max_len=9), st.sampled_from(["shuffled", "ids-sorted", "wrong-hint"]))
def test_random_batches_over_several_statistics_programs(small_tiles, batch, order):
    """The launchers against kernels/naive.py and the public path against the reference, on random batches cut
    into statistics blocks of 2 to 16 positions."""
    rewards, group_ids, mask, cfg = batch
    if order == "ids-sorted":
        rewards, group_ids, mask = grouped(rewards, group_ids, mask)
    ids_sorted = order != "shuffled"
    try:
        expected = reference_saw_advantages(rewards, group_ids, mask, cfg)
    except SawInputError as error:
        with pytest.raises(SawInputError, match=str(error).split(";")[0]):
            triton(rewards, group_ids, mask, cfg, ids_sorted)
        return
    shape = common.plan(len(group_ids), mask.shape[1], rewards.shape[1], mask.element_size(), cfg.mode == "gdpo")
    assert shape.programs > 1 or len(group_ids) <= shape.group_chunk
    compare(triton(rewards, group_ids, mask, cfg, ids_sorted), expected, mask)
    launch, naive = (gdpo_advantages, naive_gdpo) if cfg.mode == "gdpo" else (grpo_advantages, naive_grpo)
    arguments = (rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), *launcher_arguments(cfg),
                 order == "ids-sorted")
    advantages, summary, _ = launch(*arguments)
    want_advantages, want_summary = naive(*arguments)
    assert_close(advantages, want_advantages, scaled_tolerance(want_advantages, ADVANTAGES_RTOL), "advantages")
    assert_close(summary, want_summary, scaled_tolerance(want_summary, WEIGHTS_RTOL), "summary")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 / 0 in the lanes past K
@pytest.mark.parametrize("decay", HISTORY_DECAYS)
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("preset", ["paper", "official"])
def test_history_over_a_sequence_of_steps(decay, mode, preset):
    """docs/spec.md, "History": the kernels merge the pool into Step 1 as the reference's decayed past batches say,
    and write the same pool as the torch path (a sparse key, a key constant at 0.1 for 4 steps, a drifting one)."""
    cfg = history_step_config(mode, preset, decay)
    on_device, on_cpu, past = SawHistory(), SawHistory(), []
    for step, (rewards, group_ids, mask) in enumerate(history_steps(seed=2)):
        actual = saw_advantages(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), cfg, backend="triton",
                                history=on_device)
        expected = reference_saw_advantages(rewards, group_ids, mask, cfg, past=past)
        past.append(rewards)
        compare(actual, expected, mask)
        assert_close(actual.batch_cv, expected.batch_cv, scaled_tolerance(expected.batch_cv, WEIGHTS_RTOL), "batch_cv")
        saw_advantages(rewards, group_ids, mask, cfg, backend="torch", history=on_cpu)
        assert_close(on_device.pool, on_cpu.pool, scaled_tolerance(on_cpu.pool[:3], STATISTICS_RTOL), f"pool {step}")
        if step < 4:  # one value (0.1) since the pool started: exactly 0
            assert actual.cv[1].item() == 0.0 and actual.weights[1].item() == 0.0


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_history_at_decay_zero_is_bit_identical_and_costs_no_launch(mode):
    """A history at decay 0 gives this batch's statistics to the bit; a history costs no launch and no read."""
    cfg = history_step_config(mode, "paper", 0.0)
    history = SawHistory()
    for rewards, group_ids, mask in history_steps(seed=4, steps=3):
        rewards, group_ids, mask = rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE)
        plain = saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=True)
        kept = saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=True, history=history)
        for field in ("advantages", "weights", "cv", "mean", "std", "batch_cv"):
            assert torch.equal(getattr(plain, field), getattr(kept, field)), field
    counted = count_launches(lambda: saw_advantages(rewards, group_ids, mask, cfg, backend="triton", ids_sorted=True,
                                                    history=history))
    assert counted.kernels == LAUNCHES[mode] and counted.launching_ops == [], counted
    assert counted.host_reads == HOST_SYNCS, counted


# Conditions (docs/spec.md, "Conditions and schedules"): a chain of depth 1 on two keys and one of depth 2 on three,
# fills other than 0; by hand: each key replaced by its fill where its condition key's gated value is below the
# threshold.
CHAINS = {
    "depth-1-K2": (("correct", "format"), {"format": ("correct", 1.0, 0.5)}),
    "depth-2-K3": (KEYS3, {"c": ("b", 0.25, 0.75), "b": ("a", 0.0, -0.5)}),
}


def gated_by_hand(rewards: torch.Tensor, chain: str) -> torch.Tensor:
    """rewards (N, K) -> float64 rewards with CHAINS[chain] applied, written out key by key."""
    out = rewards.double().clone()
    if chain == "depth-1-K2":
        out[:, 1] = torch.where(out[:, 0] >= 1.0, out[:, 1], 0.5)
    else:
        out[:, 1] = torch.where(out[:, 0] >= 0.0, out[:, 1], -0.5)
        out[:, 2] = torch.where(out[:, 1] >= 0.25, out[:, 2], 0.75)
    return out


def chain_batch(chain: str, seed: int):
    """(rewards, group_ids, mask) of CHAINS[chain]'s K keys: 72 rows in 2 groups for K = 2, 15 in 3 for K = 3."""
    return awkward_batch("group-of-70" if chain == "depth-1-K2" else "L63-groups-7-7-1", seed)


def assert_same_gated_fraction(actual, expected):
    assert actual.gated_fraction is not None and expected.gated_fraction is not None
    assert torch.equal(actual.gated_fraction.cpu(), expected.gated_fraction.cpu()), (actual.gated_fraction,
                                                                                     expected.gated_fraction)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize("chain", list(CHAINS))
def test_conditions_are_applied_in_the_kernels(chain, mode):
    """A conditioned call equals the reference on the rewards gated by hand and the torch path on the same config,
    gated fractions included, within the kernels' launch and read budget; without conditions there are none."""
    keys, conditions = CHAINS[chain]
    rewards, group_ids, mask = chain_batch(chain, seed=20)
    cfg = SawConfig(keys, mode=mode, conditions=conditions, reward_min=(-3.0,) * len(keys))
    hand = gated_by_hand(rewards, chain)
    assert not torch.equal(hand, rewards.double())
    expected = reference_saw_advantages(hand, group_ids, mask, cfg)
    actual = triton(rewards, group_ids, mask, cfg)
    compare(actual, expected, mask)
    on_torch = saw_advantages(rewards, group_ids, mask, cfg, backend="torch")
    compare(actual, on_torch, mask)
    assert_same_gated_fraction(actual, on_torch)
    assert triton(rewards, group_ids, mask, SawConfig(keys, mode=mode)).gated_fraction is None
    rewards, group_ids, mask = (t.to(DEVICE) for t in (rewards, group_ids, mask))
    counted = count_launches(lambda: saw_advantages(rewards, group_ids, mask, cfg, backend="triton"))
    assert counted.kernels == LAUNCHES[mode] and counted.launching_ops == ["sort"], counted
    assert counted.host_reads == HOST_SYNCS, counted


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 / 0 in the lanes past K
@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_conditions_with_a_history(mode):
    """The pool holds the conditioned rewards: three steps equal the reference on the rewards gated by hand (with
    the earlier steps', gated, as its past) and the torch path's results and pool."""
    keys, conditions = CHAINS["depth-2-K3"]
    cfg = SawConfig(keys, mode=mode, conditions=conditions, reward_min=(-3.0,) * 3, history_decay=0.5)
    on_device, on_cpu, past = SawHistory(), SawHistory(), []
    for step in range(3):
        rewards, group_ids, mask = chain_batch("depth-2-K3", seed=30 + step)
        actual = saw_advantages(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), cfg, backend="triton",
                                history=on_device)
        compare(actual, reference_saw_advantages(gated_by_hand(rewards, "depth-2-K3"), group_ids, mask, cfg, past),
                mask)
        past.append(gated_by_hand(rewards, "depth-2-K3"))
        on_torch = saw_advantages(rewards, group_ids, mask, cfg, backend="torch", history=on_cpu)
        assert_same_gated_fraction(actual, on_torch)
        assert_close(on_device.pool, on_cpu.pool, scaled_tolerance(on_cpu.pool[:3], STATISTICS_RTOL), f"pool {step}")


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_conditioned_launchers_match_naive_over_several_programs(small_tiles, mode):
    """The launchers with the conditions in their constants (two levels), over statistics blocks of a few rows,
    against kernels/naive.py (each key's own condition, resolved key by key), the gated fractions' row included;
    naive against the reference on the rewards gated by hand."""
    keys, conditions = CHAINS["depth-2-K3"]
    generator = torch.Generator().manual_seed(40)
    group_ids = torch.randint(0, 9, (40,), generator=generator)
    rewards = torch.randint(-2, 3, (40, 3), generator=generator).double() * 0.5
    mask = (torch.rand(40, 6, generator=generator) < 0.8).long()
    cfg = SawConfig(keys, mode=mode, conditions=conditions, reward_min=(-3.0,) * 3)
    constants = torch.tensor(constants_vector(cfg.delta, cfg.epsilon, OFFICIAL_EPS, WHITEN_EPS, 0.0, cfg.reward_min,
                                              cfg.static_weights, cfg.conditions), dtype=torch.float64)
    assert common.plan(40, 6, 3, 8, mode == "gdpo").programs > 1 and common.condition_levels(constants, 3) == 2
    launch, naive = (gdpo_advantages, naive_gdpo) if mode == "gdpo" else (grpo_advantages, naive_grpo)
    flags = (cfg.preset, cfg.dynamic, cfg.norm_by_std)
    advantages, summary, _ = launch(rewards.to(DEVICE), group_ids.to(DEVICE), mask.to(DEVICE), constants.to(DEVICE),
                                    *flags)
    want_advantages, want_summary = naive(rewards, group_ids, mask, constants, *flags)
    assert summary.shape == want_summary.shape == (len(common.SUMMARY) + 1, 3)
    assert_close(advantages, want_advantages, scaled_tolerance(want_advantages, ADVANTAGES_RTOL), "advantages")
    assert_close(summary, want_summary, scaled_tolerance(want_summary, WEIGHTS_RTOL), "summary")
    expected = reference_saw_advantages(gated_by_hand(rewards, "depth-2-K3"), group_ids, mask, cfg)
    assert_close(want_advantages, expected.advantages, scaled_tolerance(expected.advantages, ADVANTAGES_RTOL), "naive")
