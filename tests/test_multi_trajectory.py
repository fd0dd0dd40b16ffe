"""Multi-output agent sessions (verl v1): saw_grpo / saw_gdpo through verl's own
`compute_advantage_for_multi_trajectories` use only each session's final output (highest index of
`{uid}_{session_id}_{index}`) and broadcast its advantage, as verl's GRPO does. Sessions of 1-3 outputs,
rows shuffled; earlier outputs carry rewards of their own (even NaN) that must not be read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl import SawConfig, SawInputError
from saw_verl.integrations.verl import metrics, shim
from saw_verl.integrations.verl.sessions import agent_sessions
from spec_cases import REWARD_VALUES, saw_batches
from verl_batches import algorithm_config, final_outputs_reference, verl_batch, verl_session_rule
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

TOLERANCE = 1e-5  # fp32 verl vs float64 oracle (docs/spec.md)
SESSION_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def agent_batches(draw, dyadic: bool = False):
    """(keys, uids, rewards (N, K), mask (N, L), cfg): the final outputs are a `saw_batches` draw (one
    session each); every session gets 0-2 earlier outputs (indices 0, 5: "10" sorts before "5" as text)
    with their own rewards (NaN allowed) and masks; rows shuffled. uids contain '_' (rsplit keeps them)."""
    final_rewards, group_ids, final_mask, cfg = draw(saw_batches(dyadic=dyadic))
    earlier_value = st.sampled_from([*REWARD_VALUES, float("nan")])
    rows, sessions_of_uid = [], {}
    for j, group in enumerate(group_ids.tolist()):
        uid = f"uid_{group}"
        session = sessions_of_uid[uid] = sessions_of_uid.get(uid, -1) + 1
        earlier = draw(st.integers(0, 2))
        for i in range(earlier):
            reward = [draw(earlier_value) for _ in cfg.reward_keys]
            mask = draw(st.lists(st.booleans(), min_size=final_mask.shape[1], max_size=final_mask.shape[1]))
            rows.append((f"{uid}_{session}_{5 * i}", uid, reward, mask))
        rows.append((f"{uid}_{session}_{5 * earlier}", uid, final_rewards[j].tolist(), final_mask[j].tolist()))
    rows = [rows[i] for i in draw(st.permutations(range(len(rows))))]
    keys, uids, rewards, mask = zip(*rows)
    rewards = torch.tensor(rewards, dtype=torch.float64)
    return list(keys), list(uids), rewards, torch.tensor(mask).to(final_mask.dtype), cfg


def run_multi(keys, uids, rewards, mask, cfg: SawConfig, estimator=None):
    """verl's compute_advantage_for_multi_trajectories on a verl batch of these rows -> advantages (N, L)."""
    data = verl_batch(rewards, cfg.reward_keys, [0] * len(keys), mask, cfg.static_weights)
    data.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    options = {"preset": cfg.preset, "dynamic": cfg.dynamic, "reward_min": list(cfg.reward_min)}
    config = algorithm_config(f"saw_{cfg.mode}", cfg.reward_keys, cfg.static_weights, **options)
    out = compute_advantage_for_multi_trajectories(
        data, batch_keys=keys, adv_estimator=estimator or f"saw_{cfg.mode}", norm_adv_by_std_in_grpo=cfg.norm_by_std,
        config=config,
    )
    assert torch.equal(out.batch["returns"], out.batch["advantages"])
    return out.batch["advantages"]


@given(agent_batches())
@SESSION_SETTINGS
def test_final_outputs_only_then_broadcast_equals_reference(batch):
    keys, uids, rewards, mask, cfg = batch
    try:
        expected, final_result = final_outputs_reference(keys, rewards, uids, mask, cfg)
    except SawInputError:  # GDPO with fewer than 2 tokens over the final outputs: verl must refuse too
        with pytest.raises(SawInputError, match="at least 2 response tokens"):
            run_multi(keys, uids, rewards, mask, cfg)
        return
    torch.testing.assert_close(run_multi(keys, uids, rewards, mask, cfg), expected, atol=TOLERANCE, rtol=0)
    published = metrics.take()
    for k, key in enumerate(cfg.reward_keys):  # Step 1 over the final outputs only
        assert published[f"saw/{key}/weight"] == pytest.approx(final_result.weights[k].item(), abs=1e-9)
        assert published[f"saw/{key}/mean"] == pytest.approx(final_result.mean[k].item(), abs=1e-9)


@given(agent_batches(dyadic=True))  # dyadic values: verl's constant-group fp32 noise cannot appear
@SESSION_SETTINGS
def test_equal_weights_equal_verl_grpo_on_sessions(batch):
    """saw_grpo with dynamic=false is verl's GRPO, session rule included (verl reads the summed reward
    from token_level_rewards; its GRPO branch selects the final outputs itself)."""
    keys, uids, rewards, mask, cfg = batch
    rewards = torch.nan_to_num(rewards, nan=0.5)  # verl's GRPO reads every row's token reward
    cfg = SawConfig(cfg.reward_keys, mode="grpo", dynamic=False, static_weights=cfg.static_weights, norm_by_std=cfg.norm_by_std)
    ours = run_multi(keys, uids, rewards, mask, cfg)
    theirs = run_multi(keys, uids, rewards, mask, cfg, estimator="grpo")
    torch.testing.assert_close(ours, theirs, atol=TOLERANCE, rtol=0)


@given(agent_batches())
@SESSION_SETTINGS
def test_sessions_follow_verls_key_rule(batch):
    keys = batch[0]
    sessions = agent_sessions(keys)
    final_of_row = sessions.final_rows[sessions.session_of_row].tolist()
    assert final_of_row == verl_session_rule(keys)
    assert sorted(sessions.final_rows.tolist()) == sorted(set(final_of_row))


def test_key_rule_edge_cases():
    keys = ["a_b_0_5", "a_b_0_10", "a_b_1_0", "a_b_0_10", "c_0_-1"]  # '_' in uid, 10 > 5, a tie, a negative index
    sessions = agent_sessions(keys)
    assert sessions.final_rows[sessions.session_of_row].tolist() == verl_session_rule(keys) == [1, 1, 2, 1, 4]


def test_single_output_sessions_are_the_plain_path():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    cfg = SawConfig(("a", "b"), mode="gdpo")
    keys, uids = ["p_0_0", "p_1_0", "q_0_0", "q_1_0"], ["p", "p", "q", "q"]
    data = verl_batch(rewards, cfg.reward_keys, [0, 0, 1, 1], mask)
    plain = compute_advantage(data, "saw_gdpo", config=algorithm_config("saw_gdpo", cfg.reward_keys)).batch["advantages"]
    assert torch.equal(run_multi(keys, uids, rewards, mask, cfg), plain)


BAD_SESSIONS = {
    "nan-final-output": (["p_0_0", "p_0_1", "p_1_0"], [[0.0], [float("nan")], [1.0]], r"'r0' is nan at row 1 \(sample key 'p_0_1'"),
    "malformed-key": (["p_0_0", "p-0-1", "p_1_0"], [[0.0], [1.0], [1.0]], r"sample key 'p-0-1' is not in verl's v1 format"),
    "index-not-a-number": (["p_0_0", "p_0_x", "p_1_0"], [[0.0], [1.0], [1.0]], r"sample key 'p_0_x': the output index"),
}


@pytest.mark.parametrize("keys, rewards, message", BAD_SESSIONS.values(), ids=BAD_SESSIONS.keys())
def test_bad_sessions_name_the_sample_key_before_anything_is_written(keys, rewards, message):
    cfg = SawConfig(("r0",), mode="grpo")
    data = verl_batch(torch.tensor(rewards, dtype=torch.float64), cfg.reward_keys, [0, 0, 0], torch.ones(3, 2))
    with pytest.raises(SawInputError, match=message):
        compute_advantage_for_multi_trajectories(data, keys, "saw_grpo", config=algorithm_config("saw_grpo", ("r0",)))
    assert "advantages" not in data.batch.keys()


def test_nan_in_an_earlier_output_is_not_read():
    rewards = torch.tensor([[float("nan")], [1.0], [0.0]], dtype=torch.float64)
    cfg = SawConfig(("r0",), mode="grpo")
    advantages = run_multi(["p_0_0", "p_0_1", "p_1_0"], ["p"] * 3, rewards, torch.ones(3, 2), cfg)
    assert torch.isfinite(advantages).all() and torch.equal(advantages[0], advantages[1])


def test_verl_that_keeps_final_outputs_itself_is_left_alone():
    def selecting(data, batch_keys, adv_estimator, gamma=1.0, lam=1.0, num_repeat=1, norm_adv_by_std_in_grpo=True,
                  config=None):  # a verl whose session rule covers every estimator
        final = sorted(set(verl_session_rule(batch_keys)))
        return compute_advantage(data.select_idxs(final), adv_estimator, config=config)

    assert shim.keeps_final_outputs_only(selecting)
    assert shim.wrap_multi_trajectories(selecting) is selecting
    assert not shim.keeps_final_outputs_only(compute_advantage_for_multi_trajectories.__wrapped__)  # verl 0.9.1


def test_sessions_of_other_rows_are_refused():
    from saw_verl.integrations.verl import estimators

    data = verl_batch(torch.tensor([[0.0], [1.0]], dtype=torch.float64), ("r0",), [0, 0], torch.ones(2, 1))
    with estimators.forwarded(sessions=agent_sessions(["p_0_0", "p_0_1", "p_1_0"])):
        with pytest.raises(SawInputError, match="verl passed 2 rows but 3 sample keys"):
            compute_advantage(data, "saw_grpo", config=algorithm_config("saw_grpo", ("r0",)))
