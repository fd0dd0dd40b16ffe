"""One registry of multi-reward advantage estimators: SAW's and its rivals, one signature, run by name.

Every estimator takes rewards (N, K), group ids (N,), a response mask (N, L) and options, and returns an
EstimatorResult: advantages (N, L) float32 and per-key statistics. `compute_advantages` is the tensor API; the
verl, OpenRLHF and TRL integrations dispatch by name through `run_estimator`. docs/estimators.md pins each rival
to its source and lists the choices made where the source leaves them open.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, NamedTuple, Optional

from saw_verl.advantages import as_tensors, saw_advantages
from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.result import EstimatorResult, SawResult
from saw_verl.rivals.corr_grpo import corr_grpo_advantages
from saw_verl.rivals.gd2po import check_tau, gd2po_advantages
from saw_verl.rivals.gdpo import check_whitening, gdpo_advantages
from saw_verl.rivals.mo_grpo import mo_grpo_advantages
from saw_verl.shaping import condition_rewards, shaping_metrics

# Options every estimator takes (SawConfig fields): the reward keys, their static weights, the group epsilon,
# verl's norm_adv_by_std_in_grpo switch, the conditions and the weight schedule (saw_verl.shaping).
SHARED_OPTIONS = {"reward_keys": None, "reward_weights": None, "epsilon": 1e-6, "norm_by_std": True,
                  "conditions": None, "weight_schedule": None}
TENSOR_API_NAMES = {"static_weights": "reward_weights"}  # SawConfig fields the tensor API names otherwise
SAW_OPTIONS = {"preset": "paper", "dynamic": True, "reward_min": None, "delta": 1e-8, "history_decay": 0.0}


class Estimator(NamedTuple):
    """name: the registry's (and OpenRLHF's) name. run: (rewards, group_ids, mask, cfg, num_groups, **own) ->
    EstimatorResult. own_options: the estimator's own options and their defaults. check: validates them
    (SawInputError), before any tensor work. verl_name: its name in verl's estimator registry (never one of verl's
    own). saw_mode: "grpo" / "gdpo" for SAW's estimators, None for the rivals."""

    name: str
    run: Callable[..., EstimatorResult]
    own_options: dict
    check: Callable[..., None]
    verl_name: str
    saw_mode: Optional[str] = None


def _no_options(**_) -> None:
    return None


def _saw(mode: str):
    def run(rewards, group_ids, mask, cfg, num_groups=None, history=None, backend=None) -> EstimatorResult:
        result = saw_advantages(rewards, group_ids, mask, cfg, num_groups=num_groups, backend=backend, history=history)
        return saw_estimator_result(result)

    return run


def saw_estimator_result(result: SawResult) -> EstimatorResult:
    """A SawResult as the registry's EstimatorResult: the saw/{key}/{weight,cv,mean,std[,batch_cv]} statistics."""
    per_key = {"weight": result.weights, "cv": result.cv, "mean": result.mean, "std": result.std}
    if result.pool is not None:
        per_key["batch_cv"] = result.batch_cv
    return EstimatorResult(result.advantages, per_key, {}, "saw", result)


_SAW_OWN = {"history": None, "backend": None}  # SAW_OPTIONS are SawConfig fields (estimator_config)
REGISTRY: dict[str, Estimator] = {
    estimator.name: estimator
    for estimator in (
        Estimator("saw_grpo", _saw("grpo"), _SAW_OWN, _no_options, "saw_grpo", "grpo"),
        Estimator("saw_gdpo", _saw("gdpo"), _SAW_OWN, _no_options, "saw_gdpo", "gdpo"),
        Estimator("gdpo", gdpo_advantages, {"whitening": "token"}, lambda whitening="token": check_whitening(whitening),
                  "saw_verl_gdpo"),
        Estimator("mo_grpo", mo_grpo_advantages, {}, _no_options, "mo_grpo"),
        Estimator("corr_grpo", corr_grpo_advantages, {}, _no_options, "corr_grpo"),
        Estimator("gd2po", gd2po_advantages, {"tau": None}, lambda tau=None: check_tau(tau), "gd2po"),
    )
}
ESTIMATORS = tuple(REGISTRY)


def get_estimator(name: str) -> Estimator:
    """The registry entry of `name`; SawInputError with a did-you-mean for an unknown one."""
    if name not in REGISTRY:
        hint = difflib.get_close_matches(str(name), ESTIMATORS, n=1)
        raise SawInputError(
            f"unknown estimator {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; the estimators are {', '.join(ESTIMATORS)}"
        )
    return REGISTRY[name]


def check_option_names(estimator: Estimator, names, what: str = "option") -> None:
    """SawInputError naming each unknown option of `estimator` (with a did-you-mean) and listing the known ones."""
    known = tuple(SHARED_OPTIONS) + tuple(estimator.own_options) + (
        tuple(SAW_OPTIONS) if estimator.saw_mode else ()
    )
    unknown = sorted(set(names) - set(known))
    if unknown:
        hints = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        named = ", ".join(
            f"{name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for name, hint in hints.items()
        )
        raise SawInputError(f"unknown {estimator.name} {what} {named}; its options are {', '.join(known)}")


def estimator_config(estimator: Estimator, num_keys: int, options: dict, option_names=None) -> SawConfig:
    """The SawConfig of a call: shared options (and SAW's, for saw_*), keys defaulting to reward_0..reward_{K-1}."""
    keys = options.get("reward_keys") or tuple(f"reward_{k}" for k in range(num_keys))
    saw_fields = {name: options[name] for name in SAW_OPTIONS if name in options} if estimator.saw_mode else {}
    return SawConfig(
        reward_keys=tuple(keys),
        mode=estimator.saw_mode or "gdpo",
        static_weights=options.get("reward_weights"),
        epsilon=options.get("epsilon", SHARED_OPTIONS["epsilon"]),
        norm_by_std=options.get("norm_by_std", SHARED_OPTIONS["norm_by_std"]),
        conditions=options.get("conditions") or (),
        weight_schedule=options.get("weight_schedule"),
        option_names=option_names or TENSOR_API_NAMES,
        **saw_fields,
    )


def run_estimator(
    estimator: Estimator, rewards, group_ids, response_mask, cfg: SawConfig, own: dict[str, Any],
    num_groups: Optional[int] = None, step=None,
) -> EstimatorResult:
    """Run `estimator` on checked options: cfg (keys, weights, epsilon, norm_by_std, conditions, weight schedule;
    SAW's own for saw_*) and its own options `own` (for saw_*: history, backend), at training step `step` (needed
    with a weight schedule). In order (docs/spec.md, "Conditions and schedules"): the conditions (SAW's backends
    apply them in their own first pass; the rivals' here, on the torch path), the schedule's alpha at `step`, the
    estimator. num_groups: optional hint that the ids are dense. Returns its EstimatorResult with the shaping
    statistics (saw/{key}/alpha, saw/{key}/gated_fraction)."""
    cfg = cfg.at_step(step)
    gated = None
    if cfg.conditions and not estimator.saw_mode:
        rewards = as_tensors(rewards, group_ids, response_mask)[0]
        if rewards.dim() != 2 or rewards.shape[1] != cfg.num_keys:
            raise SawInputError(f"rewards must be (N, K={cfg.num_keys}) for keys {list(cfg.reward_keys)}, got "
                                f"{tuple(rewards.shape)}")
        rewards, gated = condition_rewards(rewards, cfg.conditions)
    result = estimator.run(rewards, group_ids, response_mask, cfg, num_groups, **own)
    if result.saw is not None:
        gated = result.saw.gated_fraction
    device = result.advantages.device
    return result._replace(shaping=shaping_metrics(cfg.static_weights, gated, cfg.conditions, device))


def compute_advantages(
    estimator: str, rewards, group_ids, response_mask, step=None, **options,
) -> EstimatorResult:
    """Advantages of the named estimator on tensors (CPU or CUDA; NumPy arrays and lists are taken as tensors).

    estimator: one of ESTIMATORS. rewards (N, K) float; group_ids (N,) integer, any values; response_mask (N, L)
    bool/int/float. step: the training step (needed with a weight_schedule). options by name: reward_keys (K names),
    reward_weights (K static weights), epsilon (group std epsilon), norm_by_std, conditions ({key: (condition key,
    threshold[, fill])}), weight_schedule ({step: K weights}; excludes reward_weights); SAW's (preset, dynamic, reward_min, delta, history_decay, history, backend) for
    saw_grpo / saw_gdpo; gdpo: whitening ("token" | "sequence"); gd2po: tau (None: the hard filter).
    Returns EstimatorResult: advantages (N, L) float32 and per-key statistics (EstimatorResult.metrics).
    Unknown or misspelt options raise SawInputError with a did-you-mean.
    """
    entry = get_estimator(estimator)
    check_option_names(entry, options)
    own = {name: options[name] for name in entry.own_options if name in options}
    entry.check(**{name: value for name, value in own.items() if name not in ("history", "backend")})
    rewards, group_ids, response_mask = as_tensors(rewards, group_ids, response_mask)
    if rewards.dim() != 2:
        raise SawInputError(f"rewards must be (N, K), got {tuple(rewards.shape)}")
    cfg = estimator_config(entry, rewards.shape[1], options)
    return run_estimator(entry, rewards, group_ids, response_mask, cfg, own, step=step)
