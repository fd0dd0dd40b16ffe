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
from saw_verl import SawConfig, SawInputError
from saw_verl.reference import reference_saw_advantages
from spec_cases import EXAMPLE_KEYS
from verl_batches import algorithm_config
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


def run_v1(estimator: str, compute_advantage=None, monkeypatch=None):
    """verl's real PPOTrainer._compute_advantage on 7 rows stored in a fake TransferQueue -> (tq, metrics)."""
    rows = {
        f"row{i}": {
            "uid": V1_GROUPS[i],
            "response_mask": torch.ones(length, dtype=torch.int64),
            "rm_scores": torch.zeros(length),
            "extra_fields": {"reward_extra_info": dict(zip(EXAMPLE_KEYS, V1_REWARDS[i].tolist()))},
        }
        for i, length in enumerate(V1_LENGTHS)
    }
    tq = FakeTransferQueue(rows)
    monkeypatch.setattr(trainer_base, "tq", tq)
    config = OmegaConf.create(
        {"algorithm": algorithm_config(estimator, EXAMPLE_KEYS), "actor_rollout_ref": {"rollout": {"n": 3}}}
    )
    trainer = types.SimpleNamespace(config=config)
    batch = KVBatchMeta(keys=list(rows), tags=[{}] * len(rows), partition_id="train")
    metrics = {}
    (compute_advantage or trainer_base.PPOTrainer._compute_advantage)(trainer, batch, metrics)
    return tq, metrics


@pytest.mark.parametrize("mode", ["grpo", "gdpo"])
def test_v1_trainer_reads_the_rewards_from_transfer_queue(mode, monkeypatch):
    tq, metrics = run_v1(f"saw_{mode}", monkeypatch=monkeypatch)
    mask = torch.tensor([[1] * n + [0] * (3 - n) for n in V1_LENGTHS])
    expected = reference_saw_advantages(V1_REWARDS, V1_GROUPS, mask, SawConfig(EXAMPLE_KEYS, mode=mode))
    torch.testing.assert_close(tq.written["advantages"].to_padded_tensor(0.0), expected.advantages, atol=1e-5, rtol=0)
    for k, key in enumerate(EXAMPLE_KEYS):
        assert metrics[f"saw/{key}/weight"] == pytest.approx(expected.weights[k].item())
        assert metrics[f"saw/{key}/cv"] == pytest.approx(expected.cv[k].item())


def test_v1_trainer_other_estimators_fetch_nothing_more(monkeypatch):
    tq, metrics = run_v1("rloo", monkeypatch=monkeypatch)
    assert "extra_fields" not in tq.requested and tq.written is not None
    assert not any(name.startswith("saw/") for name in metrics)


def test_v1_trainer_without_the_shim_names_it(monkeypatch):
    unwrapped = trainer_base.PPOTrainer._compute_advantage.__wrapped__
    with pytest.raises(SawInputError, match="v1 trainer without the saw_verl TransferQueue shim"):
        run_v1("saw_gdpo", compute_advantage=unwrapped, monkeypatch=monkeypatch)
    assert trainer_base.tq.written is None
