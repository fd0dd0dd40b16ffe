"""The verl advantage estimators of the registry, registered idempotently: `saw_grpo`, `saw_gdpo` and the rivals
`saw_verl_gdpo` (the registry's `gdpo`: verl's own `gdpo` keeps its name), `mo_grpo`, `corr_grpo`, `gd2po`.

Imports only `verl.trainer.ppo.core_algos` from verl: this module is loaded from inside
`verl/__init__.py` (the `verl.plugins` entry point), while verl is half initialised.

verl 0.9.1 gives a registered estimator only token_level_rewards, response_mask, index and config.
The per-key reward columns arrive either as the `non_tensor_batch` keyword (direct calls, or a verl
that forwards it) or through `forwarded(...)`, which the shim wraps around verl's calls. In verl's v1
trainer the shim also forwards the agent sessions of the batch (`sessions.AgentSessions`): then only
the final output of each session enters the statistics, weights, z-scores and whitening, with its
rewards, uid and mask selected from the same rows, and its advantage is broadcast to the session's
other outputs (verl's GRPO rule in `compute_advantage_for_multi_trajectories`). Rows that verl's v1
trainer adds to pad the batch (tag `is_padding`: a copy of the first sample's rewards, an empty mask)
take no part either (advantage 0), so they do not move the batch statistics.

With `algorithm.saw.history_decay` > 0 the statistics come from the run's SawHistory (docs/spec.md,
"History"), held here in the driver, one per estimator and set of reward keys, updated by every training
step (verl calls the estimator for training batches only). It travels in verl's checkpoints (`checkpoints`).

With `algorithm.saw.weight_schedule` the static weights are the schedule's at verl's training step: the one the
shim forwards (v1), else the trainer's `global_steps` (`steps`), so a resumed run goes on where it stopped.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import ChainMap
from collections.abc import Mapping
from typing import NamedTuple, Optional

import torch
from verl.trainer.ppo import core_algos

from saw_verl.errors import SawInputError
from saw_verl.history import RunHistories
from saw_verl.integrations.verl import metrics, steps
from saw_verl.integrations.verl.columns import group_ids_from_index, rewards_from_columns
from saw_verl.integrations.verl.config import estimator_config_from_algorithm
from saw_verl.integrations.verl.sessions import AgentSessions
from saw_verl.registry import REGISTRY, Estimator, run_estimator


class _Forwarded(NamedTuple):
    columns: Optional[Mapping]  # {key: (N,) array}, e.g. verl's non_tensor_batch
    norm_adv_by_std_in_grpo: Optional[bool]
    sessions: Optional[AgentSessions]  # v1 multi-output agent sessions of the N rows
    padding_rows: Optional[torch.Tensor]  # (N,) bool: v1 rows verl added to pad the batch (tag is_padding)
    step: Optional[int]  # verl's training step (trainer.global_steps), read by a weight schedule


HISTORIES = RunHistories()  # the driver process trains one run

# What the shim forwarded for the verl call in progress, innermost first.
_forwarded: contextvars.ContextVar[tuple[_Forwarded, ...]] = contextvars.ContextVar("saw_verl_forwarded", default=())


@contextlib.contextmanager
def forwarded(
    columns: Optional[Mapping] = None,
    norm_adv_by_std_in_grpo: Optional[bool] = None,
    sessions: Optional[AgentSessions] = None,
    padding_rows: Optional[torch.Tensor] = None,
    step: Optional[int] = None,
):
    """Make per-key reward columns / the GRPO std switch / the agent sessions / the padding rows / the training
    step visible to saw_* estimators called inside."""
    forwarded_now = _Forwarded(columns, norm_adv_by_std_in_grpo, sessions, padding_rows, step)
    token = _forwarded.set((forwarded_now, *_forwarded.get()))
    try:
        yield
    finally:
        _forwarded.reset(token)


def _innermost(field: str):
    """The innermost forwarded value of `field` that is not None (None when nothing forwarded it)."""
    return next((getattr(f, field) for f in _forwarded.get() if getattr(f, field) is not None), None)


def _columns_for(estimator: str, non_tensor_batch: Optional[Mapping], keys) -> Mapping:
    sources = tuple(m for m in (non_tensor_batch, *(f.columns for f in _forwarded.get())) if m is not None)
    if not sources:
        raise SawInputError(
            f"{estimator} received no per-key rewards: verl did not forward non_tensor_batch and the saw_verl "
            "shim is not active in this process. Load the plugin in every verl process (install saw-verl so the "
            "'verl.plugins' entry point is found, or set VERL_USE_EXTERNAL_MODULES=saw_verl.integrations.verl.plugin)."
        )
    columns = ChainMap(*sources)
    missing = [key for key in keys if key not in columns]
    if missing and set(map(str, columns)) <= {"uid"}:
        raise SawInputError(
            f"{estimator}: reward keys {missing} not found and only 'uid' arrived: this is verl's v1 trainer "
            "without the saw_verl TransferQueue shim (PPOTrainer._compute_advantage wrapper), or compute_score "
            "returned a plain float instead of a dict with these keys."
        )
    return columns


def _training_step(estimator: str, cfg, step: Optional[int]) -> Optional[int]:
    """The step a weight schedule is read at: `step` if given, else the forwarded one, else the trainer's
    (`steps.current`); SawInputError when cfg has a schedule and none of them is known."""
    if step is None:
        step = _innermost("step")
    if step is None:
        step = steps.current()
    if step is None and cfg.weight_schedule is not None:
        raise SawInputError(
            f"{cfg.option('weight_schedule')} needs the training step, and none reached {estimator}: saw_verl reads "
            "verl's trainer.global_steps (forwarded by the v1 trainer's _compute_advantage, or of the trainer that "
            "loaded its checkpoint in this process); a direct call passes step=<t>"
        )
    return step


def _estimate(entry: Estimator, response_mask, index, config, non_tensor_batch, epsilon, norm, step):
    estimator = entry.verl_name
    if norm is None:
        norm = _innermost("norm_adv_by_std_in_grpo")
    cfg, own = estimator_config_from_algorithm(config, entry, epsilon=epsilon, norm_adv_by_std_in_grpo=norm)
    step = _training_step(estimator, cfg, step)
    num_rows = response_mask.shape[0]
    rewards = rewards_from_columns(_columns_for(estimator, non_tensor_batch, cfg.reward_keys), cfg.reward_keys, num_rows)
    if index is None:
        raise SawInputError(f"{estimator} needs the group index (non_tensor_batch['uid']); got index=None")
    group_ids, num_groups = group_ids_from_index(index)
    sessions = _innermost("sessions")
    if sessions is not None and sessions.num_rows != num_rows:
        raise SawInputError(f"{estimator}: verl passed {num_rows} rows but {sessions.num_rows} sample keys (batch_keys)")
    padding = _innermost("padding_rows")
    if sessions is not None and padding is not None:
        if padding.shape != (num_rows,):
            raise SawInputError(f"{estimator}: {tuple(padding.shape)} padding flags for {num_rows} rows")
        sessions = sessions.without(padding)
    if entry.saw_mode:
        own = {"history": HISTORIES.get(cfg)}
    if sessions is None or sessions.all_final:
        result = run_estimator(entry, rewards, group_ids, response_mask, cfg, own, num_groups, step=step)
        advantages = result.advantages
    else:
        final = _final_rows(sessions, rewards, cfg.reward_keys)
        final_mask = response_mask[final.to(response_mask.device)]
        result = run_estimator(entry, rewards[final], group_ids[final], final_mask, cfg, own, num_groups, step=step)
        advantages = sessions.broadcast(result.advantages, final_mask, response_mask)
    metrics.publish(estimator, cfg.reward_keys, result)
    return advantages, advantages


def _final_rows(sessions: AgentSessions, rewards: torch.Tensor, keys) -> torch.Tensor:
    """The final-output rows (S,) of `sessions`, after checking that their rewards (N, K) are finite there
    (an error names the batch row and sample key, not the row among final outputs; earlier outputs are not read)."""
    final = sessions.final_rows
    not_finite = ~torch.isfinite(rewards[final])
    if not_finite.any():
        position, k = not_finite.nonzero()[0].tolist()
        row = int(final[position])
        raise SawInputError(
            f"reward {keys[k]!r} is {rewards[row, k].item()} at row {row} (sample key {str(sessions.keys[row])!r}, "
            "the final output of its agent session): rewards must be finite"
        )
    return final


def _verl_estimator(entry: Estimator):
    """verl's estimator function for a registry entry: verl's keywords -> (advantages, returns), the same (N, L)
    float32 tensor. response_mask (N, L), index (N,) uids, config: verl's `algorithm` config; the rewards come
    from the per-key columns (token_level_rewards and batch are unused). step: the training step a weight
    schedule is read at (default: verl's, see `_training_step`)."""

    def compute_advantage(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index=None,
        config=None,
        non_tensor_batch: Optional[Mapping] = None,
        batch=None,
        epsilon: float = 1e-6,
        norm_adv_by_std_in_grpo: Optional[bool] = None,
        step: Optional[int] = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _estimate(
            entry, response_mask, index, config, non_tensor_batch, epsilon, norm_adv_by_std_in_grpo, step
        )

    compute_advantage.__name__ = f"compute_{entry.verl_name}_advantage"
    compute_advantage.__qualname__ = compute_advantage.__name__
    compute_advantage.__doc__ = f"`{entry.name}` of saw_verl's registry (docs/estimators.md) as a verl estimator."
    return compute_advantage


REGISTRY_BY_VERL_NAME = {entry.verl_name: entry for entry in REGISTRY.values()}
ESTIMATOR_FUNCTIONS = {name: _verl_estimator(entry) for name, entry in REGISTRY_BY_VERL_NAME.items()}
compute_saw_grpo_advantage = ESTIMATOR_FUNCTIONS["saw_grpo"]
compute_saw_gdpo_advantage = ESTIMATOR_FUNCTIONS["saw_gdpo"]
SAW_ESTIMATORS = tuple(ESTIMATOR_FUNCTIONS)  # the names the shim forwards per-key rewards to


def register() -> None:
    """Bind every registry estimator in verl's registry under its verl name; safe when this module is executed again
    (reload). A name verl or another package already holds is refused (none of ours is one of verl 0.9.1's)."""
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    for name, fn in ESTIMATOR_FUNCTIONS.items():
        current = registry.get(name)
        if current is fn:
            continue
        if current is not None:
            if (getattr(current, "__module__", None), getattr(current, "__qualname__", None)) != (
                fn.__module__,
                fn.__qualname__,
            ):
                raise ValueError(f"advantage estimator {name!r} is already registered by another package: {current!r}")
            del registry[name]  # an earlier execution of this module: replace it
        core_algos.register_adv_est(name)(fn)
