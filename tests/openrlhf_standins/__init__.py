"""Test support for the OpenRLHF integration: import OpenRLHF on a CPU machine, build real Experience batches.

`modules/` holds import stand-ins for the two CUDA-only packages OpenRLHF imports at module level
(flash_attn, vllm); OpenRLHF's own CPU tests stub them the same way. They go on sys.path only for
packages that are not installed, and leave sys.path / sys.modules when the tests are done.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

STANDIN_PATH = str(Path(__file__).parent / "modules")
STANDIN_PACKAGES = ("flash_attn", "vllm")
EXPERIENCE_MAKER = "openrlhf.trainer.ppo_utils.experience_maker"


@contextlib.contextmanager
def openrlhf_importable():
    """Within the block, OpenRLHF's experience maker and CLI import (stand-ins for missing CUDA-only packages)."""
    missing = [name for name in STANDIN_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        sys.path.insert(0, STANDIN_PATH)
    try:
        yield
    finally:
        if missing:
            sys.path.remove(STANDIN_PATH)
            for name in [m for m in sys.modules if m.split(".")[0] in missing]:
                del sys.modules[name]


class StopBeforeTraining(Exception):
    """Raised in place of OpenRLHF's get_strategy: train_ppo_ray has parsed and checked its flags, started nothing."""


def launch_until_training(monkeypatch, argv: list) -> dict:
    """`python -m saw_verl.integrations.openrlhf ARGV` with the real train_ppo_ray as __main__, stopped at get_strategy.

    Returns {"args": train_ppo_ray's parsed args, "init": the keyword arguments of its ray.init call}.
    """
    import pytest
    import ray

    from saw_verl.integrations.openrlhf import launcher

    seen = {}

    def stop_at_strategy(args):
        seen["args"] = args
        raise StopBeforeTraining

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: seen.setdefault("init", kwargs))
    monkeypatch.setattr(sys, "argv", ["saw_verl.integrations.openrlhf"])
    with openrlhf_importable():
        import openrlhf.utils

        monkeypatch.setattr(openrlhf.utils, "get_strategy", stop_at_strategy)
        with pytest.raises(StopBeforeTraining):
            launcher.main(argv)
    return seen


def make_args(n_samples: int, clip_range=(-10.0, 10.0), estimator: str = "dr_grpo", **reward_options):
    """The parts of OpenRLHF's hierarchical args that compute_advantages_and_returns reads (train_ppo_ray defaults)."""
    reward = dict(clip_range=clip_range, overlong_buffer_len=None, overlong_penalty_factor=1.0, stop_properly_penalty_coef=None)
    reward.update(reward_options)
    return SimpleNamespace(
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator, gamma=1.0, lambd=1.0, no_std_norm=False)),
        rollout=SimpleNamespace(n_samples_per_prompt=n_samples, max_new_tokens=None),
        reward=SimpleNamespace(**reward),
        data=SimpleNamespace(max_len=64),
    )


def make_maker(experience_maker, args):
    """A real RemoteExperienceMaker (no model groups: compute_advantages_and_returns needs none), KL coef 0."""
    kl_ctl = SimpleNamespace(value=0.0)
    return experience_maker.RemoteExperienceMaker(None, None, None, None, kl_ctl, SimpleNamespace(args=args), None)


def make_micro_batches(rewards: dict, generator: torch.Generator, prompt_len: int = 3, max_response: int = 6):
    """rewards {key: (N,) tensor} in prompt order -> shuffled micro-batches of real Experiences, as OpenRLHF builds them.

    Each rollout gets `index=[its prompt-order row]`, a response of random length after `prompt_len`
    masked prompt tokens, a zero KL, and every key in `info`; micro-batches have random sizes and
    `Experience.concat_experiences` pads them (dynamic batching's shape).
    """
    from openrlhf.trainer.ppo_utils.experience import Experience

    n = len(next(iter(rewards.values())))
    samples = []
    for row in range(n):
        length = int(torch.randint(1, max_response + 1, (1,), generator=generator))
        action_mask = torch.zeros(1, prompt_len + length, dtype=torch.bool)
        action_mask[0, prompt_len:] = True
        info = {key: values[row : row + 1].to(torch.float32) for key, values in rewards.items()}
        total = sum(values[row] for values in rewards.values())
        samples.append(
            Experience(
                action_mask=action_mask,
                kl=torch.zeros(action_mask.shape),
                rewards=torch.tensor([float(total)]),
                index=[row],
                info=info,
            )
        )
    order = torch.randperm(n, generator=generator).tolist()
    batches, start = [], 0
    while start < n:
        size = int(torch.randint(1, 5, (1,), generator=generator))
        batches.append(Experience.concat_experiences([samples[i] for i in order[start : start + size]], 0))
        start += size
    return batches


def import_experience_maker():
    return importlib.import_module(EXPERIENCE_MAKER)
