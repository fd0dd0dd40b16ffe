"""Conditioned rewards and weight schedules (docs/spec.md, "Conditions and schedules"): what every estimator of the
registry applies to the raw rewards before its own statistics, in this order: conditions, then the schedule's
static weights alpha_k at the training step, then the estimator.

A condition key k -> (l, t, fill): key k counts as its reward where key l's (conditioned) reward is >= t, and as
`fill` elsewhere (the GDPO paper's Eq. 8 with fill 0). Conditions chain: they are applied in order of depth, so a
condition reads its key's value after that key's own condition. A non-finite reward is never replaced (the
backends name it; TRL's NaN for an unscored rollout stays unscored), and an unscored condition key fails.

A weight schedule: (step, weights) points, piecewise linear in the step between them, held flat outside them.
No trainer import; validation here raises SawInputError naming the option (the trainer's name for it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

from saw_verl.errors import SawInputError

if TYPE_CHECKING:  # SawConfig imports this module, and the OpenRLHF Ray hook imports SawConfig without torch
    import torch


class Condition(NamedTuple):
    """Key index `key` counts as its reward where key index `on` has a (conditioned) reward >= threshold, and as
    `fill` elsewhere."""

    key: int
    on: int
    threshold: float
    fill: float


def _number(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SawInputError(f"{what} is not a number: {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise SawInputError(f"{what} must be a finite number, got {value!r}")
    return number


def parse_conditions(conditions, reward_keys: Sequence[str], option: str) -> tuple[Condition, ...]:
    """conditions: {key: (condition key, threshold[, fill])} (or Condition records, as a SawConfig holds them) ->
    the Conditions in application order (by depth in the chain, then key order); () for None or empty.
    SawInputError naming `option` for an unknown key, a key gated on itself, a chain that loops, a threshold or fill
    that is not a finite number, or an entry of another shape."""
    if not conditions:
        return ()
    keys = list(reward_keys)
    if not isinstance(conditions, Mapping):
        if all(isinstance(c, Condition) for c in conditions):
            return tuple(conditions)
        raise SawInputError(f"{option} must map a reward key to (condition key, threshold[, fill]); got {conditions!r}")
    parsed: dict[int, Condition] = {}
    for key, entry in conditions.items():
        if str(key) not in keys:
            raise SawInputError(f"{option}: unknown reward key {key!r}; the reward keys are {keys}")
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) not in (2, 3):
            raise SawInputError(
                f"{option}[{key!r}] must be (condition key, threshold) or (condition key, threshold, fill); got "
                f"{entry!r}"
            )
        on, threshold, fill = (*entry, 0.0) if len(entry) == 2 else entry
        if str(on) not in keys:
            raise SawInputError(f"{option}[{key!r}]: unknown condition key {on!r}; the reward keys are {keys}")
        if str(on) == str(key):
            raise SawInputError(f"{option}[{key!r}]: a key cannot be gated on itself")
        parsed[keys.index(str(key))] = Condition(
            keys.index(str(key)), keys.index(str(on)),
            _number(threshold, f"{option}[{key!r}] threshold"), _number(fill, f"{option}[{key!r}] fill"),
        )
    def depth(index: int, chain: tuple[int, ...] = ()) -> int:
        if index not in parsed:
            return 0
        if index in chain:
            loop = " -> ".join(keys[i] for i in chain[chain.index(index):] + (index,))
            raise SawInputError(f"{option}: the conditions loop ({loop}); a chain must end at a key without a condition")
        return 1 + depth(parsed[index].on, chain + (index,))

    depths = {index: depth(index) for index in parsed}
    return tuple(sorted(parsed.values(), key=lambda c: (depths[c.key], c.key)))


def condition_levels(conditions: Sequence[Condition]) -> list[tuple[Condition, ...]]:
    """Conditions in application order -> grouped by depth in their chains: a level's conditions read only keys
    that are final after the levels before it. As many levels as the longest chain; none without conditions."""
    depth: dict[int, int] = {}
    for c in conditions:
        depth[c.key] = depth.get(c.on, 0) + 1
    return [tuple(c for c in conditions if depth[c.key] == d) for d in sorted(set(depth.values()))]


@functools.lru_cache(maxsize=64)
def _level_tensors(conditions: tuple[Condition, ...], device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """Per level of condition_levels: (keys, condition keys, thresholds, fills) on `device`; built once, cached."""
    import torch

    out = []
    for level in condition_levels(conditions):
        columns = list(zip(*level))
        out.append((torch.tensor(columns[0], device=device), torch.tensor(columns[1], device=device),
                    *(torch.tensor(values, dtype=torch.float64, device=device) for values in columns[2:])))
    return out


def condition_rewards(rewards: torch.Tensor, conditions: Sequence[Condition]) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards (N, K) float -> (conditioned rewards (N, K) float64, gated_fraction (K,) float64: the share of the N
    rows whose reward of that key was replaced by its fill; 0 for keys without a condition). Vectorized: one
    pass per depth of the conditions' chains, none without conditions."""
    import torch

    out = rewards.to(torch.float64)
    gated = torch.zeros(rewards.shape[1], dtype=torch.float64, device=rewards.device)
    if not conditions:
        return out, gated
    out = out.clone()
    for keys, on, threshold, fill in _level_tensors(tuple(conditions), rewards.device):
        values = out[:, keys]
        replaced = ~(out[:, on] >= threshold) & torch.isfinite(values)
        out[:, keys] = torch.where(replaced, fill, values)
        gated[keys] = replaced.to(torch.float64).mean(dim=0)
    return out, gated


class WeightSchedule(NamedTuple):
    """points: ((step, weights (K,)), ...) with strictly increasing steps >= 0."""

    points: tuple[tuple[int, tuple[float, ...]], ...]

    def at(self, step) -> tuple[float, ...]:
        """alpha (K,) at `step`: linear between the two points around it, the first / last point's outside."""
        steps = [s for s, _ in self.points]
        if step <= steps[0]:
            return self.points[0][1]
        if step >= steps[-1]:
            return self.points[-1][1]
        after = next(i for i, s in enumerate(steps) if s > step)
        (s0, a0), (s1, a1) = self.points[after - 1], self.points[after]
        share = (step - s0) / (s1 - s0)
        return tuple(x0 + (x1 - x0) * share for x0, x1 in zip(a0, a1))


def parse_weight_schedule(schedule, reward_keys: Sequence[str], option: str) -> Optional[WeightSchedule]:
    """schedule: {step: weights (K,)} or [(step, weights), ...] (or a WeightSchedule) -> WeightSchedule, None for
    None. SawInputError naming `option` for no points, a step that is not an integer >= 0, steps not given in
    increasing order or repeated, weights of another length than the K keys, negative or non-finite weights."""
    if schedule is None or isinstance(schedule, WeightSchedule):
        return schedule
    pairs = list(schedule.items()) if isinstance(schedule, Mapping) else list(schedule)
    if not pairs:
        raise SawInputError(f"{option} has no points; give {{step: [w_1, ..., w_K], ...}}")
    points, keys = [], list(reward_keys)
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise SawInputError(f"{option}: each point is (step, weights); got {pair!r}")
        step, weights = pair
        try:
            whole = int(step)
        except (TypeError, ValueError):
            whole = None
        if isinstance(step, bool) or whole is None or whole != step or whole < 0:
            raise SawInputError(f"{option}: step {step!r} is not an integer >= 0")
        if points and whole <= points[-1][0]:
            word = "repeated" if whole == points[-1][0] else "not in increasing order"
            raise SawInputError(f"{option}: steps must increase; step {whole} is {word} "
                                f"(steps {[s for s, _ in points] + [whole]})")
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != len(keys):
            got = len(weights) if isinstance(weights, Sequence) else weights
            raise SawInputError(f"{option}: the weights at step {whole} must be one per reward key {keys}; got {got!r}")
        values = tuple(_number(w, f"{option}: weight of {key!r} at step {whole}") for key, w in zip(keys, weights))
        for key, w in zip(keys, values):
            if w < 0:
                raise SawInputError(f"{option}: weight of {key!r} at step {whole} is negative ({w})")
        points.append((whole, values))
    return WeightSchedule(tuple(points))


def check_step(step, option: str) -> float:
    """The training step a schedule is read at: a number >= 0; SawInputError naming `option` otherwise."""
    if step is None:
        raise SawInputError(f"{option} needs the training step: pass step=<t> (the trainers pass theirs)")
    value = _number(step, f"the training step for {option}")
    if value < 0:
        raise SawInputError(f"the training step for {option} must be >= 0, got {step!r}")
    return value


@functools.lru_cache(maxsize=64)
def _alpha_tensor(alpha: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """alpha (K,) float64 on `device`, made once per value (a schedule holds flat outside its points)."""
    import torch

    return torch.tensor(alpha, dtype=torch.float64, device=device)


def shaping_metrics(alpha: Sequence[float], gated_fraction: Optional[torch.Tensor],
                    conditions: Sequence[Condition], device) -> dict:
    """The saw/{key}/alpha and saw/{key}/gated_fraction statistics: name -> ((C,) float64 tensor on `device`, the
    key indices they are for), as EstimatorResult.shaping holds them; gated_fraction (K,) from the estimator."""
    import torch

    out = {"alpha": (_alpha_tensor(tuple(alpha), torch.device(device)), tuple(range(len(alpha))))}
    if conditions and gated_fraction is not None:
        keys = tuple(sorted(c.key for c in conditions))
        out["gated_fraction"] = (gated_fraction[list(keys)], keys)
    return out

