"""The TRL demo (recipes/trl_demo) through its command line, 3 steps a run: one method and seed run twice gives the
same log bit for bit, another method with that seed the same step-1 completions' rewards; a finished run is
recorded in the grid's folder and not run again. ~15 s a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from recipes.common import repeat  # noqa: E402
from recipes.common.runs import read_csv, run_dir  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[1]
EXPERIMENT = CHECKOUT / "recipes" / "trl_demo" / "experiment.py"


def experiment(*args) -> str:
    """`python recipes/trl_demo/experiment.py ARGS` as run_grid.sh runs it; its output."""
    paths = [str(CHECKOUT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths))
    done = subprocess.run([sys.executable, str(EXPERIMENT), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def trl_runs(tmp_path_factory):
    """saw_gdpo seed 0 in two work folders and gdpo seed 0, 3 steps, recorded in one grid folder."""
    out = tmp_path_factory.mktemp("grid")
    runs = {}
    for name, method in (("saw_gdpo", "saw_gdpo"), ("saw_gdpo_again", "saw_gdpo"), ("gdpo", "gdpo")):
        workdir = tmp_path_factory.mktemp(name)
        experiment("prepare", "--workdir", workdir, "--seeds", 0)
        grid = out / "again" if name == "saw_gdpo_again" else out  # a second grid: the first one skips it
        experiment("train", "--workdir", workdir, "--out", grid, "--method", method, "--seed", 0, "--steps", 3)
        runs[name] = (workdir, run_dir(workdir, method, 0))
    return out, runs


def test_same_seed_same_run(trl_runs):
    _, runs = trl_runs
    first, again = runs["saw_gdpo"][1], runs["saw_gdpo_again"][1]
    metrics = repeat.step_metrics(first)
    assert sorted(metrics) == [1, 2, 3]
    assert {"loss", "grad_norm", "entropy", "saw/correct_reward/weight"} <= set(repeat.compared_keys(metrics[1]))
    assert repeat.differences(first, again) == []


def test_arms_are_paired_from_step_1(trl_runs):
    _, runs = trl_runs
    saw, equal = runs["saw_gdpo"][1], runs["gdpo"][1]
    assert repeat.differences(saw, equal, steps=1, only=repeat.ROLLOUT_AND_REWARD) == []
    parted = {line.split(": ")[1].split(" ")[0] for line in repeat.differences(saw, equal, steps=1)}
    assert {"saw/correct_reward/weight", "grad_norm"} <= parted


def test_a_finished_run_is_recorded_and_skipped(trl_runs):
    out, runs = trl_runs
    assert {(row["method"], row["seed"], row["steps"]) for row in read_csv(out / "runs.csv")} == {
        ("saw_gdpo", "0", "3"), ("gdpo", "0", "3")}
    assert [(row["method"], row["step"]) for row in read_csv(out / "metrics.csv")] == [
        ("gdpo", "1"), ("gdpo", "2"), ("gdpo", "3"), ("saw_gdpo", "1"), ("saw_gdpo", "2"), ("saw_gdpo", "3")]
    workdir, folder = runs["gdpo"]
    state = (folder / "trainer_state.json").stat().st_mtime_ns
    printed = experiment("train", "--workdir", workdir, "--out", out, "--method", "gdpo", "--seed", 0, "--steps", 3)
    assert "already finished" in printed and (folder / "trainer_state.json").stat().st_mtime_ns == state
    assert json.loads((folder / "run.json").read_text())["steps"] == 3
