"""The registry's rival estimators (docs/estimators.md) against their float64 references on random batches (any
K >= 2, groups of 2-16 in any order, ragged masks), `gdpo` against verl 0.9.1's own `gdpo`, and the registry's
option and input errors."""

from __future__ import annotations

import pytest
import torch

from saw_verl import SawConfig, SawInputError, compute_advantages, saw_gdpo_advantages
from saw_verl.reference_rivals import reference_corr_grpo, reference_gd2po, reference_gdpo, reference_mo_grpo

TOLERANCE = 1e-5  # float32 advantages vs the float64 oracle
SEEDS = range(12)
REFERENCES = {"gdpo": reference_gdpo, "mo_grpo": reference_mo_grpo, "corr_grpo": reference_corr_grpo}


def random_batch(seed: int, min_group: int = 2, max_group: int = 16):
    """(rewards (N, K) float64, group ids (N,) shuffled, mask (N, L) ragged with an empty row, weights (K,)):
    K in 2..5; rewards from a small grid (ties, keys constant in a group) or continuous, per key."""
    gen = torch.Generator().manual_seed(seed)
    k = int(torch.randint(2, 6, (1,), generator=gen))
    sizes = torch.randint(min_group, max_group + 1, (int(torch.randint(1, 7, (1,), generator=gen)),), generator=gen)
    group_ids = torch.repeat_interleave(torch.arange(len(sizes)) * 7 - 5, sizes)  # sparse, negative ids
    group_ids = group_ids[torch.randperm(len(group_ids), generator=gen)]
    n = len(group_ids)
    grid = torch.tensor([0.0, 0.5, 1.0, 3.0])[torch.randint(0, 4, (n, k), generator=gen)]
    continuous = torch.randn(n, k, generator=gen, dtype=torch.float64) * 2
    rewards = torch.where(torch.rand(k, generator=gen) < 0.5, grid.double(), continuous)
    length = int(torch.randint(1, 12, (1,), generator=gen))
    lengths = torch.randint(0, length + 1, (n,), generator=gen)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]
    weights = torch.tensor([0.0, 0.5, 1.0, 2.0])[torch.randint(1, 4, (k,), generator=gen)].tolist()
    return rewards, group_ids, mask.to(torch.int64), weights


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", sorted(REFERENCES))
@pytest.mark.parametrize("norm_by_std", [True, False])
def test_matches_reference(estimator, seed, norm_by_std):
    rewards, group_ids, mask, weights = random_batch(seed)
    result = compute_advantages(estimator, rewards, group_ids, mask, reward_weights=weights, norm_by_std=norm_by_std)
    expected = REFERENCES[estimator](rewards, group_ids, mask, weights, norm_by_std=norm_by_std)
    assert result.advantages.dtype == torch.float32 and result.advantages.shape == mask.shape
    torch.testing.assert_close(result.advantages.double(), expected, atol=TOLERANCE, rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [None, 0.2, 0.8])
def test_gd2po_matches_reference(seed, tau):
    rewards, group_ids, mask, weights = random_batch(seed)
    result = compute_advantages("gd2po", rewards, group_ids, mask, reward_weights=weights, tau=tau)
    expected, keep, conflict = reference_gd2po(rewards, group_ids, mask, weights, tau=tau)
    torch.testing.assert_close(result.advantages.double(), expected, atol=TOLERANCE, rtol=1e-5)
    assert result.batch["keep_ratio"].item() == pytest.approx(sum(keep) / len(keep))
    assert result.batch["conflict_ratio"].item() == pytest.approx(sum(conflict) / len(conflict))


@pytest.mark.parametrize("seed", SEEDS)
def test_gdpo_sequence_whitening_matches_reference(seed):
    rewards, group_ids, mask, weights = random_batch(seed)
    result = compute_advantages("gdpo", rewards, group_ids, mask, reward_weights=weights, whitening="sequence",
                                epsilon=1e-4)
    expected = reference_gdpo(rewards, group_ids, mask, weights, epsilon=1e-4, whitening="sequence")
    torch.testing.assert_close(result.advantages.double(), expected, atol=TOLERANCE, rtol=1e-5)


@pytest.mark.parametrize("estimator", ["gdpo", "mo_grpo", "corr_grpo", "gd2po"])
def test_singleton_and_constant_groups(estimator):
    """A singleton group and a group constant in every key: the references' rules (constant: exactly 0)."""
    rewards = torch.tensor([[1.0, 0.0], [0.3, 1.0], [0.3, 1.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.1]],
                           dtype=torch.float64)
    group_ids = torch.tensor([0, 1, 1, 2, 2, 3])
    mask = torch.ones(6, 3, dtype=torch.int64)
    result = compute_advantages(estimator, rewards, group_ids, mask)
    reference = {**REFERENCES, "gd2po": lambda *a: reference_gd2po(*a)[0]}[estimator]
    torch.testing.assert_close(result.advantages.double(), reference(rewards, group_ids, mask, [1.0, 1.0]),
                               atol=TOLERANCE, rtol=1e-5)
    if estimator in ("mo_grpo", "corr_grpo"):  # no batch step: the constant group keeps its exact 0
        assert torch.all(result.advantages[1:3] == 0)


def test_corr_grpo_perfectly_correlated_keys_is_grpo_over_sqrt_k_squared():
    """Two identical keys: correlation matrix all ones (sum 4), so A = 2 (r - mean) / sqrt(4 + eps)."""
    r = torch.tensor([0.0, 1.0, 3.0, 0.0])
    rewards = torch.stack([r, r], dim=1)
    result = compute_advantages("corr_grpo", rewards, torch.zeros(4, dtype=torch.int64), torch.ones(4, 1))
    expected = 2 * (r - r.mean()) / (4 + 1e-6) ** 0.5
    torch.testing.assert_close(result.advantages[:, 0], expected, atol=1e-6, rtol=0)


def test_saw_entries_are_the_saw_tensor_api():
    rewards, group_ids, mask, weights = random_batch(3)
    keys = tuple(f"k{i}" for i in range(rewards.shape[1]))
    ours = compute_advantages("saw_gdpo", rewards, group_ids, mask, reward_keys=keys, reward_weights=weights)
    theirs = saw_gdpo_advantages(rewards, group_ids, mask, reward_keys=keys, static_weights=weights)
    assert torch.equal(ours.advantages, theirs.advantages)
    assert ours.metrics(keys)[f"saw/{keys[0]}/weight"] == theirs.weights[0].item()


def test_per_key_metrics_of_every_estimator():
    rewards, group_ids, mask, _ = random_batch(5)
    keys = [f"k{i}" for i in range(rewards.shape[1])]
    for estimator in ("gdpo", "mo_grpo", "corr_grpo", "gd2po"):
        metrics = compute_advantages(estimator, rewards, group_ids, mask, reward_keys=keys).metrics(keys)
        for k, key in enumerate(keys):
            assert metrics[f"{estimator}/{key}/mean"] == pytest.approx(rewards[:, k].mean().item())
            assert metrics[f"{estimator}/{key}/std"] == pytest.approx(rewards[:, k].std().item())
            assert metrics[f"{estimator}/{key}/weight"] == 1.0
    gates = compute_advantages("gd2po", rewards, group_ids, mask).metrics(keys)
    assert {"gd2po/keep_ratio", "gd2po/conflict_ratio", "gd2po/group_keep_ratio_mean"} <= set(gates)


@pytest.mark.parametrize(
    "estimator, options, message",
    [
        ("gdpo", {"whiteing": "token"}, "did you mean 'whitening'"),
        ("gd2po", {"tua": 0.5}, "did you mean 'tau'"),
        ("mo_grpo", {"tau": 0.5}, "unknown mo_grpo option 'tau'"),
        ("corr_grpo", {"dynamic": False}, "unknown corr_grpo option 'dynamic'"),
        ("saw_gdpo", {"static_weights": [1, 1]}, "did you mean 'reward_weights'"),
        ("gdpo", {"whitening": "rows"}, "expected one of ('token', 'sequence')"),
        ("gd2po", {"tau": 1.5}, "tau=1.5"),
        ("gdpo", {"reward_weights": [1.0]}, "1 entries but there are 2 reward keys"),
        ("gdpp", {}, "did you mean 'gdpo'"),
    ],
)
def test_option_errors(estimator, options, message):
    with pytest.raises(SawInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compute_advantages(estimator, torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), torch.ones(4, 3), **options)


@pytest.mark.parametrize("estimator", ["gdpo", "mo_grpo", "corr_grpo", "gd2po"])
def test_input_errors_name_the_key_row_and_shape(estimator):
    rewards = torch.rand(4, 2)
    rewards[2, 1] = float("nan")
    with pytest.raises(SawInputError, match="reward 'b' is nan at row 2"):
        compute_advantages(estimator, rewards, torch.tensor([0, 0, 1, 1]), torch.ones(4, 3), reward_keys=["a", "b"])
    with pytest.raises(SawInputError, match=r"group_ids must have shape \(N,\) = \(4,\)"):
        compute_advantages(estimator, torch.rand(4, 2), torch.tensor([0, 0, 1]), torch.ones(4, 3))
    with pytest.raises(SawInputError, match=r"response_mask must be \(N=4, L\)"):
        compute_advantages(estimator, torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), torch.ones(3, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("estimator", ["gdpo", "mo_grpo", "corr_grpo", "gd2po"])
def test_cuda_equals_cpu(estimator):
    rewards, group_ids, mask, weights = random_batch(7)
    cpu = compute_advantages(estimator, rewards, group_ids, mask, reward_weights=weights).advantages
    cuda = compute_advantages(estimator, rewards.cuda(), group_ids.cuda(), mask.cuda(), reward_weights=weights)
    assert cuda.advantages.device.type == "cuda"
    torch.testing.assert_close(cuda.advantages.cpu(), cpu, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("estimator", ["gdpo", "mo_grpo", "corr_grpo", "gd2po"])
def test_a_weighting_mask_and_groups_all_of_one_rollout_are_refused(estimator):
    """As for SAW: a mask value other than 0 / 1 would scale the advantages; groups of one rollout compare nothing."""
    mask = torch.ones(4, 3)
    mask[1, 2] = 0.5
    with pytest.raises(SawInputError, match=r"response_mask must hold 0 and 1 only .* 0.5 at row 1, token 2"):
        compute_advantages(estimator, torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), mask)
    with pytest.raises(SawInputError, match=r"group_ids: every group has one rollout \(4 rollouts"):
        compute_advantages(estimator, torch.rand(4, 2), torch.tensor([3, 1, 2, 0]), torch.ones(4, 3))
