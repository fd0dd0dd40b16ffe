"""`SAWGRPOTrainer`: TRL's `GRPOTrainer` whose reward weights are SAW's, recomputed each generation batch.

TRL 1.x scores a generation batch in `GRPOTrainer._calculate_rewards`, which returns the gathered
(N, K) rewards of all processes (NaN where a reward function returned None), and aggregates them
right after with `self.reward_weights`. This subclass computes the SAW weights w_k from those rewards
(`saw_verl.weights.batch_weights`, on their device) and sets `reward_weights = w * alpha`, alpha
being the static `args.reward_weights`: TRL's own aggregation does the rest, so `saw_dynamic=False`
(w = 1) is exactly `GRPOTrainer`. Evaluation keeps the static weights.

`saw_conditions` (docs/spec.md, "Conditions and schedules") apply to those rewards first: the method returns
the conditioned rewards, so TRL aggregates them and logs them (`rewards/{name}/mean|std`, the completions
table) as the rewards that train. `saw_weight_schedule` gives alpha at `self.state.global_step + 1` (the step TRL
logs this generation batch's training under, 1 for the first), whose count a resumed run restores from its
checkpoint's trainer state.

With `saw_history_decay` > 0 the statistics come from a SawHistory (docs/spec.md, "History") held by a
`SawHistoryCallback` of the trainer: every rank holds the same pool (the rewards it merges are gathered
over processes), training batches update it and evaluation does not, and it travels in checkpoints as one
of the trainer state's `stateful_callbacks`, restored when training resumes from a checkpoint.
"""

from __future__ import annotations

import inspect

import torch
import trl
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import GRPOTrainer

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.history import SawHistory
from saw_verl.integrations.trl.config import SAWGRPOConfig
from saw_verl.shaping import condition_rewards, shaping_metrics
from saw_verl.weights import batch_weights, metric_name, step_metrics

# What SawConfig's errors call each option: SAWGRPOConfig's names
TRL_OPTION_NAMES = {
    "reward_keys": "reward function names",
    "static_weights": "reward_weights",
    "reward_min": "saw_reward_min",
    "preset": "saw_preset",
    "dynamic": "saw_dynamic",
    "delta": "saw_delta",
    "history_decay": "saw_history_decay",
    "conditions": "saw_conditions",
    "weight_schedule": "saw_weight_schedule",
}
# The reward sum with the static weights alpha_k: TRL's logged "reward" uses the SAW-weighted ones
STATIC_REWARD_METRIC = "saw/static_weighted_reward"
_HOOK_PARAMETERS = ["self", "inputs", "prompts", "completions", "completion_ids_list"]


def _require_trl_hook() -> None:
    """Fail clearly if this TRL has no `GRPOTrainer._calculate_rewards(inputs, prompts, ...)` to override."""
    hook = getattr(GRPOTrainer, "_calculate_rewards", None)
    if hook is None or list(inspect.signature(hook).parameters) != _HOOK_PARAMETERS:
        raise RuntimeError(
            f"SAWGRPOTrainer overrides GRPOTrainer._calculate_rewards{tuple(_HOOK_PARAMETERS[1:])}, which trl "
            f"{trl.__version__} does not have (tested with trl 1.16; supported: trl>=0.27,<2)"
        )


def build_saw_config(args: SAWGRPOConfig, reward_names: list[str], static_weights: torch.Tensor) -> SawConfig:
    """The SawConfig of a run, with TRL's option names in its errors (static_weights: TRL's reward_weights, unused
    with a weight schedule)."""
    schedule = args.saw_weight_schedule
    try:
        return SawConfig(
            reward_keys=tuple(reward_names),
            mode=args.saw_mode,
            preset=args.saw_preset,
            dynamic=args.saw_dynamic,
            reward_min=args.saw_reward_min,
            static_weights=None if schedule is not None else static_weights.tolist(),
            delta=args.saw_delta,
            history_decay=args.saw_history_decay,
            conditions=args.saw_conditions or (),
            weight_schedule=schedule,
            option_names=TRL_OPTION_NAMES,
        )
    except SawInputError as error:
        raise SawInputError(f"SAWGRPOTrainer (reward functions {reward_names}): {error}") from None


def check_finite(rewards: torch.Tensor, reward_names: list[str]) -> None:
    """rewards (N, K): SawInputError naming the reward function and row of the first +-inf (NaN = not scored)."""
    infinite = torch.isinf(rewards)
    if infinite.any():
        row, column = infinite.nonzero()[0].tolist()
        raise SawInputError(
            f"reward function {reward_names[column]!r} returned {rewards[row, column].item()} for row {row} of the "
            f"generation batch (N={rewards.shape[0]}, gathered over processes); SAW needs finite rewards "
            "(return None to leave a completion unscored)"
        )


class SawHistoryCallback(TrainerCallback, ExportableState):
    """Holds the run's SawHistory; saved with the trainer state and loaded back when training resumes."""

    def __init__(self):
        self.history = SawHistory()

    def state(self) -> dict:
        return {"args": {}, "attributes": {"history_state": self.history.state_dict()}}

    @property
    def history_state(self) -> dict:
        return self.history.state_dict()

    @history_state.setter
    def history_state(self, state: dict) -> None:  # the Trainer's restore of stateful callbacks sets it
        self.history.load_state_dict(state)

    def on_train_begin(self, args, state, control, **kwargs):
        """Load the pool of the checkpoint training resumes from (a new run: the empty pool it saved at start)."""
        saved = state.stateful_callbacks.get(type(self).__name__)
        if saved:
            self.history.load_state_dict(saved["attributes"]["history_state"])


class SAWGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` with SAW weights; takes the same arguments, `args` a `SAWGRPOConfig`.

    Logs, per reward function and generation batch, `saw/{name}/weight|cv|mean|std` (mean/std of the
    raw reward in the batch, unscored completions left out; with a history also `saw/{name}/batch_cv`) and
    `saw/static_weighted_reward` (sum of alpha_k * r_k, TRL's "reward" with the static weights; TRL's own
    "reward" is then the SAW-weighted sum), `saw/{name}/alpha` (alpha_k, the schedule's at the step) and, for a
    function with a condition, `saw/{name}/gated_fraction` (the share of the batch's completions its condition
    set to the fill).
    """

    def __init__(self, model, reward_funcs, args: SAWGRPOConfig | None = None, **kwargs):
        _require_trl_hook()
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SAWGRPOConfig(output_dir=f"{name.split('/')[-1]}-SAW-GRPO")
        if not isinstance(args, SAWGRPOConfig):
            raise TypeError(f"SAWGRPOTrainer needs args=SAWGRPOConfig(...), got {type(args).__name__}")
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self.static_reward_weights = self.reward_weights.clone()  # alpha_k, float32 (K,)
        self.saw_config = build_saw_config(args, list(self.reward_func_names), self.static_reward_weights)
        if self.saw_config.history_decay > 0:
            self.add_callback(SawHistoryCallback())

    @property
    def saw_history(self) -> SawHistory | None:
        """The run's SawHistory (None with saw_history_decay=0); looked up, since a resume replaces the callback."""
        holder = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, SawHistoryCallback)), None)
        return None if holder is None else holder.history

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's gathered (N, K) rewards after `saw_conditions`; sets `self.reward_weights` for the aggregation that
        follows, with alpha at `self.state.global_step + 1` under a `saw_weight_schedule`."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        names = list(self.reward_func_names)
        check_finite(rewards, names)
        cfg = self.saw_config.at_step(self.state.global_step + 1)  # the step TRL logs this one under
        gated = None
        if cfg.conditions:
            conditioned, gated = condition_rewards(rewards, cfg.conditions)
            rewards = conditioned.to(rewards.dtype)
        if self.saw_config.weight_schedule is None:
            alpha = self.static_reward_weights.to(rewards.device)
        else:
            alpha = torch.tensor(cfg.static_weights, dtype=torch.float32, device=rewards.device)
        if not self.model.training:  # evaluation: the static weights, no SAW metrics
            self.reward_weights = alpha
            return rewards
        history = self.saw_history
        pool = None if history is None else history.pool_for(cfg, rewards.device)
        stats = batch_weights(rewards, cfg, pool)
        if history is not None:
            history.commit(cfg, stats.pool)
        self.reward_weights = (stats.weights * alpha.double()).float()  # w = 1: alpha bit for bit
        metrics = self._metrics["train"]
        for name, value in step_metrics(names, stats).items():
            metrics[name].append(value)
        for stat, (values, keys) in shaping_metrics(cfg.static_weights, gated, cfg.conditions, "cpu").items():
            for index, value in zip(keys, values.tolist()):
                metrics[metric_name(names[index], stat)].append(value)
        static_sum = (rewards * alpha).nansum(dim=1)
        static_sum[torch.isnan(rewards).all(dim=1)] = torch.nan  # as TRL: unscorable rows left out
        metrics[STATIC_REWARD_METRIC].append(torch.nanmean(static_sum).item())
        return rewards
