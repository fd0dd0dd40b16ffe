"""Benchmark workloads and the advantage providers compared on them.

A workload looks like one verl step: N rollouts in groups of GROUP_SIZE, shuffled (verl reorders the
batch, so groups are not contiguous), responses of random length left-aligned in L tokens, an int64
response_mask (verl's dtype), and K reward columns in non_tensor_batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from saw_verl import SawConfig, saw_advantages

GROUP_SIZE = 16
PROMPT_LENGTH = 16


@dataclass
class Workload:
    """Everything one estimator call needs, on one device, in the form each caller hands it over."""

    keys: tuple[str, ...]
    rewards: torch.Tensor  # (N, K) float64
    group_ids: torch.Tensor  # (N,) int64 in [0, G)
    response_mask: torch.Tensor  # (N, L)
    non_tensor_batch: dict  # verl: reward columns + "uid" (np.ndarray)
    batch: dict  # verl: prompts, attention_mask
    token_level_rewards: torch.Tensor  # (N, L) float32: the summed reward on each row's last token

    @property
    def tokens(self) -> int:
        return self.response_mask.numel()


def make_workload(n: int, length: int, num_keys: int, device="cpu", mask_dtype=torch.int64, seed: int = 0) -> Workload:
    generator = torch.Generator().manual_seed(seed)
    keys = tuple(f"reward_{k}" for k in range(num_keys))
    shuffled = torch.randperm(n, generator=generator).numpy()
    uid = np.array([f"prompt-{j // GROUP_SIZE}" for j in range(n)], dtype=object)[shuffled]
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)  # discrete scores: ties and constant groups
    rewards = levels[torch.randint(0, 4, (n, num_keys), generator=generator)]
    rewards[:, -1] = torch.rand(n, generator=generator, dtype=torch.float64)  # one continuous score (e.g. length)
    lengths = torch.randint(1, length + 1, (n,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(mask_dtype)
    columns = {key: rewards[:, k].numpy().copy() for k, key in enumerate(keys)}
    last_token = torch.zeros(n, length, dtype=torch.float32)
    last_token[torch.arange(n), lengths - 1] = rewards.sum(dim=1).float()
    attention = torch.cat([torch.ones(n, PROMPT_LENGTH, dtype=torch.int64), mask.long()], dim=1)
    group_ids = torch.from_numpy(shuffled // GROUP_SIZE)  # uid's groups, numbered densely
    to = dict(device=device)
    return Workload(
        keys, rewards.to(**to), group_ids.to(**to), mask.to(**to), {**columns, "uid": uid},
        {"prompts": torch.zeros(n, PROMPT_LENGTH, dtype=torch.int64, **to), "attention_mask": attention.to(**to)},
        last_token.to(**to),
    )


def saw_from_tensors(backend: str, mode: str, dynamic: bool = True) -> Callable[[Workload], Callable]:
    """One SAW backend on device tensors, through the public saw_advantages (its checks, its one host read)."""

    def bind(w: Workload):
        cfg = SawConfig(w.keys, mode=mode, dynamic=dynamic)
        return lambda: saw_advantages(w.rewards, w.group_ids, w.response_mask, cfg, backend=backend).advantages

    return bind


def saw_from_columns(mode: str, dynamic: bool = True) -> Callable[[Workload], Callable]:
    """SAW from verl's inputs (non_tensor_batch columns + uid), as an estimator does: columns -> tensors -> math."""

    def bind(w: Workload):
        from saw_verl.integrations.verl.columns import group_ids_from_index, rewards_from_columns

        cfg = SawConfig(w.keys, mode=mode, dynamic=dynamic)
        n = w.response_mask.shape[0]

        def call():
            rewards = rewards_from_columns(w.non_tensor_batch, w.keys, n).to(w.response_mask.device)
            group_ids, _ = group_ids_from_index(w.non_tensor_batch["uid"])
            return saw_advantages(rewards, group_ids, w.response_mask, cfg).advantages

        return call

    return bind


def verl_gdpo(w: Workload):
    """verl 0.9.1's gdpo, called the way ray_trainer.compute_advantage calls it (config = algorithm DictConfig)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import compute_gdpo_outcome_advantage

    config = OmegaConf.create({"gdpo_reward_keys": list(w.keys), "gdpo_reward_weights": None})
    return lambda: compute_gdpo_outcome_advantage(
        token_level_rewards=w.token_level_rewards, response_mask=w.response_mask, index=w.non_tensor_batch["uid"],
        config=config, non_tensor_batch=w.non_tensor_batch, batch=w.batch,
    )[0]


def verl_grpo(vectorized: bool):
    """verl 0.9.1's single-reward grpo (Python loop) or grpo_vectorized on the summed score."""

    def bind(w: Workload):
        from verl.trainer.ppo import core_algos

        if vectorized:
            fn = core_algos.compute_grpo_vectorized_outcome_advantage
        else:
            fn = core_algos.compute_grpo_outcome_advantage
        return lambda: fn(w.token_level_rewards, w.response_mask, w.non_tensor_batch["uid"])[0]

    return bind


def providers(mode: str) -> dict[str, tuple[bool, Callable[[Workload], Callable]]]:
    """name -> (needs CUDA, bind(workload) -> zero-argument call)."""
    return {
        "saw-triton": (True, saw_from_tensors("triton", mode)),
        "saw-torch": (False, saw_from_tensors("torch", mode)),
        "verl-gdpo": (False, verl_gdpo),
        "verl-grpo": (False, verl_grpo(vectorized=False)),
        "verl-grpo-vectorized": (False, verl_grpo(vectorized=True)),
    }
