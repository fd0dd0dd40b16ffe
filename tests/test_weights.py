"""saw_verl.weights (Step 1 shared by verl, TRL and OpenRLHF) against the float64 reference, NaN rules included."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saw_verl import SawConfig, batch_weights, metric_name, step_metrics
from saw_verl.reference import reference_weights
from spec_cases import EXAMPLE_CV, EXAMPLE_KEYS, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, EXAMPLE_WEIGHTS, assert_close, scaled_tolerance


def check_against_reference(rewards: torch.Tensor, cfg: SawConfig) -> None:
    """1e-12 relative, times the CV's condition number max|r - m| / |mean - m| where a mean sits near 0."""
    expected = [torch.tensor(column, dtype=torch.float64) for column in reference_weights(rewards, cfg)]
    actual = batch_weights(rewards, cfg)
    shifted = rewards - torch.tensor(cfg.reward_min, dtype=torch.float64)
    condition = (shifted.abs().nan_to_num(0).amax(dim=0) / (shifted.nanmean(dim=0).abs() + cfg.delta)).nan_to_num(0)
    for name, got, want in zip(actual._fields, actual, expected):
        assert got.dtype == torch.float64 and got.shape == (cfg.num_keys,), f"{name}: {got.dtype} {tuple(got.shape)}"
        assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{name}: NaN pattern {got} vs {want}"
        scored = ~torch.isnan(want)
        relative = 1e-12 * (1 + (float(condition.max()) if name in ("weights", "cv") else 0.0))
        assert_close(got[scored], want[scored], scaled_tolerance(want[scored], relative), name)


@pytest.mark.parametrize("preset,mode", EXAMPLE_WEIGHTS, ids=lambda v: str(v))
def test_worked_example(preset, mode):
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode, preset=preset, reward_min=EXAMPLE_REWARD_MIN)
    result = batch_weights(EXAMPLE_REWARDS, cfg)
    assert_close(result.cv, EXAMPLE_CV, 1e-6, "cv")
    assert_close(result.weights, EXAMPLE_WEIGHTS[(preset, mode)], 1e-6, "weights")


def test_unscored_entries_leave_their_key_statistics():
    """NaN = a reward function that did not score the rollout (TRL): left out of that key only."""
    rewards = torch.tensor([[1.0, 0.0], [math.nan, 1.0], [3.0, 1.0], [math.nan, 0.5]], dtype=torch.float64)
    cfg = SawConfig(("a", "b"), mode="grpo")
    result = batch_weights(rewards, cfg)
    assert result.mean.tolist()[0] == 2.0 and result.std.tolist()[0] == pytest.approx(math.sqrt(2.0), rel=1e-15)
    check_against_reference(rewards, cfg)


@pytest.mark.parametrize("column", [[math.nan] * 4, [math.nan, 2.0, math.nan, math.nan], [4.2] * 4],
                         ids=["never-scored", "one-score", "constant"])
def test_key_without_spread_gets_weight_zero(column):
    rewards = torch.tensor([column, [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64).T
    result = batch_weights(rewards, SawConfig(("flat", "live"), mode="gdpo"))
    assert result.std[0] == 0 and result.cv[0] == 0 and result.weights[0] == 0
    assert result.weights[1] == 2.0  # GDPO: the weights sum to K
    assert torch.isnan(result.mean[0]) == all(math.isnan(x) for x in column)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 12).flatmap(lambda n: st.integers(1, 5).flatmap(lambda k: st.tuples(
        st.lists(st.lists(st.one_of(st.just(math.nan), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 4.2]),
                                    st.floats(-5, 5, allow_nan=False)), min_size=k, max_size=k), min_size=n, max_size=n),
        st.sampled_from(["grpo", "gdpo"]), st.sampled_from(["paper", "official"]), st.booleans(),
    )))
)
def test_matches_reference_with_nans(case):
    rows, mode, preset, dynamic = case
    rewards = torch.tensor(rows, dtype=torch.float64)
    keys = tuple(f"r{k}" for k in range(rewards.shape[1]))
    check_against_reference(rewards, SawConfig(keys, mode=mode, preset=preset, dynamic=dynamic))


def test_step_metrics_names_every_key_and_statistic():
    cfg = SawConfig(EXAMPLE_KEYS, mode="grpo", reward_min=EXAMPLE_REWARD_MIN)
    metrics = step_metrics(cfg.reward_keys, batch_weights(EXAMPLE_REWARDS, cfg))
    assert sorted(metrics) == sorted(metric_name(k, s) for k in EXAMPLE_KEYS for s in ("weight", "cv", "mean", "std"))
    assert metrics["saw/format/weight"] == pytest.approx(0.75, abs=1e-6)
    assert all(isinstance(v, float) for v in metrics.values())
