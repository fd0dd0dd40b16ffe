"""python -m saw_verl.plot on small metric files written by each trainer's own logger classes."""

import json
import math
import subprocess
import sys

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


@pytest.fixture
def verl_jsonl(tmp_path, monkeypatch):
    """Written by verl's own FileLogger (trainer.logger=[file])."""
    tracking = pytest.importorskip("verl.utils.tracking")
    path = tmp_path / "saw_gdpo.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    logger = tracking.FileLogger("project", "saw_gdpo")
    for step in reversed(STEPS):  # out of order on purpose: the reader sorts by step
        logger.log(step_data(step), step)
    logger.finish()
    return path


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


@pytest.mark.parametrize("source", ["verl_jsonl", "trl_state", "tensorboard_dir"])
def test_each_format_reads_the_logged_values(request, source):
    series = plot.read_metrics(request.getfixturevalue(source))
    assert plot.reward_keys(series) == sorted(KEYS)
    for k in range(len(KEYS)):
        for stat in ("weight", "mean"):
            got = series[f"saw/{KEYS[k]}/{stat}"]
            assert [s for s, _ in got] == list(STEPS)
            assert all(math.isclose(v, e, rel_tol=1e-6) for (_, v), (_, e) in zip(got, expected(k, stat)))
    assert "saw/format_reward/cv" not in series  # None values (TRL's NaN) are skipped


def test_cli_writes_one_png_for_all_three(tmp_path, verl_jsonl, trl_state, tensorboard_dir):
    out = tmp_path / "figs" / "weights.png"
    done = subprocess.run([sys.executable, "-m", "saw_verl.plot", str(verl_jsonl), str(trl_state),
                           str(tensorboard_dir), "-o", str(out), "--title", "three trainers"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 3 * 300  # 2 rows, one column per run
    assert [plot.run_label(p) for p in (verl_jsonl, trl_state, tensorboard_dir)] == [
        "saw_gdpo", "saw_grpo_seed0", "openrlhf_run"]


def test_bad_inputs_exit_with_the_file_named(tmp_path, capsys):
    no_saw = tmp_path / "plain.jsonl"
    no_saw.write_text(json.dumps({"step": 1, "data": {"critic/score/mean": 1.0}}) + "\n")
    not_verl = tmp_path / "other.jsonl"
    not_verl.write_text(json.dumps({"loss": 1.0}) + "\n")
    not_trl = tmp_path / "config.json"
    not_trl.write_text("{}")
    other = tmp_path / "run.csv"
    other.write_text("step,weight\n")
    cases = ((no_saw, "plain.jsonl: no saw/<key>/weight metric"), (not_verl, "other.jsonl:1: not a verl"),
             (not_trl, "config.json: not a trainer_state.json"), (other, "run.csv: expected verl's .jsonl"),
             (tmp_path / "missing.json", "missing.json: no such file"))
    for path, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            plot.main([str(path), "-o", str(tmp_path / "x.png")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
