"""The real ``python -m verl.trainer.main_ppo`` on CPU (cpu_harness), 2 steps per run.

* saw_gdpo in verl's legacy and v1 trainers (with a KL-loss reference model): the reward function
  returns several keys, every step logs ``saw/<key>/{weight,cv,mean,std}`` and finite advantages;
* a run resumed from a checkpoint goes on with SAW's history pool: its next step has the pool and weights of
  the uninterrupted run (both trainers);
* each rival of the registry trains 2 steps and logs its per-key metrics;
* a condition and a weight schedule, given on the command line: 2 steps log ``saw/<key>/alpha`` (the schedule at
  verl's step) and ``saw/<key>/gated_fraction`` (what the rollouts' rewards give), and a resumed run goes on with
  the schedule's step (both trainers, a SAW estimator on one and a rival on the other);
* the CPU demo recipe: its config composes with hydra, and it trains 2 steps; run again, the same method
  and seed give the same rollouts and metrics bit for bit, and another method with that seed the same step-1
  rollouts and rewards.

saw_verl's own plugin is loaded as users get it, through its ``verl.plugins`` entry point; only the
CPU harness is loaded through ``VERL_USE_EXTERNAL_MODULES``. Each run takes ~35-60 s and ~4 GiB.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
from pathlib import Path

import pytest

from cpu_harness.assets import build_tiny_model
from cpu_harness.launcher import run_main_ppo
from cpu_harness.smoke_task import REWARD_MIN, write_smoke_data
import prompt_rewards
from recipes.common import repeat
from saw_verl.integrations.verl.checkpoints import HISTORY_FILE

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes" / "cpu_demo"
SMOKE_KEYS = ["accuracy_reward", "format_reward", "length_reward"]
SAW_STATISTICS = ("weight", "cv", "mean", "std")
RUN_TIMEOUT_S = 400
PROMPT_REWARDS = Path(__file__).with_name("prompt_rewards.py")
PROMPT_KEYS = list(prompt_rewards.REWARD_KEYS)


@pytest.fixture(scope="module")
def smoke_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpu_e2e")
    train, val = write_smoke_data(root / "data")
    return {"model": build_tiny_model(root / "model"), "train": train, "val": val}


def smoke_overrides(assets, use_v1: bool, run_dir: Path, estimator: str = "saw_gdpo", keys=SMOKE_KEYS,
                    reward_min=REWARD_MIN) -> list[str]:
    """The smoke job's overrides; reward_min (None: not set, as for the rivals, which take no SAW option)."""
    return [
        f"trainer.use_v1={use_v1}",
        f"algorithm.adv_estimator={estimator}",
        f"+algorithm.gdpo_reward_keys=[{','.join(keys)}]",
        *([] if reward_min is None else [f"+algorithm.saw.reward_min=[{','.join(map(str, reward_min))}]"]),
        f"data.train_files={assets['train']}", f"data.val_files={assets['val']}",
        "data.train_batch_size=4", "data.max_prompt_length=32", "data.max_response_length=8",
        f"actor_rollout_ref.model.path={assets['model']}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        # KL loss: a forward-only FSDP2 reference model, i.e. the harness's unpinned CPU offload policy
        "actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_coef=0.01",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        "reward.custom_reward_function.path=pkg://cpu_harness.smoke_task",
        "reward.custom_reward_function.name=compute_score",
        "trainer.logger=[console,file]", "trainer.total_training_steps=2",
        "trainer.val_before_train=False", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.project_name=saw_e2e", f"trainer.experiment_name={'v1' if use_v1 else 'legacy'}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
    ]


def file_logger_env(run_dir: Path) -> dict[str, str]:
    """This process's environment (saw_verl's plugin comes from its entry point) + verl's file logger path."""
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(run_dir / "verl_metrics.jsonl"))
    assert "saw_verl.integrations.verl" not in env.get("VERL_USE_EXTERNAL_MODULES", ""), "use the entry point, as users do"
    return env


def require_success(result) -> str:
    log = result.log
    assert result.returncode == 0, f"main_ppo exited {result.returncode}; log tail:\n{log[-6000:]}"
    return log


def console_value(log: str, step: int, name: str) -> float:
    """A metric as printed by verl's console logger ("step:N - ... - name:value - ...")."""
    line = next(line for line in log.splitlines() if re.search(rf"\bstep:{step} - ", line))
    match = re.search(rf"(?:^| - ){re.escape(name)}:(?:np\.float\d+\()?([-+0-9.eE]+|nan|inf)", line)
    assert match, f"{name} missing from the console metrics of step {step}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def smoke_runs(smoke_assets, tmp_path_factory):
    """smoke_runs(use_v1, trial) -> (run folder, log): the smoke job on one trainer, run once per trial and kept;
    verl dumps its rollouts to the run folder's rollouts/."""
    done = {}

    def run(use_v1: bool, trial: int = 0) -> tuple[Path, str]:
        if (use_v1, trial) not in done:
            run_dir = tmp_path_factory.mktemp(f"{'v1' if use_v1 else 'legacy'}{trial}")
            overrides = [*smoke_overrides(smoke_assets, use_v1, run_dir),
                         f"trainer.rollout_data_dir={run_dir / 'rollouts'}"]
            result = run_main_ppo(overrides, run_dir / "train.log", RUN_TIMEOUT_S, env=file_logger_env(run_dir),
                                  cwd=run_dir)
            done[(use_v1, trial)] = (run_dir, require_success(result))
        return done[(use_v1, trial)]

    return run


@pytest.mark.e2e
@pytest.mark.parametrize("use_v1", [False, True], ids=["legacy-trainer", "v1-trainer"])
def test_saw_gdpo_trains_two_steps_on_cpu(smoke_runs, use_v1):
    run_dir, log = smoke_runs(use_v1)
    metrics = repeat.step_metrics(run_dir)
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        assert math.isfinite(data["actor/kl_loss"])
        for key in SMOKE_KEYS:
            for stat in SAW_STATISTICS:
                value = data[f"saw/{key}/{stat}"]
                assert math.isfinite(value), f"step {step}: saw/{key}/{stat} = {value}"
            assert console_value(log, step, f"saw/{key}/weight") == pytest.approx(data[f"saw/{key}/weight"])
        weights = [data[f"saw/{key}/weight"] for key in SMOKE_KEYS]
        assert min(weights) >= 0 and sum(weights) == pytest.approx(len(SMOKE_KEYS))  # paper preset, GDPO mode
        for bound in ("max", "min"):
            assert math.isfinite(console_value(log, step, f"critic/advantages/{bound}"))
        assert console_value(log, step, "critic/advantages/max") > console_value(log, step, "critic/advantages/min")


def saved_history(run_dir: Path, step: int) -> dict:
    return json.loads((run_dir / "checkpoints" / f"global_step_{step}" / HISTORY_FILE).read_text())


@pytest.mark.e2e
@pytest.mark.parametrize("use_v1", [False, True], ids=["legacy-trainer", "v1-trainer"])
def test_resumed_run_goes_on_with_the_saw_history_pool(smoke_assets, use_v1, tmp_path):
    """An uninterrupted run saves steps 1 and 2; a second run resumes from its step-1 checkpoint and trains step 2.
    The rewards score the prompt only (prompt_rewards.py), so both see the same step-2 rewards whatever they sample:
    the resumed step 2 must end with the uninterrupted pool, bit for bit, and log the same weights."""
    runs = {"whole": [], "resumed": ["trainer.resume_mode=resume_path",
                                     f"trainer.resume_from_path={tmp_path / 'whole/checkpoints/global_step_1'}"]}
    logs = {}
    for name, resume in runs.items():
        run_dir = tmp_path / name
        overrides = smoke_overrides(smoke_assets, use_v1, run_dir, keys=PROMPT_KEYS, reward_min=None) + [
            "+algorithm.saw.history_decay=0.5",
            f"reward.custom_reward_function.path={PROMPT_REWARDS}", "trainer.save_freq=1", *resume,
        ]
        logs[name] = require_success(run_main_ppo(overrides, run_dir / "train.log", RUN_TIMEOUT_S,
                                                  env=file_logger_env(run_dir), cwd=run_dir))
    whole, resumed = repeat.step_metrics(tmp_path / "whole")[2], repeat.step_metrics(tmp_path / "resumed")
    assert sorted(resumed) == [2], "the resumed run trains step 2 only"
    for key in PROMPT_KEYS:
        assert resumed[2][f"saw/{key}/mean"] == whole[f"saw/{key}/mean"], "verl restored the data order: same prompts"
    assert saved_history(tmp_path / "whole", 1)["histories"][0]["steps"] == 1
    assert "resumes with the history pool of" in logs["resumed"]
    pool = saved_history(tmp_path / "resumed", 2)
    assert pool == saved_history(tmp_path / "whole", 2), "the uninterrupted pool, bit for bit"
    assert pool["histories"][0]["steps"] == 2, "step 1 is in the pool"
    for key in PROMPT_KEYS:
        for stat in ("weight", "cv", "batch_cv"):
            assert resumed[2][f"saw/{key}/{stat}"] == whole[f"saw/{key}/{stat}"], f"step 2 saw/{key}/{stat}"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "estimator, prefix, use_v1",
    [("saw_verl_gdpo", "gdpo", False), ("mo_grpo", "mo_grpo", True), ("corr_grpo", "corr_grpo", False),
     ("gd2po", "gd2po", True)],
    ids=["saw_verl_gdpo-legacy", "mo_grpo-v1", "corr_grpo-legacy", "gd2po-v1"],
)
def test_rival_trains_two_steps_on_cpu(smoke_assets, estimator, prefix, use_v1, tmp_path):
    """Each rival of the registry (docs/estimators.md) trains 2 steps; its per-key metrics reach verl's loggers."""
    result = run_main_ppo(smoke_overrides(smoke_assets, use_v1, tmp_path, estimator, reward_min=None),
                          tmp_path / "train.log", RUN_TIMEOUT_S, env=file_logger_env(tmp_path), cwd=tmp_path)
    log = require_success(result)
    metrics = repeat.step_metrics(tmp_path)
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        for key in SMOKE_KEYS:
            for stat in ("mean", "std", "weight"):
                assert math.isfinite(data[f"{prefix}/{key}/{stat}"]), f"step {step}: {prefix}/{key}/{stat}"
            assert console_value(log, step, f"{prefix}/{key}/mean") == pytest.approx(data[f"{prefix}/{key}/mean"])
        assert math.isfinite(console_value(log, step, "critic/advantages/max"))
    if estimator == "gd2po":
        assert all(0 <= data["gd2po/keep_ratio"] <= 1 for data in metrics.values())


# A condition with a fill and a schedule, as a user types them: sum_size counts where even_sum >= 1 (an even a + b),
# else as -0.5; its weight goes from 0 at step 0 to 1 at step 4 (verl's first step is 1).
SHAPING_OVERRIDES = ["+algorithm.saw.conditions={sum_size:[even_sum,1.0,-0.5]}",
                     "+algorithm.saw.weight_schedule={0:[1.0,0.0],4:[1.0,1.0]}"]
SCHEDULED_ALPHA = {1: {"even_sum": 1.0, "sum_size": 0.25}, 2: {"even_sum": 1.0, "sum_size": 0.5}}
SHAPED_CASES = {"saw_gdpo-legacy": ("saw_gdpo", "saw", False), "mo_grpo-v1": ("mo_grpo", "mo_grpo", True)}


@pytest.fixture(scope="module")
def shaped_runs(smoke_assets, tmp_path_factory):
    """shaped_runs(case) -> {"whole": run folder, "resumed": run folder}: the prompt-scored job with the condition and
    the schedule, 2 steps saving a checkpoint each, then a run resumed from its step-1 checkpoint (step 2 only)."""
    done = {}

    def run(case: str) -> dict[str, Path]:
        if case not in done:
            estimator, _, use_v1 = SHAPED_CASES[case]
            root = tmp_path_factory.mktemp(case)
            resume = {"whole": [], "resumed": ["trainer.resume_mode=resume_path",
                                               f"trainer.resume_from_path={root / 'whole/checkpoints/global_step_1'}"]}
            for name, extra in resume.items():
                run_dir = root / name
                overrides = smoke_overrides(smoke_assets, use_v1, run_dir, estimator, PROMPT_KEYS, None) + [
                    *SHAPING_OVERRIDES, f"reward.custom_reward_function.path={PROMPT_REWARDS}", "trainer.save_freq=1",
                    f"trainer.rollout_data_dir={run_dir / 'rollouts'}", *extra]
                require_success(run_main_ppo(overrides, run_dir / "train.log", RUN_TIMEOUT_S,
                                             env=file_logger_env(run_dir), cwd=run_dir))
            done[case] = {name: root / name for name in resume}
        return done[case]

    return run


def check_shaping_metrics(run_dir: Path, step: int, prefix: str) -> None:
    """The step's logged alpha is the schedule's at that step; sum_size's gated_fraction and its conditioned mean
    are what the rewards of the step's rollouts (dumped by verl, scored from their prompt's answer) give."""
    data, rollouts = repeat.step_metrics(run_dir)[step], repeat.step_rollouts(run_dir)[step]
    for key, alpha in SCHEDULED_ALPHA[step].items():
        assert data[f"saw/{key}/alpha"] == pytest.approx(alpha), f"step {step}: saw/{key}/alpha"
    rewards = [prompt_rewards.compute_score(None, row["output"], row["gts"]) for row in rollouts]
    gated = [reward["even_sum"] < 1.0 for reward in rewards]
    assert len(gated) == 16 and 0 < sum(gated) < len(gated), "4 prompts x 4 rollouts, odd and even sums"
    assert data["saw/sum_size/gated_fraction"] == pytest.approx(sum(gated) / len(gated))
    assert "saw/even_sum/gated_fraction" not in data, "no condition on even_sum"
    conditioned = [-0.5 if off else reward["sum_size"] for reward, off in zip(rewards, gated)]
    assert data[f"{prefix}/sum_size/mean"] == pytest.approx(sum(conditioned) / len(conditioned))
    log = (run_dir / "train.log").read_text()
    assert console_value(log, step, "saw/sum_size/alpha") == pytest.approx(SCHEDULED_ALPHA[step]["sum_size"])


@pytest.mark.e2e
@pytest.mark.parametrize("case", SHAPED_CASES)
def test_condition_and_schedule_train_two_steps_and_log_both_metrics(shaped_runs, case):
    run_dir = shaped_runs(case)["whole"]
    assert sorted(repeat.step_metrics(run_dir)) == [1, 2]
    for step in (1, 2):
        check_shaping_metrics(run_dir, step, SHAPED_CASES[case][1])


@pytest.mark.e2e
@pytest.mark.parametrize("case", SHAPED_CASES)
def test_resumed_run_goes_on_with_the_schedule_where_it_stopped(shaped_runs, case):
    """Resumed from global_step_1, the run's first step is verl's step 2: alpha is the schedule's at 2, not at 1."""
    runs = shaped_runs(case)
    assert sorted(repeat.step_metrics(runs["resumed"])) == [2], "the resumed run trains step 2 only"
    check_shaping_metrics(runs["resumed"], 2, SHAPED_CASES[case][1])
    whole, resumed = (repeat.step_metrics(runs[name])[2] for name in ("whole", "resumed"))
    assert resumed["saw/sum_size/gated_fraction"] == whole["saw/sum_size/gated_fraction"]


def _unordered(rollouts: list[dict]) -> list[str]:
    """A step's rollouts as a sorted list, each without its uid (a uuid4 verl draws anew every run)."""
    return sorted(json.dumps({k: v for k, v in row.items() if k != "uid"}, sort_keys=True) for row in rollouts)


@pytest.mark.e2e
def test_v1_trainer_repeats_but_for_its_batch_order(smoke_runs):
    """verl's v1 trainer puts a step's rows in the order its agent loops finish, grouped by uuid4 prompt names
    (trainer_base.py, replay_buffer.py), and numbers no request (each is det-0, told apart by the hf server in
    order of arrival): a repeat gets the same rollouts as a set, in another order, and float sums taken in another
    order. Measured (2 steps, 2026-12-07): 160 of 176 metrics the same; the others by up to 2.5e-4 relative
    (actor/grad_norm, step 2) or 1.5e-8 absolute (losses and advantage means near 0). Bound here: 5e-3 / 1e-6."""
    (first, _), (again, _) = smoke_runs(True, 0), smoke_runs(True, 1)
    rollouts, rollouts_again = repeat.step_rollouts(first), repeat.step_rollouts(again)
    assert sorted(rollouts) == sorted(rollouts_again) == [1, 2]
    assert all(_unordered(rollouts[step]) == _unordered(rollouts_again[step]) for step in rollouts)
    metrics, metrics_again = repeat.step_metrics(first), repeat.step_metrics(again)
    for step in (1, 2):
        for key in repeat.compared_keys(metrics[step]):
            assert metrics_again[step][key] == pytest.approx(metrics[step][key], rel=5e-3, abs=1e-6), (step, key)


@pytest.mark.parametrize("mistake,named", [
    ("+algorithm.saw.preset=offical", r"unknown algorithm\.saw\.preset 'offical'"),
    ("+algorithm.saw.reward_min=[0,0]", r"algorithm\.saw\.reward_min has 2 entries but there are 3 reward keys"),
    ("+algorithm.saw.weight_schedule={0:[1,0],10:[1,1]}",
     r"algorithm\.saw\.weight_schedule: the weights at step 0 must be one per reward key"),
    ("+algorithm.saw.conditions={format_reward:[format_reward,1.0]}",
     r"algorithm\.saw\.conditions\['format_reward'\]: a key cannot be gated on itself"),
])
def test_a_saw_option_error_stops_main_ppo_before_ray_starts(smoke_assets, tmp_path, mistake, named):
    """The real main_ppo: verl's driver validates its config before ray.init; the SAW options fail there too
    (saw_verl's shim wraps validate_config), not at the first advantage after the workers and a rollout."""
    result = run_main_ppo([*smoke_overrides(smoke_assets, True, tmp_path, reward_min=None), mistake],
                          tmp_path / "train.log", RUN_TIMEOUT_S, env=file_logger_env(tmp_path), cwd=tmp_path)
    log = result.log
    assert result.returncode != 0, log[-3000:]
    assert re.search(rf"SawInputError: {named}", log), log[-3000:]
    assert "ray init kwargs" not in log and "Started a local Ray instance" not in log, log[-3000:]


def _load_recipe_module(name: str):
    return importlib.import_module(f"recipes.cpu_demo.{name}")


def test_cpu_demo_config_composes_with_hydra():
    from hydra import compose, initialize_config_dir

    from saw_verl.integrations.verl.config import validate_run
    from saw_verl.registry import REGISTRY

    experiment = _load_recipe_module("experiment")
    overrides = experiment.run_overrides(Path("/tmp/w"), "gdpo", seed=3, steps=7)
    with initialize_config_dir(str(RECIPE_DIR / "config"), version_base=None):
        config = compose("cpu_demo", overrides=overrides)
    validate_run(config, REGISTRY["saw_gdpo"])
    algorithm = config.algorithm
    assert (algorithm.adv_estimator, algorithm.saw["dynamic"]) == ("saw_gdpo", False)
    assert list(algorithm.gdpo_reward_keys) == list(_load_recipe_module("reward").REWARD_KEYS)
    assert config.trainer.total_training_steps == 7 and config.data.seed == 3
    assert config.actor_rollout_ref.model.path == "/tmp/w/models/seed3"


@pytest.mark.parametrize("method, saw_block", [("saw_verl_gdpo", {}), ("mo_grpo", {}), ("gd2po_snr", {"tau": 0.8})])
def test_cpu_demo_rival_methods_compose_and_pass_their_options(method, saw_block):
    """A rival's run replaces the recipe's SAW block by its own options, which its estimator then accepts in the
    driver's check (validate_run) and when it reads them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from saw_verl.integrations.verl.config import estimator_config_from_algorithm, validate_run
    from saw_verl.integrations.verl.estimators import REGISTRY_BY_VERL_NAME

    experiment = _load_recipe_module("experiment")
    with initialize_config_dir(str(RECIPE_DIR / "config"), version_base=None):
        config = compose("cpu_demo", overrides=experiment.run_overrides(Path("/tmp/w"), method, seed=0, steps=2))
    algorithm = config.algorithm
    chosen = experiment.METHODS[method]
    assert (algorithm.adv_estimator, OmegaConf.to_container(algorithm).get("saw", {})) == (chosen.estimator, saw_block)
    entry = REGISTRY_BY_VERL_NAME[chosen.estimator]
    validate_run(config, entry)
    _, own = estimator_config_from_algorithm(algorithm, entry)
    assert own == saw_block


@pytest.fixture(scope="module")
def cpu_demo_runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """The CPU demo, seed 0, 2 steps: saw_gdpo in two work folders of their own, and gdpo.
    {name: (run folder, what the run printed)}."""
    experiment = _load_recipe_module("experiment")
    keys = experiment.reward_keys()
    runs = {}
    for name, method in (("saw_gdpo", "saw_gdpo"), ("saw_gdpo_again", "saw_gdpo"), ("gdpo", "gdpo")):
        workdir = tmp_path_factory.mktemp(name)
        experiment.prepare(workdir, seeds=[0])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            result = experiment.run_one(workdir, method, seed=0, steps=2, timeout_s=RUN_TIMEOUT_S, keys=keys)
        require_success(result)
        runs[name] = (result.log_path.parent, printed.getvalue())
    return runs


@pytest.mark.e2e
def test_cpu_demo_trains_two_steps_and_prints_the_weights(cpu_demo_runs):
    experiment = _load_recipe_module("experiment")
    keys = experiment.reward_keys()
    run_dir, out = cpu_demo_runs["saw_gdpo"]
    printed = [line for line in out.splitlines() if line.startswith("saw_gdpo seed 0 step")]
    assert [line.split(":")[0] for line in printed] == ["saw_gdpo seed 0 step 1", "saw_gdpo seed 0 step 2"]
    assert all(f"{key}=" in line for line in printed for key in keys)
    rows = experiment.step_rows(run_dir / "verl_metrics.jsonl", "saw_gdpo", 0, keys)
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        assert all(0.0 <= row[key] <= 1.0 for key in keys)
        assert sum(row[f"weight/{key}"] for key in keys) == pytest.approx(len(keys))


@pytest.mark.e2e
def test_cpu_demo_same_seed_same_run(cpu_demo_runs):
    """Rollouts, rewards, SAW weights, losses, gradient norms: bit for bit (timings and memory aside)."""
    first, again = cpu_demo_runs["saw_gdpo"][0], cpu_demo_runs["saw_gdpo_again"][0]
    rollouts, metrics = repeat.step_rollouts(first), repeat.step_metrics(first)
    assert sorted(rollouts) == sorted(metrics) == [1, 2] and all(len(rows) == 16 * 8 for rows in rollouts.values())
    compared = repeat.compared_keys(metrics[1])
    assert {"actor/grad_norm", "actor/pg_loss", "saw/correct_reward/weight", "critic/advantages/max"} <= set(compared)
    assert repeat.differences(first, again) == []


@pytest.mark.e2e
def test_cpu_demo_arms_are_paired_from_step_1(cpu_demo_runs):
    """gdpo and saw_gdpo of one seed: the same step-1 prompts, rollouts and rewards; they part at the update."""
    saw, equal = cpu_demo_runs["saw_gdpo"][0], cpu_demo_runs["gdpo"][0]
    assert repeat.differences(saw, equal, steps=1, only=repeat.ROLLOUT_AND_REWARD) == []
    parted = {line.split(": ")[1].split(" ")[0] for line in repeat.differences(saw, equal, steps=1)}
    assert {"saw/correct_reward/weight", "actor/grad_norm"} <= parted
