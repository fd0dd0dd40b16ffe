"""The training step a weight schedule (`algorithm.saw.weight_schedule`) is read at: verl's `global_steps`.

verl's trainers count their steps in `trainer.global_steps`: 1 at the first training step, N + 1 at the first step
of a run resumed from `global_step_N` (verl sets it from the folder name), and they log each step's metrics under
it (`training/global_step`). So a resumed run goes on with the schedule where it stopped.

verl 0.9.1 hands the estimator no step: the legacy trainer calls `compute_advantage(data, ...)` with nothing in
`data.meta_info` that holds it. Both trainers (and their subclasses) load their checkpoint, or find none, once
before their first step, in the process that computes advantages (the TaskRunner); the `_load_checkpoint` wrapper
(`checkpoints`) records that trainer here, and `current()` reads its `global_steps` at each advantage. The v1
trainer's `_compute_advantage(self, ...)` forwards `self.global_steps` itself (`shim`), which wins.
"""

from __future__ import annotations

import weakref
from typing import Optional

_trainer: Optional[weakref.ref] = None  # the trainer that trains in this process (one run per TaskRunner)


def attach(trainer) -> None:
    """Record `trainer` (a verl trainer with `global_steps`) as the one whose step the estimators read."""
    global _trainer
    _trainer = weakref.ref(trainer)


def detach() -> None:
    """Forget the recorded trainer (a new run in the same process, or tests)."""
    global _trainer
    _trainer = None


def current() -> Optional[int]:
    """The recorded trainer's `global_steps` now; None when no trainer is recorded (or it is gone)."""
    trainer = None if _trainer is None else _trainer()
    return None if trainer is None else getattr(trainer, "global_steps", None)
