"""verl's v1 trainer (`trainer.use_v1=true`): the real `PPOTrainer._compute_advantage`, wrapped by the
shim, on rows kept in an in-process stand-in for TransferQueue (the real run is the CPU harness's)."""

from __future__ import annotations

import types

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import NonTensorStack, TensorDict
from transfer_queue import KVBatchMeta

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl.integrations.verl import estimators
from saw_verl import SawConfig, SawInputError
from saw_verl.reference import reference_saw_advantages
from spec_cases import EXAMPLE_KEYS
from verl_batches import algorithm_config, final_outputs_reference
from verl.trainer.ppo.v1 import trainer_base



class FakeTransferQueue:
    """In-process stand-in for `transfer_queue`: rows {field: tensor | object} keyed by sample key."""

    def __init__(self, rows: dict):
        self.rows, self.requested, self.written = rows, [], None

    def kv_batch_get(self, keys, partition_id, select_fields):
        self.requested.extend(select_fields)
        rows = [self.rows[key] for key in keys]
        present = [f for f in select_fields if f in rows[0]]
        columns = {f: [row[f] for row in rows] for f in present}
        return TensorDict(
            {
                f: torch.nested.as_nested_tensor(v, layout=torch.jagged) if torch.is_tensor(v[0]) else NonTensorStack(*v)
                for f, v in columns.items()
            },
            batch_size=len(rows),
        )

    def kv_batch_put(self, keys, partition_id, fields):
        self.written = fields
        return KVBatchMeta(keys=list(keys), tags=[{}] * len(keys), partition_id=partition_id)


V1_LENGTHS = [1, 3, 2, 2, 1, 3, 2]
V1_GROUPS = ["p0", "p1", "p0", "p1", "p0", "p2", "p1"]
V1_REWARDS = torch.tensor([[1, 1], [0, 0.5], [1, 0], [0, 1], [0, 1], [1, 1], [1, 0.5]], dtype=torch.float64)
V1_KEYS = [f"{uid}_{row}_0" for row, uid in enumerate(V1_GROUPS)]  # one output per session

# agent sessions of 1-3 outputs, shuffled: (sample key, uid, response length, rewards); an earlier output
# carries rewards of its own, which verl's TransferQueue holds and SAW must not read
V1_SESSIONS = [
    ("p1_0_2", "p1", 2, [0.0, 1.0]),
    ("p0_0_0", "p0", 3, [9.0, 9.0]),
    ("p0_1_0", "p0", 1, [0.0, 1.0]),
    ("p1_0_0", "p1", 1, [-9.0, 0.0]),
    ("p0_0_1", "p0", 2, [1.0, 1.0]),
    ("p2_0_0", "p2", 3, [1.0, 0.5]),
    ("p1_1_0", "p1", 2, [1.0, 0.5]),
    ("p1_0_1", "p1", 3, [5.0, 5.0]),
    ("p0_2_0", "p0", 2, [1.0, 0.0]),
]


def run_v1(estimator: str, compute_advantage=None, monkeypatch=None, keys=V1_KEYS, groups=V1_GROUPS,
           lengths=V1_LENGTHS, rewards=V1_REWARDS, padding_keys=(), **saw_options):
    """verl's real PPOTrainer._compute_advantage on rows stored in a fake TransferQueue -> (tq, metrics).
    Rows in padding_keys are as verl's padding: an all-zero response mask and the tag is_padding."""
    rows = {
        key: {
            "uid": uid,
            "response_mask": torch.full((length,), int(key not in padding_keys), dtype=torch.int64),
            "rm_scores": torch.zeros(length),
            "extra_fields": {"reward_extra_info": dict(zip(EXAMPLE_KEYS, torch.as_tensor(reward).tolist()))},
        }
        for key, uid, length, reward in zip(keys, groups, lengths, rewards)
    }
    tq = FakeTransferQueue(rows)
    monkeypatch.setattr(trainer_base, "tq", tq)
    config = OmegaConf.create(
        {"algorithm": algorithm_config(estimator, EXAMPLE_KEYS, **saw_options), "actor_rollout_ref": {"rollout": {"n": 3}}}
    )
    trainer = types.SimpleNamespace(config=config)
    tags = [{"is_padding": True} if key in padding_keys else {} for key in rows]
    batch = KVBatchMeta(keys=list(rows), tags=tags, partition_id="train")
    metrics = {}
    (compute_advantage or trainer_base.PPOTrainer._compute_advantage)(trainer, batch, metrics)
    return tq, metrics


def padded_mask(lengths):
    return torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_v1_trainer_agent_sessions_use_final_outputs_only(mode, monkeypatch):
    """Sessions of 1-3 outputs: Step 1 and Step 2 over the final outputs (their TransferQueue rewards),
    each earlier output gets its session's final advantage times its own mask."""
    keys, groups, lengths, rewards = zip(*V1_SESSIONS)
    rewards = torch.tensor(rewards, dtype=torch.float64)
    tq, metrics = run_v1(f"saw_{mode}", None, monkeypatch, keys, groups, lengths, rewards)
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode)
    expected, final_result = final_outputs_reference(keys, rewards, groups, padded_mask(lengths), cfg)
    torch.testing.assert_close(tq.written["advantages"].to_padded_tensor(0.0), expected, atol=1e-5, rtol=0)
    for k, key in enumerate(EXAMPLE_KEYS):
        assert metrics[f"saw/{key}/weight"] == pytest.approx(final_result.weights[k].item())
        assert metrics[f"saw/{key}/mean"] == pytest.approx(final_result.mean[k].item())
    # the 6 final outputs score 0, 1, 0, 1, 1, 1 (the earlier outputs' 9, -9, 5 are not read)
    assert metrics["saw/correctness/mean"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_v1_trainer_padding_rows_take_no_part(mode, monkeypatch):
    """verl pads the batch with copies of its first sample (rewards included) under a new uid, with an
    empty mask and the tag is_padding: they must not move the statistics (the weights) of the real rows."""
    pad_keys = ("pad9f_0_0", "pad9f_1_0")
    padded = V1_SESSIONS + [(key, "pad9f", 1, V1_SESSIONS[0][3]) for key in pad_keys]
    keys, groups, lengths, rewards = zip(*padded)
    tq, metrics = run_v1(f"saw_{mode}", None, monkeypatch, keys, groups, lengths, rewards, padding_keys=pad_keys)
    keys, groups, lengths, rewards = zip(*V1_SESSIONS)
    unpadded, unpadded_metrics = run_v1(f"saw_{mode}", None, monkeypatch, keys, groups, lengths, rewards)
    written = tq.written["advantages"].to_padded_tensor(0.0)
    torch.testing.assert_close(written[: len(V1_SESSIONS)], unpadded.written["advantages"].to_padded_tensor(0.0))
    assert torch.equal(written[len(V1_SESSIONS):], torch.zeros(len(pad_keys), written.shape[1]))
    assert metrics == pytest.approx(unpadded_metrics)


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_v1_trainer_reads_the_rewards_from_transfer_queue(mode, monkeypatch):
    tq, metrics = run_v1(f"saw_{mode}", monkeypatch=monkeypatch)
    expected = reference_saw_advantages(V1_REWARDS, V1_GROUPS, padded_mask(V1_LENGTHS), SawConfig(EXAMPLE_KEYS, mode=mode))
    torch.testing.assert_close(tq.written["advantages"].to_padded_tensor(0.0), expected.advantages, atol=1e-5, rtol=0)
    for k, key in enumerate(EXAMPLE_KEYS):
        assert metrics[f"saw/{key}/weight"] == pytest.approx(expected.weights[k].item())
        assert metrics[f"saw/{key}/cv"] == pytest.approx(expected.cv[k].item())


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_v1_trainer_history_carries_across_training_steps(mode, monkeypatch):
    """algorithm.saw.history_decay: the driver's pool carries step 1 into step 2 (docs/spec.md, "History")."""
    estimators.HISTORIES.clear()
    cfg = SawConfig(EXAMPLE_KEYS, mode=mode, history_decay=0.5)
    second = V1_REWARDS.flip(0)
    run_v1(f"saw_{mode}", monkeypatch=monkeypatch, history_decay=0.5)
    tq, metrics = run_v1(f"saw_{mode}", monkeypatch=monkeypatch, rewards=second, history_decay=0.5)
    mask = padded_mask(V1_LENGTHS)
    expected = reference_saw_advantages(second, V1_GROUPS, mask, cfg, past=[V1_REWARDS])
    torch.testing.assert_close(tq.written["advantages"].to_padded_tensor(0.0), expected.advantages, atol=1e-5, rtol=0)
    for k, key in enumerate(EXAMPLE_KEYS):
        assert metrics[f"saw/{key}/cv"] == pytest.approx(expected.cv[k].item())
        assert metrics[f"saw/{key}/batch_cv"] == pytest.approx(expected.batch_cv[k].item())
    assert metrics["saw/correctness/cv"] != pytest.approx(metrics["saw/correctness/batch_cv"])
    estimators.HISTORIES.clear()


def test_v1_trainer_other_estimators_fetch_nothing_more(monkeypatch):
    tq, metrics = run_v1("rloo", monkeypatch=monkeypatch)
    assert "extra_fields" not in tq.requested and tq.written is not None
    assert not any(name.startswith("saw/") for name in metrics)


def test_v1_trainer_without_the_shim_names_it(monkeypatch):
    unwrapped = trainer_base.PPOTrainer._compute_advantage.__wrapped__
    with pytest.raises(SawInputError, match="v1 trainer without the saw_verl TransferQueue shim"):
        run_v1("saw_gdpo", compute_advantage=unwrapped, monkeypatch=monkeypatch)
    assert trainer_base.tq.written is None
