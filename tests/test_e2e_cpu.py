"""The real ``python -m verl.trainer.main_ppo`` on CPU (cpu_harness), 2 steps per run.

* saw_gdpo in verl's legacy and v1 trainers (with a KL-loss reference model): the reward function
  returns several keys, every step logs ``saw/<key>/{weight,cv,mean,std}`` and finite advantages;
* the CPU demo recipe: its config composes with hydra, and it trains 2 steps.

saw_verl's own plugin is loaded as users get it, through its ``verl.plugins`` entry point; only the
CPU harness is loaded through ``VERL_USE_EXTERNAL_MODULES``. Each run takes ~35-60 s and ~4 GiB.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from pathlib import Path

import pytest

from cpu_harness.assets import build_tiny_model
from cpu_harness.launcher import run_main_ppo
from cpu_harness.smoke_task import REWARD_MIN, write_smoke_data

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes" / "cpu_demo"
SMOKE_KEYS = ["accuracy_reward", "format_reward", "length_reward"]
SAW_STATISTICS = ("weight", "cv", "mean", "std")
RUN_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def smoke_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpu_e2e")
    train, val = write_smoke_data(root / "data")
    return {"model": build_tiny_model(root / "model"), "train": train, "val": val}


def smoke_overrides(assets, use_v1: bool, run_dir: Path) -> list[str]:
    return [
        f"trainer.use_v1={use_v1}",
        "algorithm.adv_estimator=saw_gdpo",
        f"+algorithm.gdpo_reward_keys=[{','.join(SMOKE_KEYS)}]",
        f"+algorithm.saw.reward_min=[{','.join(map(str, REWARD_MIN))}]",
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
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(run_dir / "metrics.jsonl"))
    assert "saw_verl.integrations.verl" not in env.get("VERL_USE_EXTERNAL_MODULES", ""), "use the entry point, as users do"
    return env


def require_success(result) -> str:
    log = result.log
    assert result.returncode == 0, f"main_ppo exited {result.returncode}; log tail:\n{log[-6000:]}"
    return log


def step_metrics(run_dir: Path) -> dict[int, dict]:
    """{step: metrics} from verl's ``file`` logger."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {record["step"]: record["data"] for record in records}


def console_value(log: str, step: int, name: str) -> float:
    """A metric as printed by verl's console logger ("step:N - ... - name:value - ...")."""
    line = next(line for line in log.splitlines() if re.search(rf"\bstep:{step} - ", line))
    match = re.search(rf"(?:^| - ){re.escape(name)}:(?:np\.float\d+\()?([-+0-9.eE]+|nan|inf)", line)
    assert match, f"{name} missing from the console metrics of step {step}"
    return float(match.group(1))


@pytest.mark.e2e
@pytest.mark.parametrize("use_v1", [False, True], ids=["legacy-trainer", "v1-trainer"])
def test_saw_gdpo_trains_two_steps_on_cpu(smoke_assets, use_v1, tmp_path):
    result = run_main_ppo(smoke_overrides(smoke_assets, use_v1, tmp_path), tmp_path / "train.log", RUN_TIMEOUT_S,
                          env=file_logger_env(tmp_path), cwd=tmp_path)
    log = require_success(result)
    metrics = step_metrics(tmp_path)
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


@pytest.mark.parametrize("mistake,named", [
    ("+algorithm.saw.preset=offical", r"unknown algorithm\.saw\.preset 'offical'"),
    ("+algorithm.saw.reward_min=[0,0]", r"algorithm\.saw\.reward_min has 2 entries but there are 3 reward keys"),
])
def test_a_saw_option_error_stops_main_ppo_before_ray_starts(smoke_assets, tmp_path, mistake, named):
    """The real main_ppo: verl's driver validates its config before ray.init; the SAW options fail there too
    (saw_verl's shim wraps validate_config), not at the first advantage after the workers and a rollout."""
    result = run_main_ppo([*smoke_overrides(smoke_assets, True, tmp_path), mistake], tmp_path / "train.log",
                          RUN_TIMEOUT_S, env=file_logger_env(tmp_path), cwd=tmp_path)
    log = result.log
    assert result.returncode != 0, log[-3000:]
    assert re.search(rf"SawInputError: {named}", log), log[-3000:]
    assert "ray init kwargs" not in log and "Started a local Ray instance" not in log, log[-3000:]


def _load_recipe_module(name: str):
    return importlib.import_module(f"recipes.cpu_demo.{name}")


def test_cpu_demo_config_composes_with_hydra():
    from hydra import compose, initialize_config_dir

    from saw_verl.integrations.verl.config import validate_saw_run

    experiment = _load_recipe_module("experiment")
    overrides = experiment.run_overrides(Path("/tmp/w"), "gdpo", seed=3, steps=7)
    with initialize_config_dir(str(RECIPE_DIR / "config"), version_base=None):
        config = compose("cpu_demo", overrides=overrides)
    validate_saw_run(config, "gdpo")
    algorithm = config.algorithm
    assert (algorithm.adv_estimator, algorithm.saw["dynamic"]) == ("saw_gdpo", False)
    assert list(algorithm.gdpo_reward_keys) == list(_load_recipe_module("reward").REWARD_KEYS)
    assert config.trainer.total_training_steps == 7 and config.data.seed == 3
    assert config.actor_rollout_ref.model.path == "/tmp/w/models/seed3"


@pytest.mark.e2e
def test_cpu_demo_trains_two_steps_and_prints_the_weights(tmp_path, capsys):
    experiment = _load_recipe_module("experiment")
    experiment.prepare(tmp_path, seeds=[0])
    keys = experiment.reward_keys()
    result = experiment.run_one(tmp_path, "saw_gdpo", seed=0, steps=2, timeout_s=RUN_TIMEOUT_S, keys=keys)
    require_success(result)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("saw_gdpo seed 0 step")]
    assert [line.split(":")[0] for line in printed] == ["saw_gdpo seed 0 step 1", "saw_gdpo seed 0 step 2"]
    assert all(f"{key}=" in line for line in printed for key in keys)
    rows = experiment.step_rows(result.log_path.parent / "verl_metrics.jsonl", "saw_gdpo", 0, keys)
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        assert all(0.0 <= row[key] <= 1.0 for key in keys)
        assert sum(row[f"weight/{key}"] for key in keys) == pytest.approx(len(keys))
