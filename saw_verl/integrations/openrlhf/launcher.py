"""``python -m saw_verl.integrations.openrlhf``: ``python -m openrlhf.cli.train_ppo_ray`` with saw_verl's estimators.

Takes the usual train_ppo_ray flags plus ``--algo.advantage.estimator saw_grpo|saw_gdpo|gdpo|mo_grpo|corr_grpo``
(docs/estimators.md; gd2po cannot run in OpenRLHF, see options.NOT_HOSTED) and
``--saw.reward_keys a,b [--saw.reward_weights w_a,w_b]``, for every one of them
``[--saw.conditions KEY=CONDITION_KEY:THRESHOLD[:FILL],...]`` (KEY counts as its reward where CONDITION_KEY's is
>= THRESHOLD, else as FILL, default 0) and ``[--saw.weight_schedule 'STEP:W_a,W_b;STEP:W_a,W_b']`` (the weights,
piecewise linear in OpenRLHF's global step, in place of --saw.reward_weights); SAW's own ``[--saw.reward_min
m_a,m_b] [--saw.preset paper|official] [--saw.dynamic true|false] [--saw.history_decay 0.9]``; gdpo's
``[--saw.whitening token|sequence]``. It validates and strips
the ``--saw.*`` flags, refuses OpenRLHF options that would corrupt the estimator's scalar, rewrites the estimator to
``dr_grpo`` (and, for all but saw_grpo, the reward clip range to one that cannot clip), merges saw_verl's Ray
runtime_env into whatever ``ray.init`` receives, then runs ``openrlhf.cli.train_ppo_ray`` as __main__.
Without a SAW estimator (and no --saw.* flag) the arguments pass through untouched.
"""

from __future__ import annotations

import functools
import logging
import runpy
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Optional, Sequence

from saw_verl.errors import SawInputError
from saw_verl.integrations.openrlhf.options import (
    DELEGATE_ESTIMATOR,
    NOT_HOSTED,
    OPENRLHF_ESTIMATORS,
    merge_runtime_env,
    saw_runtime_env,
)

logger = logging.getLogger(__name__)

OPENRLHF_MAIN = "openrlhf.cli.train_ppo_ray"
SAW_PREFIX = "--saw."
SAW_OPTIONS = ("reward_keys", "reward_min", "reward_weights", "preset", "dynamic", "history_decay", "whitening",
               "conditions", "weight_schedule")
ESTIMATOR_FLAG = "--algo.advantage.estimator"
CLIP_FLAG = "--reward.clip_range"
NO_CLIP = ("-1000000000", "1000000000")  # argparse reads "-1e9" / "-inf" as flags, plain digits as numbers
NO_STD_NORM_FLAG = "--algo.advantage.no_std_norm"  # OpenRLHF's Dr. GRPO switch: SAW here has no such mode
LENGTH_PENALTY_FLAGS = ("--reward.overlong_buffer_len", "--reward.stop_properly_penalty_coef")
TESTED_VERSIONS = ("0.10.2", "0.12")  # [lowest tested, first untested major]
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Launch:
    """argv for train_ppo_ray, and SAW's Ray runtime_env (None: no SAW estimator, plain OpenRLHF)."""

    argv: list
    runtime_env: Optional[dict]


def prepare(argv: Sequence[str]) -> Launch:
    """Validate and rewrite the command line (SawInputError naming the flag at fault); runs nothing."""
    saw, rest = split_saw_flags(list(argv))
    if flag_value(rest, "--advantage_estimator") is not None:
        raise SawInputError("--advantage_estimator is OpenRLHF < 0.10.2's spelling; use --algo.advantage.estimator")
    estimator = flag_value(rest, ESTIMATOR_FLAG)
    if estimator in NOT_HOSTED:
        raise SawInputError(f"{ESTIMATOR_FLAG} {estimator} cannot run in OpenRLHF: {NOT_HOSTED[estimator]}")
    if estimator not in OPENRLHF_ESTIMATORS:
        if saw:
            raise SawInputError(
                f"{', '.join(SAW_PREFIX + name for name in saw)} need {ESTIMATOR_FLAG} one of "
                f"{', '.join(OPENRLHF_ESTIMATORS)} (got {estimator!r})"
            )
        return Launch(rest, None)
    if "reward_keys" not in saw:
        raise SawInputError(f"{ESTIMATOR_FLAG} {estimator} needs --saw.reward_keys (the extra_logs keys, comma-separated)")
    runtime_env = saw_runtime_env(
        estimator,
        saw["reward_keys"],
        reward_min=parse_floats("reward_min", saw.get("reward_min")),
        reward_weights=parse_floats("reward_weights", saw.get("reward_weights")),
        preset=saw.get("preset", "paper"),
        dynamic=parse_bool("dynamic", saw.get("dynamic", "true")),
        history_decay=parse_float("history_decay", saw.get("history_decay", "0")),
        options={"whitening": saw["whitening"]} if "whitening" in saw else None,
        conditions=parse_conditions(saw.get("conditions")),
        weight_schedule=parse_schedule(saw.get("weight_schedule")),
    )
    if any(arg.split("=", 1)[0] == NO_STD_NORM_FLAG for arg in rest):
        raise SawInputError(
            f"{NO_STD_NORM_FLAG} is not applied by {estimator}: SAW divides by the group std (docs/spec.md); drop it"
        )
    for flag in LENGTH_PENALTY_FLAGS:
        if flag_value(rest, flag) is not None:
            raise SawInputError(
                f"{flag} would change {estimator}'s advantage after SAW computed it; drop it and return a length "
                f"reward as one more SAW key in extra_logs instead"
            )
    samples = flag_value(rest, "--rollout.n_samples_per_prompt")
    if samples is None or not samples.isdigit() or int(samples) < 2:
        raise SawInputError(f"{estimator} needs groups: pass --rollout.n_samples_per_prompt >= 2 (got {samples})")
    rest = with_flag_value(rest, ESTIMATOR_FLAG, DELEGATE_ESTIMATOR)
    if estimator != "saw_grpo":
        if flag_value(rest, CLIP_FLAG) is not None:
            raise SawInputError(f"{CLIP_FLAG} would clip {estimator}'s advantages; drop it")
        rest += [CLIP_FLAG, *NO_CLIP]
    if "--algo.kl.use_loss" not in rest and not is_zero(flag_value(rest, "--algo.kl.init_coef")):
        logger.warning(
            "saw_verl: without --algo.kl.use_loss OpenRLHF adds its per-token KL penalty to SAW's advantage "
            "(its own semantics); pass --algo.kl.use_loss for GRPO-style KL"
        )
    return Launch(rest, runtime_env)


def split_saw_flags(argv: list) -> tuple[dict, list]:
    """-> ({option: raw value} of the --saw.* flags, the other arguments in order)."""
    saw, rest, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith(SAW_PREFIX):
            rest.append(arg)
            i += 1
            continue
        name, has_value, value = arg[len(SAW_PREFIX):].partition("=")
        if name not in SAW_OPTIONS:
            raise SawInputError(f"unknown flag {SAW_PREFIX}{name}; expected one of {[SAW_PREFIX + o for o in SAW_OPTIONS]}")
        if not has_value:
            if i + 1 == len(argv):
                raise SawInputError(f"{SAW_PREFIX}{name} needs a value")
            value, i = argv[i + 1], i + 1
        saw[name] = value
        i += 1
    return saw, rest


def flag_value(argv: Sequence[str], flag: str) -> Optional[str]:
    """The value argparse would take for a one-value `flag` (its last occurrence), or None if absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def with_flag_value(argv: Sequence[str], flag: str, value: str) -> list:
    """argv with every occurrence of the one-value `flag` (both spellings) set to `value`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == flag and i + 1 < len(out):
            out[i + 1] = value
        elif arg.startswith(flag + "="):
            out[i] = f"{flag}={value}"
    return out


def is_zero(raw: Optional[str]) -> bool:
    try:
        return raw is not None and float(raw) == 0
    except ValueError:
        return False  # argparse reports it


def parse_floats(name: str, raw: Optional[str]) -> Optional[list]:
    """'0,-3' -> [0.0, -3.0] (None stays None); SawInputError naming --saw.<name> otherwise."""
    if raw is None:
        return None
    try:
        return [float(item) for item in raw.split(",")]
    except ValueError:
        raise SawInputError(f"{SAW_PREFIX}{name} must be comma-separated numbers, got {raw!r}") from None


def parse_float(name: str, raw: str) -> float:
    """'0.9' -> 0.9; SawInputError naming --saw.<name> otherwise (the range is SawConfig's to check)."""
    try:
        return float(raw)
    except ValueError:
        raise SawInputError(f"{SAW_PREFIX}{name} must be a number, got {raw!r}") from None


def parse_conditions(raw: Optional[str]) -> Optional[dict]:
    """'format=correct:1,len=format:0.5:-1' -> {"format": ["correct", 1.0], "len": ["format", 0.5, -1.0]} (None
    stays None); SawInputError naming --saw.conditions for another shape (the keys are SawConfig's to check)."""
    if raw is None:
        return None
    conditions = {}
    for entry in raw.split(","):
        key, _, rule = (part.strip() for part in entry.partition("="))
        parts = [part.strip() for part in rule.split(":")]
        if key in conditions:
            raise SawInputError(f"{SAW_PREFIX}conditions {raw!r}: {key!r} has two conditions")
        if not key or len(parts) not in (2, 3) or not parts[0]:
            raise SawInputError(f"{SAW_PREFIX}conditions {raw!r}: {entry!r} is not KEY=CONDITION_KEY:THRESHOLD[:FILL] "
                                "(entries comma-separated, e.g. format=correct:1.0,length=format:0.5:-1)")
        conditions[key] = [parts[0], *(parse_float("conditions", number) for number in parts[1:])]
    return conditions


def parse_schedule(raw: Optional[str]) -> Optional[list]:
    """'0:1,0;100:1,1' -> [[0, [1.0, 0.0]], [100, [1.0, 1.0]]] (None stays None); SawInputError naming
    --saw.weight_schedule for another shape (the order of the steps and the weights are SawConfig's to check)."""
    if raw is None:
        return None
    points = []
    for point in raw.split(";"):
        step, colon, weights = (part.strip() for part in point.partition(":"))
        if not colon or not step.isdigit():
            raise SawInputError(f"{SAW_PREFIX}weight_schedule {raw!r}: {point!r} is not STEP:W_1,...,W_K with an "
                                "integer STEP >= 0 (points ';'-separated, e.g. '0:1,0;100:1,1')")
        points.append([int(step), parse_floats("weight_schedule", weights)])
    return points


def parse_bool(name: str, raw: str) -> bool:
    if raw.lower() not in BOOLEANS:
        raise SawInputError(f"{SAW_PREFIX}{name} must be true or false, got {raw!r}")
    return BOOLEANS[raw.lower()]


def check_openrlhf_version() -> str:
    """The installed OpenRLHF version; SawInputError below the tested range, a warning above it."""
    from packaging.version import Version

    try:
        version = metadata.version("openrlhf")
    except metadata.PackageNotFoundError:
        raise SawInputError("OpenRLHF is not installed (pip install 'saw-verl[openrlhf]')") from None
    lowest, untested = TESTED_VERSIONS
    if Version(version) < Version(lowest):
        raise SawInputError(f"OpenRLHF {version} is not supported: saw_verl needs OpenRLHF >= {lowest}")
    if Version(version) >= Version(untested):
        logger.warning("saw_verl: OpenRLHF %s is newer than the tested versions (< %s)", version, untested)
    return version


def merge_into_ray_init(runtime_env: dict) -> None:
    """Make every later ``ray.init`` call receive its runtime_env merged with SAW's (idempotent)."""
    import ray

    original = getattr(ray.init, "saw_verl_original", ray.init)

    @functools.wraps(original)
    def init(*args, **kwargs):
        kwargs["runtime_env"] = merge_runtime_env(kwargs.get("runtime_env"), runtime_env)
        return original(*args, **kwargs)

    init.saw_verl_original = original
    ray.init = init


def main(argv: Optional[Sequence[str]] = None) -> None:
    launch = prepare(sys.argv[1:] if argv is None else argv)
    if launch.runtime_env is not None:
        version = check_openrlhf_version()
        merge_into_ray_init(launch.runtime_env)
        logger.warning("saw_verl: OpenRLHF %s, running %s %s", version, OPENRLHF_MAIN, " ".join(launch.argv))
    sys.argv = [sys.argv[0], *launch.argv]
    runpy.run_module(OPENRLHF_MAIN, run_name="__main__", alter_sys=True)
