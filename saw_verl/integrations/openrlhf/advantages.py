"""The wrapper of ``RemoteExperienceMaker.compute_advantages_and_returns`` that computes a registry estimator
(SAW's, or a rival of docs/estimators.md).

Before the original runs: gather the (N, K) reward matrix from ``Experience.info[key]``, restore
prompt order as OpenRLHF does (``rewards[indices] = raw``: groups are consecutive blocks of
n_samples_per_prompt), compute the per-rollout advantage with the core, write it into
``Experience.rewards`` and the per-key metrics into ``Experience.info`` as (B,) tensors. The
original then runs as ``dr_grpo`` (see the package docstring for what it does to the scalar).
Imported by the patch, in the process that has just imported OpenRLHF's experience maker.

The training step (for ``--saw.weight_schedule``) is the one OpenRLHF logs this step under: ``global_step + 1``,
``global_step`` being what ``BasePPOTrainer.train_step`` receives (the steps done before this one; a resumed run's
``fit`` takes it from the checkpoint), handed to the trainer's experience maker by :func:`wrap_train_step` just
before it makes the step's experiences.

With ``--saw.history_decay`` > 0 the statistics come from a SawHistory (docs/spec.md, "History") kept
here, in that process, for the whole run (one per estimator and set of reward keys), updated by every
training step. It travels in OpenRLHF's checkpoints (:mod:`.checkpoints`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os

import torch
from openrlhf.utils.logging_utils import init_logger  # imported only once OpenRLHF is: its console format

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.history import RunHistories
from saw_verl.integrations.openrlhf.options import DELEGATE_ESTIMATOR, estimator_of, selected_from_env
from saw_verl.registry import REGISTRY, run_estimator

logger = init_logger(__name__)
logger.setLevel(os.environ.get("SAW_VERL_LOGGING_LEVEL", "INFO").upper())

LENGTH_PENALTIES = ("overlong_buffer_len", "stop_properly_penalty_coef")
HISTORIES = RunHistories()  # this process trains one run
WHITENED = ("saw_gdpo", "gdpo")  # whitened over the N rollouts: |A| < sqrt(N)
STEP_ATTRIBUTE = "saw_verl_step"  # set on the experience maker: the step of the train_step running, as logged


def wrap_compute_advantages(original):
    """compute_advantages_and_returns(self, experiences) with SAW first; returns `original` if already wrapped."""
    if getattr(original, "saw_verl_wrapped", False):
        return original

    @functools.wraps(original)
    def compute_advantages_and_returns(self, experiences, *rest, **kwargs):
        selected = selected_from_env()
        if selected is not None:
            estimator, cfg, own = selected
            args = self.strategy.args
            check_args(args, self.advantage_estimator, cfg, estimator)
            step = getattr(self, STEP_ATTRIBUTE, None)
            if cfg.weight_schedule is not None and step is None:
                raise SawInputError(
                    "--saw.weight_schedule needs OpenRLHF's global step, which saw_verl reads in "
                    "BasePPOTrainer.train_step(rollout_samples, global_step); this OpenRLHF's train_step was not "
                    "patched (see the warning at import)"
                )
            write_saw_rewards(
                experiences, args.rollout.n_samples_per_prompt, cfg, args.reward.clip_range, estimator, own, step
            )
        return original(self, experiences, *rest, **kwargs)

    compute_advantages_and_returns.saw_verl_wrapped = True
    return compute_advantages_and_returns


def wrap_train_step(original):
    """``BasePPOTrainer.train_step(self, rollout_samples, global_step)`` -> one that first hands `global_step` to the
    trainer's experience maker (its compute_advantages_and_returns reads it); returns `original` if wrapped."""
    if getattr(original, "saw_verl_wrapped", False):
        return original
    signature = inspect.signature(original)

    @functools.wraps(original)
    def train_step(self, *args, **kwargs):
        done = signature.bind(self, *args, **kwargs).arguments["global_step"]
        setattr(self.experience_maker, STEP_ATTRIBUTE, done + 1)  # the step train_step returns and OpenRLHF logs
        return original(self, *args, **kwargs)

    train_step.saw_verl_wrapped = True
    return train_step


def patch_train_step(module) -> None:
    """Wrap ``module.BasePPOTrainer.train_step`` (idempotent); a missing or changed one gets a warning, and a run
    with --saw.weight_schedule then stops at its first advantage."""
    trainer = module.BasePPOTrainer
    method = getattr(trainer, "train_step", None)
    if method is None or "global_step" not in inspect.signature(method).parameters:
        logger.warning("saw_verl: not patching %s.BasePPOTrainer.train_step (missing or changed): "
                       "--saw.weight_schedule cannot read the training step", module.__name__)
    else:
        trainer.train_step = wrap_train_step(method)


def check_args(args, maker_estimator: str, cfg: SawConfig, estimator: str = None) -> None:
    """Refuse OpenRLHF options that would corrupt the estimator's scalar (SawInputError naming the flag).
    estimator: the registry name (default: SAW's, from cfg.mode)."""
    estimator = estimator or estimator_of(cfg)
    for chosen in (args.algo.advantage.estimator, maker_estimator):
        if chosen != DELEGATE_ESTIMATOR:
            raise SawInputError(
                f"{estimator} runs through OpenRLHF's {DELEGATE_ESTIMATOR}, but the estimator is {chosen!r}: pass "
                f"--algo.advantage.estimator {DELEGATE_ESTIMATOR} (python -m saw_verl.integrations.openrlhf does this)"
            )
    if getattr(args.algo.advantage, "no_std_norm", False):
        raise SawInputError(f"--algo.advantage.no_std_norm is not applied by {estimator}: SAW divides by the group "
                            "std (docs/spec.md); drop it")
    for name in LENGTH_PENALTIES:
        value = getattr(args.reward, name, None)
        if value is not None:
            raise SawInputError(
                f"--reward.{name} {value} would change {estimator}'s advantage after SAW computed it; "
                f"drop it and return a length reward as one more SAW key in extra_logs instead"
            )


def gather_rewards(experiences, cfg: SawConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (rewards (N, K) float64 in prompt order, indices (N,): prompt-order row of each concatenated row)."""
    columns = []
    for key in cfg.reward_keys:
        parts = []
        for batch, experience in enumerate(experiences):
            size = len(experience.index)
            value = experience.info.get(key)
            if value is None:
                raise SawInputError(
                    f"reward key {key!r} is missing from Experience.info of micro-batch {batch} (it has "
                    f"{sorted(experience.info)}): the reward function must return it in 'extra_logs' for every "
                    f"sample. OpenRLHF logs and swallows reward-function errors ('Failed to fetch reward'), "
                    f"leaving extra_logs empty."
                )
            value = torch.as_tensor(value)
            if value.shape != (size,):
                raise SawInputError(
                    f"reward key {key!r} has shape {tuple(value.shape)} in micro-batch {batch} of {size} samples, "
                    f"expected ({size},): some samples lack it in extra_logs (a failed reward function?)"
                )
            parts.append(value.to(torch.float64))
        columns.append(torch.cat(parts))
    indices = torch.tensor(list(itertools.chain.from_iterable(e.index for e in experiences)), dtype=torch.int64)
    n = indices.numel()
    if not torch.equal(torch.sort(indices).values, torch.arange(n)):
        raise SawInputError(f"Experience.index of the {n} samples is not a permutation of 0..{n - 1}")
    rewards = torch.empty(n, cfg.num_keys, dtype=torch.float64)
    rewards[indices] = torch.stack(columns, dim=1)
    return rewards, indices


def write_saw_rewards(experiences, group_size: int, cfg: SawConfig, clip_range=None, estimator: str = None,
                      own: dict = None, step=None) -> None:
    """Replace each ``Experience.rewards`` (B,) by the estimator's advantage of its rollouts; add its metrics
    (saw/* for SAW, <estimator>/* for a rival; saw/{key}/alpha and, with conditions, saw/{key}/gated_fraction for
    all).

    group_size: --rollout.n_samples_per_prompt; clip_range: --reward.clip_range (checked: it may not clip);
    estimator: the registry name (default: SAW's, from cfg.mode); own: its own options; step: the training step
    (needed with a weight schedule).
    """
    estimator = estimator or estimator_of(cfg)
    entry = REGISTRY[estimator]
    rewards, indices = gather_rewards(experiences, cfg)
    n = rewards.shape[0]
    if group_size < 2 or n % group_size:
        raise SawInputError(
            f"SAW needs groups of --rollout.n_samples_per_prompt >= 2 rollouts; got {n} samples, "
            f"n_samples_per_prompt={group_size}"
        )
    group_ids = torch.arange(n) // group_size
    one_token = torch.ones(n, 1, dtype=torch.bool)  # GDPO whitening over rollouts, not tokens (package docstring)
    own = {"history": HISTORIES.get(cfg), "backend": "torch"} if entry.saw_mode else dict(own or {})
    result = run_estimator(entry, rewards, group_ids, one_token, cfg, own, num_groups=n // group_size, step=step)
    advantage = result.advantages[:, 0]
    if estimator in WHITENED:
        check_clip_range(clip_range, n, advantage, estimator)
    elif estimator != "saw_grpo":
        check_unclipped(clip_range, advantage, estimator)
    metrics = result.metrics(cfg.reward_keys)
    values = advantage[indices].split([len(e.index) for e in experiences])
    for experience, value in zip(experiences, values):
        experience.rewards = value.clone()
        for name, metric in metrics.items():
            experience.info[name] = torch.full((len(value),), metric, dtype=torch.float32)
    logger.info(
        "%s weights: %s",
        estimator,
        ", ".join(f"{key}={metrics[f'{result.prefix}/{key}/weight']:.4f}" for key in cfg.reward_keys),
    )


def check_unclipped(clip_range, advantage: torch.Tensor, estimator: str) -> None:
    """Refuse a --reward.clip_range that clips this step's advantages (mo_grpo, corr_grpo: no fixed bound)."""
    if clip_range and (advantage.min().item() < clip_range[0] or advantage.max().item() > clip_range[1]):
        raise SawInputError(
            f"--reward.clip_range {clip_range[0]:g} {clip_range[1]:g} clips {estimator}'s advantages (this step "
            f"{advantage.min().item():.3g} to {advantage.max().item():.3g}): pass --reward.clip_range "
            "-1000000000 1000000000 (python -m saw_verl.integrations.openrlhf does this)"
        )


def check_clip_range(clip_range, n: int, advantage: torch.Tensor, estimator: str = "saw_gdpo") -> None:
    """Refuse a --reward.clip_range that can clip whitened advantages (|A| < sqrt(N) over N rollouts)."""
    if not clip_range:
        return
    low, high = clip_range
    bound = math.sqrt(n)
    if low > -bound or high < bound:
        raise SawInputError(
            f"--reward.clip_range {low:g} {high:g} can clip {estimator}'s advantages (whitened over N={n} rollouts, "
            f"|A| up to {bound:.3g}; this step {advantage.abs().max().item():.3g}): pass --reward.clip_range "
            f"-1000000000 1000000000 (python -m saw_verl.integrations.openrlhf does this)"
        )
