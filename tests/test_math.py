"""The float64 reference against the worked example of docs/spec.md, and the torch fast path against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from saw_verl import SawConfig, SawHistory, SawInputError, saw_advantages
from saw_verl.reference import reference_saw_advantages
from spec_cases import (
    EXAMPLE_ADVANTAGES,
    EXAMPLE_CV,
    EXAMPLE_GROUPS,
    EXAMPLE_KEYS,
    EXAMPLE_MASK,
    EXAMPLE_REWARD_MIN,
    EXAMPLE_REWARDS,
    EXAMPLE_WEIGHTS,
    EQUAL_CV_GROUPS,
    EQUAL_CV_MASK,
    EQUAL_CV_REWARDS,
    assert_close,
    equal_cv_cases,
    saw_batches,
    scaled_tolerance,
)

IMPLEMENTATIONS = {
    "reference": lambda r, g, m, cfg: reference_saw_advantages(r, g, m, cfg),
    "torch": lambda r, g, m, cfg: saw_advantages(r, g, m, cfg, backend="torch"),
}


def example_config(mode, preset="paper", dynamic=True):
    return SawConfig(EXAMPLE_KEYS, mode=mode, preset=preset, dynamic=dynamic, reward_min=EXAMPLE_REWARD_MIN)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("preset,mode", EXAMPLE_WEIGHTS, ids=lambda v: str(v))
def test_worked_example_weights_and_advantages(impl, preset, mode):
    result = IMPLEMENTATIONS[impl](EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, example_config(mode, preset))
    assert_close(result.cv, EXAMPLE_CV, 1e-6, "cv")
    assert_close(result.weights, EXAMPLE_WEIGHTS[preset, mode], 1e-6, "weights")
    assert_close(result.advantages[:, 0], EXAMPLE_ADVANTAGES[mode, True], 1e-6, "advantages")
    assert result.advantages.dtype == torch.float32


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_worked_example_plain_gdpo(impl):
    result = IMPLEMENTATIONS[impl](EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, example_config("gdpo", dynamic=False))
    assert result.weights.tolist() == [1.0, 1.0]
    assert_close(result.advantages[:, 0], EXAMPLE_ADVANTAGES["gdpo", False], 1e-6, "advantages")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saw_batches())
def test_torch_path_equals_reference_on_random_batches(batch):
    rewards, group_ids, mask, cfg = batch
    try:
        expected = reference_saw_advantages(rewards, group_ids, mask, cfg)
    except SawInputError as error:  # e.g. GDPO with fewer than 2 tokens: the fast path must refuse the same way
        with pytest.raises(SawInputError, match=str(error).split(";")[0]):
            saw_advantages(rewards, group_ids, mask, cfg, backend="torch")
        return
    actual = saw_advantages(rewards, group_ids, mask, cfg, backend="torch")
    assert torch.isfinite(actual.advantages).all()
    for field in ("weights", "cv", "mean", "std"):
        assert_close(getattr(actual, field), getattr(expected, field), scaled_tolerance(getattr(expected, field), 1e-5), field)
    assert_close(actual.advantages, expected.advantages, scaled_tolerance(expected.advantages, 1e-5), "advantages")
    for result in (actual, expected):
        masked = result.advantages[mask.to(torch.bool).logical_not()]
        assert (masked == 0).all() and not torch.signbit(masked).any(), "masked tokens must be exactly +0.0"


def test_constant_group_gets_exactly_zero_where_verl_leaks():
    rewards = torch.tensor([[4.2]] * 16 + [[0.0], [1.0]], dtype=torch.float64)
    groups = torch.tensor([0] * 16 + [1, 1])
    result = saw_advantages(rewards, groups, torch.ones(18, 3, dtype=torch.int64), SawConfig(("score",), mode="grpo"))
    assert (result.advantages[:16] == 0).all()
    assert (result.advantages[16:, 0].abs() > 0.5).all()


def test_single_rollout_group_uses_mean_zero_std_one():
    rewards = torch.tensor([[2.0], [1.0], [3.0]], dtype=torch.float64)
    result = saw_advantages(rewards, torch.tensor([0, 1, 1]), torch.ones(3, 2), SawConfig(("score",), mode="grpo"))
    assert result.advantages[0, 0].item() == pytest.approx(2.0 / (1 + 1e-6), abs=1e-7)


def test_zero_variance_dimension_gets_zero_weight_and_all_constant_falls_back():
    learned = torch.tensor([[1.0, 0.0], [1.0, 2.0], [1.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    groups, mask = torch.tensor([0, 0, 1, 1]), torch.ones(4, 2, dtype=torch.bool)
    result = saw_advantages(learned, groups, mask, SawConfig(("format", "correctness"), mode="gdpo"))
    assert result.weights.tolist() == [0.0, 2.0]
    constant = torch.ones(4, 2, dtype=torch.float64)
    result = saw_advantages(constant, groups, mask, SawConfig(("format", "correctness"), mode="grpo"))
    assert result.weights.tolist() == [1.0, 1.0]
    assert (result.advantages == 0).all()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("preset,mode,norm_by_std,keys", equal_cv_cases())
def test_equal_cvs_give_exactly_the_dynamic_false_advantages(impl, preset, mode, norm_by_std, keys):
    """docs/spec.md Step 1, "Equal CVs": the weights are exactly 1, so SAW is its baseline to the bit (before, the
    paper's saw_grpo weights summed to 1: without the std division its advantages were the baseline's / K)."""
    rewards = EQUAL_CV_REWARDS[:, :keys]
    results = {
        dynamic: IMPLEMENTATIONS[impl](rewards, EQUAL_CV_GROUPS, EQUAL_CV_MASK, SawConfig(
            tuple("abc"[:keys]), mode=mode, preset=preset, dynamic=dynamic, norm_by_std=norm_by_std))
        for dynamic in (True, False)
    }
    assert len(set(results[True].cv.tolist())) == 1, "the batch must have equal CVs"
    assert results[True].weights.tolist() == [1.0] * keys
    assert torch.equal(results[True].advantages, results[False].advantages)
    assert results[True].advantages.abs().max() > 0


def test_all_zero_mask_rows_get_zero_and_no_whitening_weight():
    rewards = torch.tensor([[0.0], [1.0], [5.0], [-7.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0]])
    cfg = SawConfig(("score",), mode="gdpo")
    result = saw_advantages(rewards, torch.tensor([0, 0, 1, 1]), mask, cfg)
    assert (result.advantages[2:] == 0).all()
    only_live = saw_advantages(rewards[:2], torch.tensor([0, 0]), mask[:2], cfg)
    assert_close(result.advantages[:2], only_live.advantages, 1e-6, "dead rows must not move the whitening")


def test_torch_path_is_deterministic_and_accepts_strided_masks():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(300, 3, generator=generator, dtype=torch.float64)
    groups = torch.randint(0, 40, (300,), generator=generator)
    wide = torch.randint(0, 2, (300, 130), generator=generator)
    strided = wide[:, ::2]
    cfg = SawConfig(("a", "b", "c"), mode="gdpo")
    first = saw_advantages(rewards, groups, strided, cfg)
    second = saw_advantages(rewards, groups, strided.contiguous(), cfg)
    assert torch.equal(first.advantages, second.advantages)
    expected = reference_saw_advantages(rewards, groups, strided, cfg)
    assert_close(first.advantages, expected.advantages, 1e-5, "strided mask")


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
@pytest.mark.parametrize(
    "ids", [[0, 10**8], [2**62 - 1, -(2**62)], [-5, -1], [7, 3]], ids=["0-1e8", "near-2^62", "negative", "unsorted"])
def test_torch_path_takes_any_int64_group_ids_at_dense_cost(ids, mode):
    """Ids are ranked by one sort: tables have N rows whatever the values (ids {0, 1e8} took 19 s and 6 GB)."""
    generator = torch.Generator().manual_seed(1)
    dense = torch.randint(0, 2, (40,), generator=generator)
    rewards = torch.randint(-3, 4, (40, 2), generator=generator).double()
    mask = torch.randint(0, 2, (40, 5), generator=generator)
    cfg = SawConfig(("a", "b"), mode=mode)
    sparse = saw_advantages(rewards, torch.tensor(ids)[dense], mask, cfg, backend="torch")
    assert torch.equal(sparse.advantages, saw_advantages(rewards, dense, mask, cfg, backend="torch").advantages)
    wrong_hint = saw_advantages(rewards, torch.tensor(ids)[dense], mask, cfg, num_groups=2, backend="torch")
    assert torch.equal(sparse.advantages, wrong_hint.advantages), "a num_groups hint that does not fit is ignored"
    expected = reference_saw_advantages(rewards, dense, mask, cfg)
    assert_close(sparse.advantages, expected.advantages, scaled_tolerance(expected.advantages, 1e-6), "advantages")


def test_torch_path_reads_the_device_once(monkeypatch):
    """One host read per call (finiteness and GDPO's M together): each is a sync on CUDA. (On the CPU a
    num_groups hint adds one more read, of the ids' range: free there, and never done on a GPU.)"""
    reads = []
    for method in ("tolist", "item"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, **k: reads.append(1) or _o(self, *a, **k))
    rewards, groups = torch.randn(12, 2, dtype=torch.float64), torch.arange(12) % 3
    for mode in ("grpo", "gdpo"):
        for history in (None, SawHistory()):
            cfg = SawConfig(("a", "b"), mode=mode, history_decay=0.0 if history is None else 0.9)
            for _ in range(2):  # with a history: an empty pool, then a merged one
                reads.clear()
                saw_advantages(rewards, groups, torch.ones(12, 4), cfg, backend="torch", history=history)
                assert len(reads) == 1, (mode, history)
