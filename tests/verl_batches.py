"""Hand-built verl inputs for the integration tests: a DataProto as the legacy trainer has it before
`compute_advantage`, verl `algorithm` configs, and the worked example of docs/spec.md in both forms."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from verl import DataProto

from spec_cases import EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK, EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS

PROMPT_LENGTH = 2


def verl_batch(rewards: torch.Tensor, keys: Sequence[str], group_ids, mask: torch.Tensor, static_weights=None) -> DataProto:
    """rewards (N, K), group_ids (N,), mask (N, L) -> DataProto with prompts, responses, attention_mask,
    response_mask, token_level_rewards/scores (the alpha-weighted sum of the keys on the last valid token,
    where verl puts the reward) and non_tensor_batch {uid, key: (N,) float64}."""
    n, length = mask.shape
    mask = mask.to(torch.int64)
    alpha = torch.tensor(static_weights if static_weights is not None else [1.0] * len(keys), dtype=torch.float64)
    token_rewards = torch.zeros(n, length, dtype=torch.float32)
    token_rewards[torch.arange(n), mask.sum(dim=1) - 1] = (rewards.to(torch.float64) @ alpha).float()
    tensors = {
        "prompts": torch.ones(n, PROMPT_LENGTH, dtype=torch.int64),
        "responses": torch.ones(n, length, dtype=torch.int64),
        "attention_mask": torch.cat([torch.ones(n, PROMPT_LENGTH, dtype=torch.int64), mask], dim=1),
        "response_mask": mask,
        "token_level_rewards": token_rewards,
        "token_level_scores": token_rewards.clone(),
    }
    non_tensors = {"uid": np.array([f"prompt-{int(g)}" for g in group_ids], dtype=object)}
    non_tensors.update({key: rewards[:, k].numpy().astype(np.float64) for k, key in enumerate(keys)})
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def algorithm_config(
    adv_estimator: str,
    keys: Optional[Sequence[str]],
    static_weights=None,
    norm_adv_by_std_in_grpo: bool = True,
    **saw_options,
):
    """verl's `config.algorithm` as the trainer passes it (a DictConfig), with an `algorithm.saw` block."""
    algorithm = {
        "adv_estimator": adv_estimator,
        "gamma": 1.0,
        "lam": 1.0,
        "norm_adv_by_std_in_grpo": norm_adv_by_std_in_grpo,
        "use_kl_in_reward": False,
        "gdpo_reward_keys": list(keys) if keys is not None else None,
        "gdpo_reward_weights": list(static_weights) if static_weights is not None else None,
    }
    if saw_options:
        algorithm["saw"] = saw_options
    return OmegaConf.create(algorithm)


def example_batch() -> DataProto:
    """The worked example of docs/spec.md (2 groups of 4, 1 token each) as a verl batch."""
    return verl_batch(EXAMPLE_REWARDS, EXAMPLE_KEYS, EXAMPLE_GROUPS, EXAMPLE_MASK)


def example_config(adv_estimator: str = "saw_gdpo", **saw_options):
    """algorithm config of the worked example (reward_min [-3, 0]) plus any `algorithm.saw` options."""
    return algorithm_config(adv_estimator, EXAMPLE_KEYS, reward_min=list(EXAMPLE_REWARD_MIN), **saw_options)


def verl_session_rule(keys: Sequence[str]) -> list[int]:
    """For each row, the row of its session's final output: verl 0.9.1's loop in
    `compute_advantage_for_multi_trajectories`, transcribed (the test oracle of `sessions.agent_sessions`)."""
    final: dict[str, tuple[int, int]] = {}
    for row, key in enumerate(keys):
        uid, session_id, index = key.rsplit("_", 2)
        session = f"{uid}_{session_id}"
        if session not in final or final[session][0] < int(index):
            final[session] = (int(index), row)
    return [final[key.rsplit("_", 1)[0]][1] for key in keys]


def final_outputs_reference(keys, rewards, groups, mask, cfg):
    """The rule of docs/spec.md for agent sessions, on the float64 oracle: SAW over the final outputs only, then
    each row gets its session's final advantage (read at the final row's first response token, as verl)
    times its own mask. -> (advantages (N, L) float32, SawResult of the final outputs)."""
    from saw_verl.reference import reference_saw_advantages

    final_of_row = verl_session_rule(keys)
    finals = sorted(set(final_of_row))
    result = reference_saw_advantages(rewards[finals], [groups[r] for r in finals], mask[finals], cfg)
    first_token = (mask[finals] != 0).to(torch.uint8).argmax(dim=1)
    value = result.advantages[torch.arange(len(finals)), first_token].double()
    position = {row: i for i, row in enumerate(finals)}
    per_row = value[[position[r] for r in final_of_row]]
    return (per_row[:, None] * mask.double()).float(), result
