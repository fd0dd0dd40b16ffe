"""SAW options in a verl `algorithm` config -> a validated `SawConfig`.

Per-dimension keys and static weights are verl's own `algorithm.gdpo_reward_keys` /
`algorithm.gdpo_reward_weights`; SAW's options live under `algorithm.saw`:

    algorithm:
      adv_estimator: saw_gdpo                               # or saw_grpo
      gdpo_reward_keys: [accuracy_reward, format_reward]
      saw: {preset: paper, dynamic: true, reward_min: [0, 0], delta: 1.0e-8, history_decay: 0.0}

Every estimator of the registry, SAW's and the rivals', also takes the conditions and the weight schedule
(saw_verl.shaping) in the same block:

      saw:
        conditions: {format_reward: [accuracy_reward, 1.0]}      # key: [condition key, threshold(, fill)]
        weight_schedule: {0: [1.0, 0.0], 100: [1.0, 1.0]}         # step: one weight per key; or [[step, weights], ...]

The schedule is read at verl's training step (`steps`) and replaces `algorithm.gdpo_reward_weights`.

The rivals of the registry (`algorithm.adv_estimator=saw_verl_gdpo | mo_grpo | corr_grpo | gd2po`,
docs/estimators.md) take the same keys and weights, and their own options in the same block
(`algorithm.saw.whitening` for saw_verl_gdpo, `algorithm.saw.tau` for gd2po).

The readers accept an OmegaConf DictConfig, a verl dataclass config, or a plain dict. `validate_run` checks
a whole job's config in verl's driver, where verl validates its own (the shim wraps `validate_config`), so
an option error of any registry estimator stops the job before Ray starts.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.trainer.config import AlgoConfig

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.registry import REGISTRY, Estimator, estimator_config

logger = logging.getLogger(__name__)

# What SawConfig's errors call each option in a verl job: verl's config keys.
VERL_OPTION_NAMES = {
    "reward_keys": "algorithm.gdpo_reward_keys",
    "static_weights": "algorithm.gdpo_reward_weights",
    "reward_min": "algorithm.saw.reward_min",
    "preset": "algorithm.saw.preset",
    "dynamic": "algorithm.saw.dynamic",
    "delta": "algorithm.saw.delta",
    "history_decay": "algorithm.saw.history_decay",
    "conditions": "algorithm.saw.conditions",
    "weight_schedule": "algorithm.saw.weight_schedule",
}
SAW_OPTION_DEFAULTS = {"preset": "paper", "dynamic": True, "reward_min": None, "delta": 1e-8, "history_decay": 0.0}
# The options every estimator of the registry takes in the block (saw_verl.shaping), unset by default
SHAPING_OPTIONS = {"conditions": None, "weight_schedule": None}
# The rivals' own options, allowed in the same block (each estimator checks that it takes the ones set)
RIVAL_OPTIONS = sorted({name for entry in REGISTRY.values() if not entry.saw_mode for name in entry.own_options})
_warned_kl_in_reward = False


@dataclass
class SawAlgoConfig(AlgoConfig):
    """verl's `AlgoConfig` plus the `algorithm.saw` block (plain `AlgoConfig` rejects unknown keys), for code that
    converts `config.algorithm` with `omega_conf_to_dataclass` itself: verl 0.9.1's trainers never do, and jobs
    need no `_target_` (the driver's `validate_run` checks the options)."""

    saw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        parent_post_init = getattr(super(), "__post_init__", None)
        if parent_post_init is not None:
            parent_post_init()
        saw_options(self)  # unknown options fail when the config is built, not at the first step


def _plain(value):
    """OmegaConf containers -> plain Python (dict / list); anything else unchanged."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _get(config, key: str, default=None):
    """`config.get(key, default)` for DictConfig, verl dataclass configs and dicts."""
    if isinstance(config, Mapping) or hasattr(config, "get"):
        return _plain(config.get(key, default))
    return _plain(getattr(config, key, default))


def saw_options(algorithm_config) -> dict[str, Any]:
    """The `algorithm.saw` block (plain Python) merged over SAW_OPTION_DEFAULTS and SHAPING_OPTIONS; unknown
    options -> SawInputError."""
    block = _get(algorithm_config, "saw", None)
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise SawInputError(f"algorithm.saw must be a mapping of SAW options, got {type(block).__name__}: {block!r}")
    unknown = sorted(set(map(str, block)) - set(SAW_OPTION_DEFAULTS) - set(RIVAL_OPTIONS) - set(SHAPING_OPTIONS))
    if unknown:
        raise SawInputError(
            f"unknown option(s) in algorithm.saw: {unknown}; known options: {sorted(SAW_OPTION_DEFAULTS)} "
            f"(SAW), {RIVAL_OPTIONS} (the rivals, docs/estimators.md) and {sorted(SHAPING_OPTIONS)} (every estimator)"
        )
    return {**SAW_OPTION_DEFAULTS, **SHAPING_OPTIONS, **block}


def _optional_list(option: str, value) -> Optional[list]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SawInputError(f"{option} must be a list (one entry per reward key), got {value!r}")
    return list(value)


def saw_config_from_algorithm(
    algorithm_config, mode: str, epsilon: float = 1e-6, norm_adv_by_std_in_grpo: Optional[bool] = None
) -> SawConfig:
    """verl's `config.algorithm` -> SawConfig (mode "grpo" / "gdpo" comes from the estimator name).

    `norm_adv_by_std_in_grpo` falls back to `algorithm.norm_adv_by_std_in_grpo` (default true).
    Raises SawInputError naming the option at fault.
    """
    if algorithm_config is None:
        raise SawInputError(
            f"saw_{mode} needs verl's algorithm config (algorithm.gdpo_reward_keys, algorithm.saw); got config=None"
        )
    keys = _optional_list("algorithm.gdpo_reward_keys", _get(algorithm_config, "gdpo_reward_keys"))
    if keys is None:
        raise SawInputError(
            f"saw_{mode} needs algorithm.gdpo_reward_keys: the reward dimensions returned by compute_score, "
            f"e.g. '+algorithm.gdpo_reward_keys=[accuracy_reward,format_reward]'"
        )
    options = saw_options(algorithm_config)
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = _get(algorithm_config, "norm_adv_by_std_in_grpo", True)
    _warn_once_if_kl_in_reward(algorithm_config, f"saw_{mode}")
    return SawConfig(
        reward_keys=tuple(keys),
        mode=mode,
        preset=options["preset"],
        dynamic=options["dynamic"],
        reward_min=_optional_list("algorithm.saw.reward_min", options["reward_min"]),
        static_weights=_optional_list("algorithm.gdpo_reward_weights", _get(algorithm_config, "gdpo_reward_weights")),
        delta=options["delta"],
        history_decay=options["history_decay"],
        conditions=options["conditions"] or (),
        weight_schedule=options["weight_schedule"],
        epsilon=epsilon,
        norm_by_std=bool(norm_adv_by_std_in_grpo),
        option_names=VERL_OPTION_NAMES,
    )


def estimator_config_from_algorithm(
    algorithm_config, estimator: Estimator, epsilon: float = 1e-6, norm_adv_by_std_in_grpo: Optional[bool] = None
) -> tuple[SawConfig, dict[str, Any]]:
    """verl's `config.algorithm` -> (SawConfig, the estimator's own options) for any registry estimator.

    SAW's estimators read the whole `algorithm.saw` block (saw_config_from_algorithm); a rival reads the keys,
    weights and GRPO std switch as SAW does and only its own options from the block: a SAW option or another
    rival's option set there raises SawInputError (it would do nothing)."""
    if estimator.saw_mode:
        return saw_config_from_algorithm(algorithm_config, estimator.saw_mode, epsilon, norm_adv_by_std_in_grpo), {}
    if algorithm_config is None:
        raise SawInputError(f"{estimator.verl_name} needs verl's algorithm config (algorithm.gdpo_reward_keys)")
    keys = _optional_list("algorithm.gdpo_reward_keys", _get(algorithm_config, "gdpo_reward_keys"))
    if keys is None:
        raise SawInputError(
            f"{estimator.verl_name} needs algorithm.gdpo_reward_keys: the reward dimensions returned by "
            "compute_score, e.g. '+algorithm.gdpo_reward_keys=[accuracy_reward,format_reward]'"
        )
    options = saw_options(algorithm_config)  # refuses a name no estimator takes
    block = _get(algorithm_config, "saw", None) or {}
    foreign = sorted(set(map(str, block)) - set(estimator.own_options) - set(SHAPING_OPTIONS))
    if foreign:
        takes = sorted(estimator.own_options) or "none"
        raise SawInputError(
            f"algorithm.saw.{foreign[0]} does nothing for algorithm.adv_estimator={estimator.verl_name} (its own "
            f"options: {takes}); remove {', '.join('algorithm.saw.' + name for name in foreign)}"
        )
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = _get(algorithm_config, "norm_adv_by_std_in_grpo", True)
    _warn_once_if_kl_in_reward(algorithm_config, estimator.verl_name)
    weights = _optional_list("algorithm.gdpo_reward_weights", _get(algorithm_config, "gdpo_reward_weights"))
    shared = {"reward_keys": keys, "reward_weights": weights, "epsilon": epsilon,
              "norm_by_std": bool(norm_adv_by_std_in_grpo), **{name: options[name] for name in SHAPING_OPTIONS}}
    own = {name: block[name] for name in estimator.own_options if name in block}
    estimator.check(**own)
    return estimator_config(estimator, len(keys), shared, option_names=VERL_OPTION_NAMES), own


def _warn_once_if_kl_in_reward(algorithm_config, estimator: str) -> None:
    global _warned_kl_in_reward
    if _get(algorithm_config, "use_kl_in_reward", False) and not _warned_kl_in_reward:
        _warned_kl_in_reward = True
        logger.warning(
            "algorithm.use_kl_in_reward=true has no effect on %s: it reads the per-key scores, not "
            "token_level_rewards (like verl's gdpo). Use actor_rollout_ref.actor.use_kl_loss instead.",
            estimator,
        )


TRL_WITHOUT_VALUE_HEAD = (1, 13)  # trl releases without AutoModelForCausalLMWithValueHead, which verl 0.9.1 imports


def check_trl_for_verl(trl_version: Optional[str]) -> None:
    """SawInputError when the installed trl (its version, None if absent) breaks verl 0.9.1's workers: verl
    imports trl's AutoModelForCausalLMWithValueHead whenever trl is importable, and trl 1.13 removed it."""
    if trl_version is None:
        return
    release = tuple(int(part) for part in trl_version.split(".")[:2] if part.isdigit())
    if release >= TRL_WITHOUT_VALUE_HEAD:
        raise SawInputError(
            f"trl {trl_version} is installed next to verl: verl 0.9.1 imports trl's AutoModelForCausalLMWithValueHead "
            "in every worker whenever trl is importable, and trl >= 1.13 no longer has it, so no worker would start. "
            "pip install 'trl<1.13' (saw-verl's tests use 1.12.0), or uninstall trl from the verl environment"
        )


def installed_version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def validate_run(config, estimator: Estimator) -> None:
    """A verl job's whole config (DictConfig) using a registry estimator: every option (as the estimator will read
    it), rollout.n >= 2 (groups of one rollout are refused) and a trl verl can run next to. SawInputError names the
    option; called in verl's driver before Ray starts."""
    algorithm = config.algorithm
    estimator_config_from_algorithm(
        algorithm, estimator, norm_adv_by_std_in_grpo=_get(algorithm, "norm_adv_by_std_in_grpo", True)
    )
    samples = _get(config.actor_rollout_ref.rollout, "n", 1)
    if samples < 2:
        raise SawInputError(
            f"actor_rollout_ref.rollout.n={samples}: {estimator.verl_name} z-scores the rewards within each prompt's "
            "group of samples, so every group would have one rollout; set actor_rollout_ref.rollout.n >= 2"
        )
    check_trl_for_verl(installed_version("trl"))
