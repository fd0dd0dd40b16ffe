"""recipes/tool_calling GPU grid: the adaptive step count, the finite-gradient check, the run log and failure file,
what the outputs say about a dead run, and the grid end to end on CPU with a tiny model where one run dies."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes" / "tool_calling"))

import gpu_grid  # noqa: E402
import grid_outputs  # noqa: E402

from recipes.common import run_control  # noqa: E402

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed (pip install gguf)")
needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed")
needs_bfcl = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed")


def test_a_round_lasts_until_the_slowest_run_has_finished_its_step():
    ends = [{1: 10.0, 2: 13.0, 3: 15.0}, {1: 11.0, 2: 12.0}]
    assert gpu_grid.round_times(ends, start=8.0) == [(1, 3.0), (2, 2.0)]  # step 3: not every run is there yet
    assert gpu_grid.round_times([{}, {1: 1.0}], start=0.0) == []


def test_the_target_waits_for_the_timed_rounds_then_fills_the_time_left():
    rounds = [(1, 9.0), (2, 3.0), (3, 2.0), (4, 4.0)]
    args = {"skip": 1, "window": 3, "safety": 1.0, "max_steps": 1000}
    assert gpu_grid.choose_target(rounds[:3], 3, 100.0, **args) is None  # 2 timed rounds of 3
    decision = gpu_grid.choose_target(rounds, 4, 100.0, **args)
    assert decision == {"after_step": 4, "step_s": 3.0, "steps": 4 + 33}  # median of 3, 2, 4; floor(100 / 3)
    assert gpu_grid.choose_target(rounds, 4, 100.0, **(args | {"safety": 1.1}))["steps"] == 4 + 30
    assert gpu_grid.choose_target(rounds, 4, 100.0, **(args | {"max_steps": 20}))["steps"] == 20
    assert gpu_grid.choose_target(rounds, 6, -5.0, **args)["steps"] == 7  # never below the leader's next step
    assert gpu_grid.choose_target(rounds, 9, 0.0, **(args | {"max_steps": 8}))["steps"] == 8


class _Base:
    """A stand-in trainer: the loss it is given, gradients it is given, and the norm of what it clips."""

    def __init__(self, model, loss):
        self.model, self.loss = model, loss
        self.state = type("State", (), {"global_step": 4})()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return self.loss

    def _clip_grad_norm(self, model):
        return torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)


class _Guarded(run_control.GuardedTrainer, _Base):
    pass


def _model_with_grads(grads: dict[str, float]) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    for name, param in model.named_parameters():
        param.grad = torch.full_like(param, grads.get(name, 0.5))
    return model


def test_the_first_non_finite_gradient_stops_the_step_and_names_its_parameter():
    model = _model_with_grads({"1.weight": float("inf"), "1.bias": float("nan")})
    trainer = _Guarded(model, torch.tensor(2.5))
    trainer.compute_loss(model, {})
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    with pytest.raises(run_control.NonFiniteGradient) as caught:
        trainer._clip_grad_norm(model)
    assert caught.value.details | {"grad_norm": None} == {
        "step": 5, "parameter": "1.weight", "parameter_grad_norm": float("inf"), "grad_norm": None, "loss": 2.5}
    assert all(torch.allclose(before[n], p.grad, equal_nan=True) for n, p in model.named_parameters())  # not clipped
    finite = _model_with_grads({})
    assert float(_Guarded(finite, torch.tensor(1.0))._clip_grad_norm(finite)) == pytest.approx(0.5 * 9**0.5)


def test_a_planted_step_gets_a_nan_loss_and_only_that_step():
    trainer = _Guarded(_model_with_grads({}), torch.tensor(1.0))
    trainer.plant_nonfinite_at = 5  # global_step 4: the step being trained is 5
    assert torch.isnan(trainer.compute_loss(trainer.model, {})) and torch.isnan(trainer.step_loss)
    trainer.state.global_step = 5
    assert trainer.compute_loss(trainer.model, {}) == 1.0


def test_the_run_log_and_the_failure_file(tmp_path):
    log = run_control.RunLog(tmp_path / run_control.LOG_NAME)
    state = type("State", (), {"global_step": 3})()
    log.on_log(None, state, None, logs={"loss": float("nan"), "grad_norm": 1.5, "step_time": 2.0})
    (entry,) = run_control.read_log(tmp_path / run_control.LOG_NAME)
    assert entry["step"] == 3 and entry["grad_norm"] == 1.5 and entry["loss"] != entry["loss"]  # NaN kept
    error = run_control.NonFiniteGradient({"step": 4, "parameter": "w", "parameter_grad_norm": float("nan"),
                                           "grad_norm": float("nan"), "loss": float("nan")})  # fmt: skip
    failure = run_control.write_failure(tmp_path, error, 4)
    assert json.loads((tmp_path / run_control.FAILURE_NAME).read_text())["details"]["parameter"] == "w"
    assert failure["last_log_entry"]["step"] == 3
    status = grid_outputs.run_status(tmp_path, exit_code=3)
    assert status["status"] == "died" and status["steps"] == 3
    assert status["reason"].startswith("step 4: non-finite gradient in w")
    (tmp_path / run_control.FAILURE_NAME).unlink()
    (tmp_path / "process.log").write_text("Traceback\nModuleNotFoundError: No module named 'trl'\n\n")
    reason = grid_outputs.run_status(tmp_path, -9, tmp_path / "process.log")["reason"]
    assert reason == "exit code -9, no failure.json; ModuleNotFoundError: No module named 'trl'"


def test_the_exit_code_says_whether_the_dead_runs_are_the_expected_ones():
    assert gpu_grid.exit_code([], []) == 0
    assert gpu_grid.exit_code(["a_seed1"], []) == 1
    assert gpu_grid.exit_code(["a_seed1"], ["a_seed1"]) == 0
    assert gpu_grid.exit_code([], ["a_seed1"]) == 1  # a planted failure that did not happen


def test_the_step_target_file_ends_training_at_its_count_or_deadline(tmp_path):
    target = tmp_path / "target.json"
    stop = run_control.StepTarget(target)
    control = type("Control", (), {"should_training_stop": False})()
    state = type("State", (), {"global_step": 5})()
    assert not stop.on_step_end(None, state, control).should_training_stop  # no file yet
    run_control.write_target(target, {"steps": 6, "deadline_unix": time.time() + 60})
    assert not stop.on_step_end(None, state, control).should_training_stop
    state.global_step = 6
    assert stop.on_step_end(None, state, control).should_training_stop and not stop.stopped_at_deadline
    control.should_training_stop = False
    run_control.write_target(target, {"steps": 10, "deadline_unix": time.time() - 1})
    assert stop.on_step_end(None, state, control).should_training_stop and stop.stopped_at_deadline


@pytest.mark.e2e
@needs_gguf
@needs_trl
@needs_bfcl
def test_grid_end_to_end_on_a_tiny_model_with_a_run_that_dies(tmp_path):
    """The grid's own code on CPU: a tiny model, both arms of seed 0 at once, saw_gdpo's loss NaN at step 2: that
    run dies and is named, the other finishes, every output is written, the exit code follows --expect-dead."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "recipes" / "tool_calling"))
    import prepare_smollm2

    prepare_smollm2.main(["--out", str(tmp_path / "model"), "--tiny"])
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "model"), "--workdir", str(tmp_path / "work"), "--out", str(out),
            "--end-unix", str(time.time() + 1200), "--device", "cpu", "--seeds", "0", "--prompts-per-step", "2",
            "--generations", "2", "--warmup-steps", "1", "--max-steps", "3", "--timing-skip", "1",
            "--timing-rounds", "1", "--plant-nonfinite", "saw_gdpo_seed0:2"]  # fmt: skip
    assert gpu_grid.main([*argv, "--expect-dead", "saw_gdpo_seed0"]) == 0
    for name in ("metrics.csv", "runs.csv", "summary.md", "heldout.md", "grid.json", "curves.png", "weights.png"):
        assert (out / name).stat().st_size > 0, name
    runs = pd.read_csv(out / "runs.csv").set_index("run")
    assert runs.loc["gdpo_seed0", "status"] == "finished" and runs.loc["gdpo_seed0", "steps"] == 3
    assert runs.loc["saw_gdpo_seed0", "status"] == "died" and runs.loc["saw_gdpo_seed0", "steps"] == 1
    summary = (out / "summary.md").read_text()
    assert "- saw_gdpo_seed0: after 1 steps; step 2: non-finite gradient in model." in summary
    assert set(pd.read_csv(out / "metrics.csv")["method"]) == {"gdpo"}
    assert (out / "runs" / "saw_gdpo_seed0" / "failure.json").exists()
    assert len(run_control.read_log(out / "runs" / "gdpo_seed0" / "log.jsonl")) >= 3
    grid = json.loads((out / "grid.json").read_text())
    # a fast machine can finish the tiny runs between two looks of the steering loop: then no step-count decision
    # was needed (choose_target has its own tests); any decision made stays within --max-steps
    assert all(decision["steps"] <= 3 for decision in grid["outcome"]["decisions"])
    assert grid["outcome"]["untrained"]["n"] == 80


def test_the_summary_reports_how_saw_weights_swing():
    import pandas as pd

    rows = [{"method": m, "seed": 0, "step": t, "weight/format_reward": w, "weight/correct_reward": 2 - w}
            for m in ("gdpo", "saw_gdpo") for t, w in enumerate((2.0, 1.0, 2.0, 2.0), 1)]  # fmt: skip
    (line,) = grid_outputs.weight_swing_lines(pd.DataFrame(rows))  # the equal-weight run is left out
    assert line == ("- saw_gdpo seed 0: format_reward weight 0 on 0% of steps, mean change 0.67 a step; "
                    "correct_reward weight 0 on 75% of steps, mean change 0.67 a step")
