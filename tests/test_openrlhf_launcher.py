"""The OpenRLHF launcher and saw_runtime_env: argument rewriting, runtime_env merging, every bad option.

The end-to-end case runs the REAL ``openrlhf.cli.train_ppo_ray`` as __main__ (its argparse, checks and
``ray.init`` call) and stops it at ``get_strategy``, before anything is started.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs these tests")

from saw_verl import SawInputError  # noqa: E402
from saw_verl.integrations.openrlhf import launcher, saw_runtime_env  # noqa: E402
from saw_verl.integrations.openrlhf.options import ENV_VAR, SETUP_HOOK, config_from_env, merge_runtime_env  # noqa: E402

BASE = ["--rollout.n_samples_per_prompt", "4", "--reward.remote_url", "reward.py", "--algo.kl.use_loss"]


def saw(estimator: str, keys: str, *extra: str) -> list:
    return ["--algo.advantage.estimator", estimator, "--saw.reward_keys", keys, *extra]


def saw_payload(launch) -> dict:
    return json.loads(launch.runtime_env["env_vars"][ENV_VAR])


def test_saw_gdpo_rewrite():
    extra = ["--saw.reward_min=-3,0", "--saw.reward_weights", "1,0.5", "--saw.preset", "official", "--saw.dynamic=false",
             "--saw.history_decay", "0.9"]
    launch = launcher.prepare(BASE + saw("saw_gdpo", "correct, format", *extra))
    no_clip = ["--reward.clip_range", "-1000000000", "1000000000"]
    assert launch.argv == BASE + ["--algo.advantage.estimator", "dr_grpo", *no_clip]
    assert launch.runtime_env["worker_process_setup_hook"] == SETUP_HOOK
    assert saw_payload(launch) == {
        "estimator": "saw_gdpo", "reward_keys": ["correct", "format"], "reward_min": [-3.0, 0.0],
        "reward_weights": [1.0, 0.5], "preset": "official", "dynamic": False, "history_decay": 0.9,
    }
    cfg = config_from_env(launch.runtime_env["env_vars"])
    assert (cfg.mode, cfg.preset, cfg.dynamic) == ("gdpo", "official", False)
    assert (cfg.reward_min, cfg.static_weights, cfg.history_decay) == ((-3.0, 0.0), (1.0, 0.5), 0.9)


def test_openrlhf_hosts_every_registry_estimator_but_gd2po():
    from saw_verl.integrations.openrlhf.options import NOT_HOSTED, OPENRLHF_ESTIMATORS
    from saw_verl.registry import ESTIMATORS

    assert set(OPENRLHF_ESTIMATORS) | set(NOT_HOSTED) == set(ESTIMATORS) and set(NOT_HOSTED) == {"gd2po"}


@pytest.mark.parametrize("estimator", ["gdpo", "mo_grpo", "corr_grpo"])
def test_rival_rewrite(estimator):
    extra = ["--saw.reward_weights", "1,0.5"] + (["--saw.whitening", "sequence"] if estimator == "gdpo" else [])
    launch = launcher.prepare(BASE + saw(estimator, "correct,format", *extra))
    assert launch.argv == BASE + ["--algo.advantage.estimator", "dr_grpo", "--reward.clip_range", "-1000000000",
                                  "1000000000"]
    payload = saw_payload(launch)
    assert payload["estimator"] == estimator and payload["reward_weights"] == [1.0, 0.5]
    assert payload.get("options") == ({"whitening": "sequence"} if estimator == "gdpo" else None)
    cfg = config_from_env(launch.runtime_env["env_vars"])
    assert (cfg.reward_keys, cfg.static_weights) == (("correct", "format"), (1.0, 0.5))


SHAPING = ["--saw.conditions", "format=correct:1.0, len=format:0.5:-1", "--saw.weight_schedule", "0:1,0,0;100:1,1,0.5"]


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo", "gdpo", "mo_grpo", "corr_grpo"])
def test_conditions_and_schedule_round_trip_for_every_estimator(estimator):
    launch = launcher.prepare(BASE + saw(estimator, "correct,format,len", *SHAPING))
    payload = saw_payload(launch)
    assert payload["conditions"] == {"format": ["correct", 1.0, 0.0], "len": ["format", 0.5, -1.0]}
    assert payload["weight_schedule"] == [[0, [1.0, 0.0, 0.0]], [100, [1.0, 1.0, 0.5]]]
    assert "reward_weights" not in payload, "the schedule replaces the static weights"
    cfg = config_from_env(launch.runtime_env["env_vars"])
    assert [(c.key, c.on, c.threshold, c.fill) for c in cfg.conditions] == [(1, 0, 1.0, 0.0), (2, 1, 0.5, -1.0)]
    assert cfg.at_step(50).static_weights == (1.0, 0.5, 0.25)
    plain = saw_payload(launcher.prepare(BASE + saw(estimator, "correct,format")))
    assert "conditions" not in plain and "weight_schedule" not in plain and plain["reward_weights"] == [1.0, 1.0]


def test_saw_grpo_rewrite_keeps_clip_range_and_equals_form():
    clip = ["--reward.clip_range", "-5", "5"]
    launch = launcher.prepare(BASE + clip + ["--algo.advantage.estimator=saw_grpo", "--saw.reward_keys", "a"])
    assert launch.argv == BASE + clip + ["--algo.advantage.estimator=dr_grpo"]
    assert saw_payload(launch)["estimator"] == "saw_grpo" and saw_payload(launch)["preset"] == "paper"
    assert saw_payload(launch)["history_decay"] == 0.0


def test_plain_openrlhf_passes_through_untouched():
    argv = BASE + ["--algo.advantage.estimator", "group_norm", "--reward.clip_range", "-1", "1"]
    assert launcher.prepare(argv) == launcher.Launch(argv, None)


def test_kl_in_reward_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="saw_verl"):
        launcher.prepare(["--rollout.n_samples_per_prompt", "4", *saw("saw_grpo", "a")])
    assert "--algo.kl.use_loss" in caplog.text


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--saw.reward_keys", "a"],
         r"--saw.reward_keys need --algo.advantage.estimator one of saw_grpo, saw_gdpo, gdpo, mo_grpo, corr_grpo "
         r"\(got None\)"),
        (saw("gd2po", "a"), r"gd2po cannot run in OpenRLHF: its dropped rollouts"),
        (saw("mo_grpo", "a", "--saw.preset", "official"), r"--saw.preset is a SAW option: it does nothing for mo_grpo"),
        (saw("corr_grpo", "a", "--saw.whitening", "token"), r"unknown corr_grpo option \(--saw.\*\) 'whitening'"),
        (saw("gdpo", "a", "--saw.whitening", "rows"), r"whitening='rows'"),
        (saw("mo_grpo", "a", "--reward.clip_range", "-5", "5"), r"--reward.clip_range would clip mo_grpo"),
        (["--algo.advantage.estimator", "saw_gdpo"], "needs --saw.reward_keys"),
        (["--algo.advantage.estimator", "saw_gdpo", "--saw.reward_keys"], r"--saw.reward_keys needs a value"),
        (saw("saw_gdpo", "a,b", "--saw.reward_min", "0"), r"--saw.reward_min has 1 entries but there are 2 reward keys"),
        (saw("saw_gdpo", "a,b", "--saw.reward_min", "0,x"), r"--saw.reward_min must be comma-separated numbers"),
        (saw("saw_gdpo", "a,b", "--saw.reward_weights", "1,-1"), r"--saw.reward_weights: weight of 'b' is negative"),
        (saw("saw_gdpo", "a,a"), r"--saw.reward_keys has duplicates"),
        (saw("saw_gdpo", ","), r"at least one reward key \(--saw.reward_keys is empty"),
        (saw("saw_gdpo", "a", "--saw.preset", "fast"), r"unknown --saw.preset 'fast'"),
        (saw("saw_gdpo", "a", "--saw.dynamic", "maybe"), r"--saw.dynamic must be true or false"),
        (saw("saw_gdpo", "a", "--saw.delta", "1"), r"unknown flag --saw.delta"),
        (saw("saw_gdpo", "a", "--saw.history_decay", "high"), r"--saw.history_decay must be a number, got 'high'"),
        (saw("saw_gdpo", "a", "--saw.history_decay", "1"), r"--saw.history_decay must be a number in \[0, 1\), got 1.0"),
        (saw("saw_gdpo", "a", "--reward.clip_range", "-5", "5"), r"--reward.clip_range would clip saw_gdpo"),
        (saw("saw_grpo", "a", "--reward.overlong_buffer_len", "64"), r"--reward.overlong_buffer_len would change saw_grpo"),
        (saw("saw_gdpo", "a", "--reward.stop_properly_penalty_coef=0"), r"--reward.stop_properly_penalty_coef"),
        (["--advantage_estimator", "saw_gdpo", "--saw.reward_keys", "a"], r"OpenRLHF < 0.10.2's spelling"),
        (saw("saw_grpo", "a", "--algo.advantage.no_std_norm"), r"--algo.advantage.no_std_norm is not applied by"),
        (saw("saw_grpo", "a,b", "--saw.conditions", "a=b"), r"--saw.conditions 'a=b': 'a=b' is not KEY=CONDITION_KEY"),
        (saw("saw_grpo", "a,b", "--saw.conditions", "a=b:x"), r"--saw.conditions must be a number, got 'x'"),
        (saw("saw_grpo", "a,b", "--saw.conditions", "a=b:1,a=b:2"), r"--saw.conditions .*'a' has two conditions"),
        (saw("gdpo", "a,b", "--saw.conditions", "a=c:1"), r"--saw.conditions\['a'\]: unknown condition key 'c'"),
        (saw("mo_grpo", "a,b", "--saw.conditions", "a=a:1"), r"--saw.conditions\['a'\]: a key cannot be gated on it"),
        (saw("saw_gdpo", "a,b", "--saw.conditions", "a=b:1,b=a:1"), r"--saw.conditions: the conditions loop"),
        (saw("saw_gdpo", "a,b", "--saw.conditions", "a=b:inf"), r"--saw.conditions\['a'\] threshold must be a finite"),
        (saw("saw_grpo", "a,b", "--saw.weight_schedule", "x:1,1"), r"--saw.weight_schedule 'x:1,1': 'x:1,1' is not "
         r"STEP:W_1,...,W_K"),
        (saw("saw_grpo", "a,b", "--saw.weight_schedule", "0:1"), r"--saw.weight_schedule: the weights at step 0 must "
         r"be one per reward key \['a', 'b'\]; got 1"),
        (saw("corr_grpo", "a,b", "--saw.weight_schedule", "9:1,1;3:1,0"),
         r"--saw.weight_schedule: steps must increase"),
        (saw("saw_gdpo", "a,b", "--saw.weight_schedule", "0:1,-1"), r"--saw.weight_schedule: weight of 'b' at step 0 "
         "is negative"),
        (saw("saw_gdpo", "a,b", "--saw.weight_schedule", "0:1,1", "--saw.reward_weights", "1,1"),
         r"give --saw.reward_weights or --saw.weight_schedule, not both"),
    ],
)
def test_bad_command_lines_are_refused(extra, match):
    with pytest.raises(SawInputError, match=match):
        launcher.prepare(BASE + extra)


@pytest.mark.parametrize("samples", [None, "1", "x"])
def test_groups_are_required(samples):
    argv = saw("saw_grpo", "a")
    argv += [] if samples is None else ["--rollout.n_samples_per_prompt", samples]
    with pytest.raises(SawInputError, match=r"--rollout.n_samples_per_prompt >= 2"):
        launcher.prepare(argv)


def test_helper_validates_at_call_time():
    with pytest.raises(SawInputError, match=r"unknown saw_verl estimator 'gdpp'"):
        saw_runtime_env("gdpp", ["a"])
    with pytest.raises(SawInputError, match=r"--saw.reward_weights has 1 entries"):
        saw_runtime_env("saw_grpo", ["a", "b"], reward_weights=[1.0])
    with pytest.raises(SawInputError, match=r"--saw.reward_min: entry for 'a' is not finite"):
        saw_runtime_env("saw_grpo", ["a"], reward_min=[float("inf")])


def test_merge_runtime_env_keeps_the_rest_and_refuses_conflicts():
    saw_env = saw_runtime_env("saw_gdpo", ["a"])
    base = {"env_vars": {"NCCL_DEBUG": "WARN"}, "pip": ["x"]}
    merged = merge_runtime_env(base, saw_env)
    assert merged == {"env_vars": {"NCCL_DEBUG": "WARN", **saw_env["env_vars"]}, "pip": ["x"], "worker_process_setup_hook": SETUP_HOOK}
    assert base == {"env_vars": {"NCCL_DEBUG": "WARN"}, "pip": ["x"]}, "the caller's runtime_env is not modified"
    assert merge_runtime_env(merged, saw_env) == merged and merge_runtime_env(None, saw_env) == saw_env
    with pytest.raises(SawInputError, match=r"already has worker_process_setup_hook='my.hook'"):
        merge_runtime_env({"worker_process_setup_hook": "my.hook"}, saw_env)
    with pytest.raises(SawInputError, match=rf"already sets {ENV_VAR}="):
        merge_runtime_env(saw_runtime_env("saw_grpo", ["a"]), saw_env)


@pytest.mark.parametrize(
    "corrupt", ["not json", "[1]", '{"estimator": "saw_gdpo"}', '{"estimator": "saw_gdpo", "reward_keys": ["a"], "x": 1}']
)
def test_corrupt_env_var_names_it(corrupt):
    with pytest.raises(SawInputError, match=ENV_VAR):
        config_from_env({ENV_VAR: corrupt})
    assert config_from_env({}) is None


def test_openrlhf_version_gate(monkeypatch, caplog):
    monkeypatch.setattr(launcher.metadata, "version", lambda name: "0.9.10")
    with pytest.raises(SawInputError, match=r"OpenRLHF 0.9.10 is not supported: saw_verl needs OpenRLHF >= 0.10.2"):
        launcher.check_openrlhf_version()
    monkeypatch.setattr(launcher.metadata, "version", lambda name: "0.12.0")
    with caplog.at_level(logging.WARNING, logger="saw_verl"):
        assert launcher.check_openrlhf_version() == "0.12.0"
    assert "newer than the tested versions" in caplog.text


def test_real_train_ppo_ray_receives_the_rewritten_flags_and_merged_runtime_env(monkeypatch):
    from openrlhf_standins import launch_until_training, openrlhf_importable

    seen = launch_until_training(monkeypatch, BASE + saw("saw_gdpo", "a,b", "--saw.reward_min", "0,-1"))
    with openrlhf_importable():
        from saw_verl.integrations.openrlhf.advantages import check_args
    args = seen["args"]
    assert (args.algo.advantage.estimator, tuple(args.reward.clip_range)) == ("dr_grpo", (-1e9, 1e9))
    env = seen["init"]["runtime_env"]
    assert env["worker_process_setup_hook"] == SETUP_HOOK
    assert env["env_vars"]["NCCL_DEBUG"] == "WARN", "OpenRLHF's own env_vars are kept"
    cfg = config_from_env(env["env_vars"])
    assert (cfg.reward_keys, cfg.mode, cfg.reward_min) == (("a", "b"), "gdpo", (0.0, -1.0))
    check_args(args, args.algo.advantage.estimator, cfg)  # what the wrapper will find in the actor: accepted
    assert sys.argv[1:] == launcher.prepare(BASE + saw("saw_gdpo", "a,b")).argv
