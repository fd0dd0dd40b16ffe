"""SAW options for OpenRLHF and the Ray runtime_env that carries them to every worker (no OpenRLHF import).

The options travel as one JSON environment variable, ``SAW_VERL_OPENRLHF``; the Ray
``worker_process_setup_hook`` (:mod:`saw_verl.integrations.openrlhf.hook`) installs the wrapper that
reads it. Validation is the core's :class:`~saw_verl.config.SawConfig`, with its option names
translated to this integration's (``--saw.reward_min`` ...).
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence, Union

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError

ENV_VAR = "SAW_VERL_OPENRLHF"
SETUP_HOOK = "saw_verl.integrations.openrlhf.hook.setup"
ESTIMATOR_MODES = {"saw_grpo": "grpo", "saw_gdpo": "gdpo"}
# Every registry estimator but gd2po: its filtered groups are not zero-mean, and the delegate subtracts group means.
# Spelt out: this module imports no torch (the Ray setup hook's package imports it); saw_verl.registry loads on use.
OPENRLHF_ESTIMATORS = ("saw_grpo", "saw_gdpo", "gdpo", "mo_grpo", "corr_grpo")
NOT_HOSTED = {"gd2po": "its dropped rollouts leave groups whose mean is not 0, and OpenRLHF's only pass-through "
                       "estimator (dr_grpo) subtracts each group's mean: use it in verl"}
SAW_ONLY_DEFAULTS = {"reward_min": None, "preset": "paper", "dynamic": True, "history_decay": 0.0}
DELEGATE_ESTIMATOR = "dr_grpo"  # subtracts each group's mean (a no-op on SAW's zero-mean groups), no whitening
# What SawConfig's errors call each option: the launcher's --saw.* flags (saw_runtime_env's arguments)
OPENRLHF_OPTION_NAMES = {
    "reward_keys": "--saw.reward_keys",
    "static_weights": "--saw.reward_weights",
    "reward_min": "--saw.reward_min",
    "preset": "--saw.preset",
    "dynamic": "--saw.dynamic",
    "history_decay": "--saw.history_decay",
    "conditions": "--saw.conditions",
    "weight_schedule": "--saw.weight_schedule",
}


def openrlhf_estimator(estimator: str):
    """The registry entry (saw_verl.registry.Estimator) of an estimator OpenRLHF can host (SawInputError naming the
    flag otherwise)."""
    from saw_verl.registry import REGISTRY

    if estimator in NOT_HOSTED:
        raise SawInputError(f"--algo.advantage.estimator {estimator} cannot run in OpenRLHF: {NOT_HOSTED[estimator]}")
    if estimator not in OPENRLHF_ESTIMATORS:
        raise SawInputError(f"unknown saw_verl estimator {estimator!r}; expected one of {list(OPENRLHF_ESTIMATORS)}")
    return REGISTRY[estimator]


def saw_config(
    estimator: str,
    reward_keys: Union[str, Sequence[str]],
    reward_min: Optional[Sequence[float]] = None,
    reward_weights: Optional[Sequence[float]] = None,
    preset: str = "paper",
    dynamic: bool = True,
    history_decay: float = 0.0,
    options: Optional[Mapping] = None,
    conditions: Optional[Mapping] = None,
    weight_schedule: Optional[Sequence] = None,
) -> SawConfig:
    """Validated SawConfig for `estimator` (a registry name OpenRLHF hosts); reward_keys: a sequence or "a,b".
    history_decay: in [0, 1), SAW's statistics over a decayed pool of past steps (docs/spec.md, "History").
    options: the estimator's own options (gdpo: whitening), checked here; SAW's options set for a rival are
    refused (they would do nothing). conditions: {key: (condition key, threshold[, fill])}; weight_schedule:
    [(step, weights), ...] or {step: weights}, excluding reward_weights (docs/spec.md, "Conditions and schedules"),
    for every estimator."""
    from saw_verl.registry import check_option_names, estimator_config

    entry = openrlhf_estimator(estimator)
    if isinstance(reward_keys, str):
        reward_keys = [key.strip() for key in reward_keys.split(",") if key.strip()]
    options = dict(options or {})
    check_option_names(entry, options, what="option (--saw.*)")
    entry.check(**options)
    if not entry.saw_mode:
        saw_only = {"reward_min": reward_min, "preset": preset, "dynamic": dynamic, "history_decay": history_decay}
        changed = [name for name, value in saw_only.items() if value != SAW_ONLY_DEFAULTS[name]]
        if changed:
            raise SawInputError(f"--saw.{changed[0]} is a SAW option: it does nothing for {estimator}; drop it")
        shared = {"reward_keys": tuple(reward_keys), "reward_weights": reward_weights, "conditions": conditions,
                  "weight_schedule": weight_schedule}
        return estimator_config(entry, len(reward_keys), shared, option_names=OPENRLHF_OPTION_NAMES)
    return SawConfig(
        reward_keys=tuple(reward_keys),
        mode=ESTIMATOR_MODES[estimator],
        preset=preset,
        dynamic=dynamic,
        reward_min=None if reward_min is None else tuple(reward_min),
        static_weights=None if reward_weights is None else tuple(reward_weights),
        history_decay=history_decay,
        conditions=conditions or (),
        weight_schedule=weight_schedule,
        option_names=OPENRLHF_OPTION_NAMES,
    )


def estimator_of(cfg: SawConfig) -> str:
    """saw_grpo / saw_gdpo for a SawConfig of SAW built by :func:`saw_config`."""
    return f"saw_{cfg.mode}"


def saw_runtime_env(
    estimator: str,
    reward_keys: Union[str, Sequence[str]],
    reward_min: Optional[Sequence[float]] = None,
    reward_weights: Optional[Sequence[float]] = None,
    preset: str = "paper",
    dynamic: bool = True,
    history_decay: float = 0.0,
    options: Optional[Mapping] = None,
    conditions: Optional[Mapping] = None,
    weight_schedule: Optional[Sequence] = None,
) -> dict:
    """The Ray runtime_env that makes every worker compute `estimator`'s advantages in OpenRLHF.

    Pass it to ``ray.init(runtime_env=...)`` (merged with yours: :func:`merge_runtime_env`) or to
    ``ray job submit --runtime-env-json``, and run OpenRLHF with ``--algo.advantage.estimator dr_grpo``.
    Options are validated now (SawInputError naming the option). reward_min / reward_weights: one per key;
    history_decay, options, conditions, weight_schedule: as saw_config.
    """
    cfg = saw_config(estimator, reward_keys, reward_min, reward_weights, preset, dynamic, history_decay, options,
                     conditions, weight_schedule)
    payload = {"estimator": estimator, "reward_keys": list(cfg.reward_keys)}
    payload.update(shaping_payload(cfg))
    if estimator in ESTIMATOR_MODES:  # SAW's own options (a rival takes none of them)
        payload.update(reward_min=list(cfg.reward_min), preset=cfg.preset, dynamic=cfg.dynamic,
                       history_decay=cfg.history_decay)
    if options:
        payload["options"] = dict(options)
    return {"worker_process_setup_hook": SETUP_HOOK, "env_vars": {ENV_VAR: json.dumps(payload)}}


def shaping_payload(cfg: SawConfig) -> dict:
    """The static weights (or the weight schedule that replaces them) and the conditions of cfg, as JSON values
    saw_config reads back: {"reward_weights": [...]} or {"weight_schedule": [[step, [...]], ...]}, plus
    {"conditions": {key: [condition key, threshold, fill]}} when there are some."""
    keys = cfg.reward_keys
    if cfg.weight_schedule is None:
        out = {"reward_weights": list(cfg.static_weights)}
    else:
        out = {"weight_schedule": [[step, list(weights)] for step, weights in cfg.weight_schedule.points]}
    if cfg.conditions:
        out["conditions"] = {keys[c.key]: [keys[c.on], c.threshold, c.fill] for c in cfg.conditions}
    return out


def config_from_env(environ: Mapping[str, str] = os.environ) -> Optional[SawConfig]:
    """The SawConfig that ``SAW_VERL_OPENRLHF`` carries, or None when it is unset (saw_verl off)."""
    selected = selected_from_env(environ)
    return None if selected is None else selected[1]


def selected_from_env(environ: Mapping[str, str] = os.environ) -> Optional[tuple[str, SawConfig, dict]]:
    """(estimator name, SawConfig, its own options) that ``SAW_VERL_OPENRLHF`` carries, or None when it is unset."""
    raw = environ.get(ENV_VAR)
    if not raw:
        return None
    try:
        fields = json.loads(raw)
        if not isinstance(fields, dict):
            raise TypeError("not a JSON object")
        return fields.get("estimator"), saw_config(**fields), dict(fields.get("options") or {})
    except SawInputError:
        raise
    except (ValueError, TypeError) as error:  # bad JSON, unknown or missing fields
        raise SawInputError(f"{ENV_VAR} is not what saw_runtime_env() writes ({error}): {raw!r}") from None


def merge_runtime_env(base: Optional[Mapping], saw_env: Mapping) -> dict:
    """`base` (a runtime_env dict or None, left unchanged) plus SAW's setup hook and env var.

    Raises SawInputError if `base` already has another setup hook or another SAW_VERL_OPENRLHF value.
    """
    merged = dict(base or {})
    hook = merged.get("worker_process_setup_hook")
    if hook not in (None, saw_env["worker_process_setup_hook"]):
        raise SawInputError(
            f"the Ray runtime_env already has worker_process_setup_hook={hook!r}; SAW needs its own "
            f"({saw_env['worker_process_setup_hook']!r}). Call {hook!r} from a hook of yours that also calls "
            f"{SETUP_HOOK}, and pass that one."
        )
    env_vars = dict(merged.get("env_vars") or {})
    for name, value in saw_env["env_vars"].items():
        if env_vars.get(name, value) != value:
            raise SawInputError(f"the Ray runtime_env already sets {name}={env_vars[name]!r}, which differs from {value!r}")
    env_vars.update(saw_env["env_vars"])
    merged["worker_process_setup_hook"] = saw_env["worker_process_setup_hook"]
    merged["env_vars"] = env_vars
    return merged
