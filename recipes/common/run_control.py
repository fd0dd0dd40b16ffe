"""A transformers / TRL run that says why it stops, and stops where its grid tells it to.

- `RunLog`: every log entry (loss, grad norm, learning rate, rewards, SAW weights, step time) is appended to
  the run's `log.jsonl` as it is made, with the wall-clock time of the step's end;
- `GuardedTrainer`, a mixin put before the trainer class: before each optimizer step the gradients are checked
  finite with one host sync (every gradient's norm in one foreach call); the first non-finite one raises
  `NonFiniteGradient` (step, parameter, its gradient norm, the total norm, the step's loss) before the
  optimizer touches the weights. `plant_nonfinite_at = N` multiplies step N's loss by NaN: how the dry run
  and the tests make a run die on purpose;
- `write_failure`: `failure.json` in the run's folder, from whatever ended the run (step, reason, details,
  the last log entry);
- `StepTarget`: ends training once the step count in a file the grid writes (re-read after every step) is
  reached, or after the first step that ends past the deadline written there;
- `wait_for`: a start barrier (a file that appears).

The trainer must clip gradients (`max_grad_norm` > 0): the check runs where transformers clips.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from transformers import TrainerCallback

LOG_NAME, FAILURE_NAME = "log.jsonl", "failure.json"


class NonFiniteGradient(RuntimeError):
    """A gradient with a NaN or an infinity, found before the optimizer step; `details` says where."""

    def __init__(self, details: dict):
        self.details = details
        super().__init__(f"step {details['step']}: non-finite gradient in {details['parameter']} (its norm "
                         f"{details['parameter_grad_norm']}, total {details['grad_norm']}, loss {details['loss']})")


class GuardedTrainer:
    """Mixin (first base) for a transformers Trainer: the finite-gradient check and the planted NaN loss."""

    plant_nonfinite_at: int | None = None
    step_loss = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if self.plant_nonfinite_at == self.state.global_step + 1:
            loss = loss * float("nan")
        self.step_loss = loss.detach()
        return loss

    def _clip_grad_norm(self, model):
        import torch

        named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
        norms = torch.stack(torch._foreach_norm([grad for _, grad in named]))
        finite = torch.isfinite(norms)
        if not bool(finite.all()):  # the one host sync
            index = int((~finite).nonzero()[0])
            raise NonFiniteGradient({
                "step": self.state.global_step + 1, "parameter": named[index][0],
                "parameter_grad_norm": float(norms[index]), "grad_norm": float(torch.linalg.vector_norm(norms)),
                "loss": None if self.step_loss is None else float(self.step_loss),
            })  # fmt: skip
        return super()._clip_grad_norm(model)


class RunLog(TrainerCallback):
    """Appends every log entry, with its step and wall-clock time, to `path` (a JSON line each)."""

    def __init__(self, path: Path):
        self.path = path
        path.unlink(missing_ok=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        entry = {"step": state.global_step, "time": round(time.time(), 3)} | (logs or {})
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")


def read_log(path: Path) -> list[dict]:
    """The entries of a log.jsonl (a last line still being written is left out)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return entries


def write_failure(folder: Path, error: BaseException, step: int) -> dict:
    """failure.json in `folder`: the step being trained, the reason, the details of a NonFiniteGradient, the
    last log entry and the end of the traceback; returns what it wrote."""
    entries = read_log(folder / LOG_NAME)
    failure = {
        "step": step, "reason": type(error).__name__, "message": str(error).splitlines()[0] if str(error) else "",
        "details": getattr(error, "details", None), "last_log_entry": entries[-1] if entries else None,
        "traceback_tail": traceback.format_exception(error)[-3:], "time": round(time.time(), 3),
    }  # fmt: skip
    (folder / FAILURE_NAME).write_text(json.dumps(failure, indent=1, default=str))
    return failure


def read_target(path: Path | None) -> dict:
    """The grid's target file: {"steps": N, "deadline_unix": T}, either absent while not decided."""
    try:
        return json.loads(path.read_text()) if path else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_target(path: Path, target: dict) -> None:
    """Replace the target file in one step (a run never reads half of it)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(target))
    partial.replace(path)


class StepTarget(TrainerCallback):
    """Ends training at the step count in `target_file` (re-read after every step), or after the first step that
    ends past its deadline (`stopped_at_deadline` then says so)."""

    def __init__(self, target_file: Path | None):
        self.target_file = target_file
        self.stopped_at_deadline = False

    def on_step_end(self, args, state, control, **kwargs):
        target = read_target(self.target_file)
        if "steps" in target and state.global_step >= target["steps"]:
            control.should_training_stop = True
        elif "deadline_unix" in target and time.time() >= target["deadline_unix"]:
            control.should_training_stop = self.stopped_at_deadline = True
        return control


def wait_for(path: Path, timeout_s: float) -> float:
    """Wait until `path` exists; returns the seconds waited. TimeoutError after `timeout_s`."""
    start = time.time()
    while not path.exists():
        if time.time() - start > timeout_s:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s")
        time.sleep(0.05)
    return time.time() - start
