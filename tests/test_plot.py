"""python -m saw_verl.plot on small metric files written by each trainer's own logger classes and the recipes."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from saw_verl import plot  # noqa: E402

KEYS = ("format_reward", "correct_reward")
STEPS = (1, 2, 3)


def step_data(step: int) -> dict:
    """Known per-step values: weight of key k = (k + 1) * step / 10, mean = step / 100 + k."""
    data = {"critic/score/mean": 0.5}
    for k, key in enumerate(KEYS):
        data[f"saw/{key}/weight"] = (k + 1) * step / 10
        data[f"saw/{key}/mean"] = step / 100 + k
    return data


def expected(key_index: int, stat: str) -> list[tuple[int, float]]:
    return [(s, step_data(s)[f"saw/{KEYS[key_index]}/{stat}"]) for s in STEPS]


def write_verl_jsonl(path: Path, monkeypatch) -> Path:
    """One run's metrics as verl's own FileLogger writes them (trainer.logger=[file])."""
    tracking = pytest.importorskip("verl.utils.tracking")
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    logger = tracking.FileLogger("project", path.stem)
    for step in reversed(STEPS):  # out of order on purpose: the reader sorts by step
        logger.log(step_data(step), step)
    logger.finish()
    return path


@pytest.fixture
def verl_jsonl(tmp_path, monkeypatch):
    """Where the CPU demo leaves a run's verl metrics: <workdir>/runs/<method>_seed<seed>/verl_metrics.jsonl."""
    run_dir = tmp_path / "runs" / "saw_gdpo_seed0"
    run_dir.mkdir(parents=True)
    return write_verl_jsonl(run_dir / "verl_metrics.jsonl", monkeypatch)


@pytest.fixture
def trl_state(tmp_path):
    """Written by transformers' TrainerState (TRL's trainer_state.json), with an eval entry and a None."""
    trainer_utils = pytest.importorskip("transformers.trainer_callback")
    state = trainer_utils.TrainerState()
    for step in STEPS:
        state.log_history.append({**step_data(step), "loss": 0.1, "step": step, "saw/format_reward/cv": None})
    state.log_history.append({"eval_saw/format_reward/weight": 9.0, "step": 3})
    run_dir = tmp_path / "saw_grpo_seed0"
    run_dir.mkdir()
    state.save_to_json(str(run_dir / "trainer_state.json"))
    return run_dir / "trainer_state.json"


@pytest.fixture
def tensorboard_dir(tmp_path):
    """TensorBoard events as OpenRLHF's TensorboardLogger writes them: tags "train/<metric>", "eval/<metric>"."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    log_dir = tmp_path / "openrlhf_run"
    writer = SummaryWriter(log_dir=str(log_dir))
    for step in STEPS:
        for name, value in step_data(step).items():
            writer.add_scalar(f"train/{name}", value, step)
        writer.add_scalar("eval/saw/format_reward/weight", 9.0, step)
    writer.close()
    return log_dir


@pytest.fixture
def recipe_csv(verl_jsonl):
    """The CPU demo's results/metrics.csv, written by the recipe's own code from verl's file: 3 runs."""
    pytest.importorskip("omegaconf")
    from recipes.common.runs import write_csv
    from recipes.cpu_demo import experiment

    rows = [row for seed, method in ((1, "saw_gdpo"), (0, "gdpo"), (0, "saw_gdpo"))
            for row in experiment.step_rows(verl_jsonl, method, seed, list(KEYS))]
    path = verl_jsonl.parents[2] / "results" / "metrics.csv"
    write_csv(path, rows)
    return path


@pytest.mark.parametrize("source", ["verl_jsonl", "trl_state", "tensorboard_dir", "recipe_csv"])
def test_each_format_reads_the_logged_values(request, source):
    runs = plot.read_runs(request.getfixturevalue(source))
    for _, series in runs:
        assert plot.reward_keys(series) == sorted(KEYS)
        for k in range(len(KEYS)):
            for stat in ("weight", "mean"):
                got = series[f"saw/{KEYS[k]}/{stat}"]
                assert [s for s, _ in got] == list(STEPS)
                assert all(math.isclose(v, e, rel_tol=1e-6) for (_, v), (_, e) in zip(got, expected(k, stat)))
        assert "saw/format_reward/cv" not in series  # None values (TRL's NaN) are skipped


def test_runs_are_labelled_by_method_and_seed_else_their_folder(verl_jsonl, trl_state, tensorboard_dir, recipe_csv):
    paths = (verl_jsonl, trl_state, tensorboard_dir, recipe_csv)
    labels = [label for path in paths for label, _ in plot.read_runs(path)]
    assert labels == ["saw_gdpo seed 0", "saw_grpo seed 0", "openrlhf_run",
                      "saw_gdpo seed 0", "saw_gdpo seed 1", "gdpo seed 0"]  # a metrics.csv: by method, then seed


def test_runs_sharing_a_label_get_their_path(tmp_path, monkeypatch):
    """verl's default layout <project>/<experiment>.jsonl: two runs in one project folder."""
    (tmp_path / "project").mkdir()
    first, second = (write_verl_jsonl(tmp_path / "project" / f"{name}.jsonl", monkeypatch) for name in ("a", "b"))
    assert [label for label, _ in plot.labelled_runs([first, second])] == [f"project ({first})", f"project ({second})"]


def test_cli_plots_every_run_with_titles_and_y_labels(tmp_path, monkeypatch, verl_jsonl, trl_state, tensorboard_dir,
                                                      recipe_csv):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    out = tmp_path / "figs" / "weights.png"
    plot.main([str(verl_jsonl), str(trl_state), str(tensorboard_dir), str(recipe_csv), "-o", str(out)])
    shown = [ax for ax in figures[0].axes if ax.get_visible()]
    assert len(shown) == 2 * 6  # weights above reward means, for each of the 6 runs
    assert [ax.get_title() for ax in shown if ax.get_title()] == [  # the same run twice: told apart by path
        f"saw_gdpo seed 0 ({verl_jsonl})", "saw_grpo seed 0", "openrlhf_run", f"saw_gdpo seed 0 ({recipe_csv})",
        "saw_gdpo seed 1", "gdpo seed 0"]
    assert all(ax.get_ylabel() for ax in shown)
    monkeypatch.undo()
    plt.close(figures[0])


def test_cli_writes_the_demo_outputs_as_found(tmp_path, verl_jsonl, recipe_csv):
    out = tmp_path / "weights.png"
    done = subprocess.run([sys.executable, "-m", "saw_verl.plot", str(recipe_csv), "-o", str(out), "--title", "demo"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 600 and image.shape[1] > 3 * 400  # 2 rows, one column per run


def test_bad_inputs_exit_with_the_file_named(tmp_path, capsys):
    no_saw = tmp_path / "plain.jsonl"
    no_saw.write_text(json.dumps({"step": 1, "data": {"critic/score/mean": 1.0}}) + "\n")
    not_verl = tmp_path / "other.jsonl"
    not_verl.write_text(json.dumps({"loss": 1.0}) + "\n")
    not_trl = tmp_path / "config.json"
    not_trl.write_text("{}")
    runs_csv = tmp_path / "runs.csv"
    runs_csv.write_text("method,seed,returncode,wall_s\ngdpo,0,0,12.5\n")
    bad_step = tmp_path / "metrics.csv"
    with bad_step.open("w", newline="") as handle:
        csv.writer(handle).writerows([["method", "seed", "step", "a", "weight/a"], ["gdpo", "0", "1.5", "0", "1"]])
    other = tmp_path / "run.txt"
    other.write_text("step,weight\n")
    cases = ((no_saw, "plain.jsonl: no saw/<key>/weight metric"), (not_verl, "other.jsonl:1: not a verl"),
             (not_trl, "config.json: not a trainer_state.json"), (runs_csv, "runs.csv: not a recipe metrics.csv"),
             (bad_step, "metrics.csv:2: seed '0' or step '1.5' is not an integer"),
             (other, "run.txt: expected verl's .jsonl"), (tmp_path / "missing.json", "missing.json: no such file"))
    for path, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            plot.main([str(path), "-o", str(tmp_path / "x.png")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_alpha_and_gated_fraction_get_their_rows_where_logged(tmp_path, monkeypatch, trl_state, tensorboard_dir):
    """A run with a weight schedule and a condition (saw/{key}/alpha, saw/format_reward/gated_fraction) next to one
    without: every column gets the two extra rows, with the logged values in the run that has them."""
    import matplotlib.pyplot as plt

    trainer_utils = pytest.importorskip("transformers.trainer_callback")
    state = trainer_utils.TrainerState()
    for step in STEPS:
        shaping = {f"saw/{key}/alpha": 1.0 + k * step / 4 for k, key in enumerate(KEYS)}
        state.log_history.append({**step_data(step), **shaping, "saw/format_reward/gated_fraction": step / 8,
                                  "step": step})
    shaped = tmp_path / "scheduled_seed1" / "trainer_state.json"
    shaped.parent.mkdir()
    state.save_to_json(str(shaped))
    (_, series), = plot.read_runs(shaped)
    assert series["saw/correct_reward/alpha"] == [(s, 1.0 + s / 4) for s in STEPS]
    assert series["saw/format_reward/gated_fraction"] == [(s, s / 8) for s in STEPS]

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot.main([str(shaped), str(tensorboard_dir), "-o", str(tmp_path / "shaped.png")])
    axes = figures[0].axes
    assert len(axes) == 4 * 2 and [ax.get_ylabel() for ax in axes[::2]] == [
        "SAW weight $w_k$", "reward batch mean", r"static weight $\alpha_k$", "share gated by its condition"]
    alpha_lines = {line.get_label(): list(line.get_ydata()) for line in axes[4].get_lines()}
    assert alpha_lines == {"correct_reward": [1.25, 1.5, 1.75], "format_reward": [1.0, 1.0, 1.0]}
    assert [list(line.get_ydata()) for line in axes[6].get_lines() if len(line.get_ydata())] == [[0.125, 0.25, 0.375]]
    assert not any(len(line.get_ydata()) for line in axes[5].get_lines() + axes[7].get_lines())  # nothing logged
    monkeypatch.undo()
    plt.close(figures[0])
    assert plot.shown_statistics(plot.read_runs(trl_state)) == ["weight", "mean"]
