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
DELEGATE_ESTIMATOR = "dr_grpo"  # subtracts each group's mean (a no-op on SAW's zero-mean groups), no whitening
# What SawConfig's errors call each option: the launcher's --saw.* flags (saw_runtime_env's arguments)
OPENRLHF_OPTION_NAMES = {
    "reward_keys": "--saw.reward_keys",
    "static_weights": "--saw.reward_weights",
    "reward_min": "--saw.reward_min",
    "preset": "--saw.preset",
    "dynamic": "--saw.dynamic",
    "history_decay": "--saw.history_decay",
}


def saw_config(
    estimator: str,
    reward_keys: Union[str, Sequence[str]],
    reward_min: Optional[Sequence[float]] = None,
    reward_weights: Optional[Sequence[float]] = None,
    preset: str = "paper",
    dynamic: bool = True,
    history_decay: float = 0.0,
) -> SawConfig:
    """Validated SawConfig for `estimator` (saw_grpo | saw_gdpo); reward_keys: a sequence or "a,b".
    history_decay: in [0, 1), SAW's statistics over a decayed pool of past steps (docs/spec.md, "History")."""
    if estimator not in ESTIMATOR_MODES:
        raise SawInputError(f"unknown SAW estimator {estimator!r}; expected one of {sorted(ESTIMATOR_MODES)}")
    if isinstance(reward_keys, str):
        reward_keys = [key.strip() for key in reward_keys.split(",") if key.strip()]
    return SawConfig(
        reward_keys=tuple(reward_keys),
        mode=ESTIMATOR_MODES[estimator],
        preset=preset,
        dynamic=dynamic,
        reward_min=None if reward_min is None else tuple(reward_min),
        static_weights=None if reward_weights is None else tuple(reward_weights),
        history_decay=history_decay,
        option_names=OPENRLHF_OPTION_NAMES,
    )


def estimator_of(cfg: SawConfig) -> str:
    """saw_grpo / saw_gdpo for a SawConfig built by :func:`saw_config`."""
    return f"saw_{cfg.mode}"


def saw_runtime_env(
    estimator: str,
    reward_keys: Union[str, Sequence[str]],
    reward_min: Optional[Sequence[float]] = None,
    reward_weights: Optional[Sequence[float]] = None,
    preset: str = "paper",
    dynamic: bool = True,
    history_decay: float = 0.0,
) -> dict:
    """The Ray runtime_env that makes every worker compute SAW advantages in OpenRLHF.

    Pass it to ``ray.init(runtime_env=...)`` (merged with yours: :func:`merge_runtime_env`) or to
    ``ray job submit --runtime-env-json``, and run OpenRLHF with ``--algo.advantage.estimator dr_grpo``.
    Options are validated now (SawInputError naming the option). reward_min / reward_weights: one per key;
    history_decay: as saw_config.
    """
    cfg = saw_config(estimator, reward_keys, reward_min, reward_weights, preset, dynamic, history_decay)
    payload = {
        "estimator": estimator,
        "reward_keys": list(cfg.reward_keys),
        "reward_min": list(cfg.reward_min),
        "reward_weights": list(cfg.static_weights),
        "preset": cfg.preset,
        "dynamic": cfg.dynamic,
        "history_decay": cfg.history_decay,
    }
    return {"worker_process_setup_hook": SETUP_HOOK, "env_vars": {ENV_VAR: json.dumps(payload)}}


def config_from_env(environ: Mapping[str, str] = os.environ) -> Optional[SawConfig]:
    """The SawConfig that ``SAW_VERL_OPENRLHF`` carries, or None when it is unset (SAW off)."""
    raw = environ.get(ENV_VAR)
    if not raw:
        return None
    try:
        fields = json.loads(raw)
        if not isinstance(fields, dict):
            raise TypeError("not a JSON object")
        return saw_config(**fields)
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
