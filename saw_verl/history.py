"""SawHistory: the state of SAW statistics over a decayed window of steps (docs/spec.md, "History").

One per training run, updated once per training step by the call that takes the step's advantages (or
weights); evaluation steps leave it alone. It holds, per reward key, a pool of the raw rewards seen so far,
each counting decay^age: its weight W, mean M, sum of squared deviations S and the extremes since it
started, as a (5, K) float64 tensor on the device of the last step (no host read to update it).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from saw_verl.config import SawConfig
from saw_verl.errors import SawInputError
from saw_verl.weights import POOL_ROWS, empty_pool


class SawHistory:
    """The history pool of one run. `pool` (5, K) float64 (rows: saw_verl.weights.POOL_ROWS) is None before the
    first step; `steps` counts the steps merged. Bound to the reward keys, mode and history_decay of its first
    step (mode and decay: None in a state saved before they were recorded)."""

    def __init__(self):
        self.reward_keys: Optional[tuple[str, ...]] = None
        self.mode: Optional[str] = None
        self.history_decay: Optional[float] = None
        self.pool: Optional[torch.Tensor] = None
        self.steps = 0

    def check_same_run(self, cfg: SawConfig) -> None:
        """SawInputError naming what differs when cfg's reward keys, mode or history_decay are not those of the
        steps this history holds (a SawHistory reused across runs or estimators)."""
        if self.reward_keys is None:
            return
        decay = cfg.option("history_decay")
        held = {"reward keys": list(self.reward_keys), "mode": self.mode, decay: self.history_decay}
        given = {"reward keys": list(cfg.reward_keys), "mode": cfg.mode, decay: cfg.history_decay}
        differing = [name for name, value in held.items() if value is not None and value != given[name]]
        if differing:
            raise SawInputError(
                "this SawHistory holds " + ", ".join(f"{name} {held[name]!r}" for name in differing) + ", but the step "
                "has " + ", ".join(f"{name} {given[name]!r}" for name in differing) + ": use one SawHistory per run "
                "(and per estimator, set of reward keys and decay)"
            )

    def pool_for(self, cfg: SawConfig, device) -> torch.Tensor:
        """The pool to merge this step's rewards into, on `device` (empty before the first step).

        Raises SawInputError if the keys, mode or decay differ from the ones this history was built with."""
        self.check_same_run(cfg)
        if self.pool is None:
            return empty_pool(cfg.num_keys, device)
        return self.pool.to(device)

    def commit(self, cfg: SawConfig, pool: torch.Tensor) -> None:
        """Take `pool` (5, K), the pool with this step merged in, once the step's result is final."""
        self.reward_keys, self.mode, self.history_decay = cfg.reward_keys, cfg.mode, cfg.history_decay
        self.pool, self.steps = pool, self.steps + 1

    def state_dict(self) -> dict:
        """Plain Python (JSON-serialisable, with inf / NaN as Python floats) for a trainer's checkpoint."""
        pool = None if self.pool is None else self.pool.cpu().tolist()
        keys = None if self.reward_keys is None else list(self.reward_keys)
        return {"reward_keys": keys, "mode": self.mode, "history_decay": self.history_decay, "pool": pool,
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned; SawInputError if it is not that."""
        try:
            keys, pool, steps = state["reward_keys"], state["pool"], int(state["steps"])
            pool = None if pool is None else torch.tensor(pool, dtype=torch.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise SawInputError(f"not a SawHistory state ({error!r}): {state!r}") from None
        if (keys is None) != (pool is None) or (pool is not None and pool.shape != (len(POOL_ROWS), len(keys))):
            raise SawInputError(f"SawHistory state: pool of shape {None if pool is None else tuple(pool.shape)} "
                                f"for reward keys {keys}; expected ({len(POOL_ROWS)}, K)")
        self.reward_keys = None if keys is None else tuple(keys)
        self.mode, self.history_decay = state.get("mode"), state.get("history_decay")
        self.pool, self.steps = pool, steps

    def __repr__(self) -> str:
        if self.pool is None:
            return "SawHistory(empty)"
        weight, mean = self.pool[0].tolist(), self.pool[1].tolist()
        pools = ", ".join(f"{k}: W={w:.4g} M={'nan' if math.isnan(m) else f'{m:.4g}'}"
                          for k, w, m in zip(self.reward_keys, weight, mean))
        return f"SawHistory(steps={self.steps}, {pools})"


class RunHistories:
    """The SawHistory of each estimator and set of reward keys of the run a process trains: for integrations
    whose estimator is a plain function called once per training step (verl, OpenRLHF). Their checkpoints
    carry state_dict(); `resume` takes it back."""

    def __init__(self):
        self._histories: dict[tuple[str, tuple[str, ...]], SawHistory] = {}

    def get(self, cfg: SawConfig) -> Optional[SawHistory]:
        """The run's SawHistory for cfg's mode and reward keys when cfg.history_decay > 0, else None."""
        if cfg.history_decay == 0:
            return None
        return self._histories.setdefault((cfg.mode, cfg.reward_keys), SawHistory())

    def clear(self) -> None:
        """Forget every pool (a new run in the same process)."""
        self._histories.clear()

    def state_dict(self) -> dict:
        """Plain Python (JSON-serialisable) for a trainer's checkpoint: each pool, with its estimator mode."""
        return {"histories": [{"mode": mode, **history.state_dict()}
                              for (mode, _), history in self._histories.items() if history.pool is not None]}

    def load_state_dict(self, state: dict) -> None:
        """Replace every pool by those of `state` (what state_dict() returned); SawInputError if it is not that."""
        try:
            entries = [(entry["mode"], entry) for entry in state["histories"]]
        except (KeyError, TypeError) as error:
            raise SawInputError(f"not a RunHistories state ({error!r}): {state!r}") from None
        histories = {}
        for mode, entry in entries:
            history = SawHistory()
            history.load_state_dict(entry)
            histories[(mode, history.reward_keys)] = history
        self._histories = histories

    def resume(self, state: Optional[dict], cfg: SawConfig, checkpoint: str) -> Optional[str]:
        """Take the pools of the checkpoint a run resumes from: `state` as state_dict() saved it in `checkpoint`
        (a path or name), None when it holds none. Returns None once cfg's pool is restored; otherwise cfg's
        pool starts new, and the returned warning (naming the checkpoint) is for the trainer's log."""
        if state is None:
            self.clear()
            reason = "holds no SAW history"
        else:
            self.load_state_dict(state)
            if (cfg.mode, cfg.reward_keys) in self._histories:
                return None
            saved = "; ".join(f"{entry['mode']} {entry['reward_keys']}" for entry in state["histories"]) or "none"
            reason = f"holds SAW history pools for {saved}, not for {cfg.mode} {list(cfg.reward_keys)}"
        return (f"checkpoint {checkpoint} {reason}: SAW ({cfg.mode}, history_decay={cfg.history_decay}) resumes "
                f"with a new history pool, which holds about 1 / (1 - decay) steps again after as many steps")
