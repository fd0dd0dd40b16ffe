"""Readable float64 reference of the SAW specification (docs/spec.md): the oracle every fast path is tested against.

Loops over keys, groups and rows on purpose; never used in training.
"""

from __future__ import annotations

import math
import torch

from saw_verl.config import OFFICIAL_EPS, WHITEN_EPS, SawConfig
from saw_verl.errors import SawInputError
from saw_verl.result import SawResult


def _mean(xs):
    return sum(xs) / len(xs) if xs else math.nan


def _std_unbiased(xs):
    if len(xs) < 2 or max(xs) == min(xs):  # exactly 0, whatever the rounding of the mean
        return 0.0
    mu = _mean(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))


def _weighted_mean_std(pairs):
    """pairs: (value, weight > 0) -> (mean, std): frequency weights, std over (sum of weights - 1); std exactly 0
    when every value is equal or the weights sum to 1 or less; mean NaN without pairs."""
    if not pairs:
        return math.nan, 0.0
    total = sum(w for _, w in pairs)
    mu = sum(w * x for x, w in pairs) / total
    if total <= 1 or max(x for x, _ in pairs) == min(x for x, _ in pairs):
        return mu, 0.0
    return mu, math.sqrt(sum(w * (x - mu) ** 2 for x, w in pairs) / (total - 1))


def reference_weights(rewards: torch.Tensor, cfg: SawConfig, past=()):
    """rewards (N, K), NaN = not scored (left out of its key) -> (weights, cv, raw mean, raw std), K floats each;
    mean and std are this step's.

    past: the earlier steps' reward matrices (N_i, K), oldest first (docs/spec.md, "History"): every reward
    then counts cfg.history_decay ** (its step's age) in the CVs, this step's with weight 1; () is this step alone."""
    n, k = rewards.shape
    if n < 2:
        raise SawInputError(f"SAW needs at least 2 rollouts for the batch std; got N={n}")
    steps = [torch.as_tensor(step, dtype=torch.float64) for step in (*past, rewards)]
    ages = range(len(steps) - 1, -1, -1)
    columns = [
        [(float(x), cfg.history_decay**age) for step, age in zip(steps, ages) for x in step[:, d].tolist()
         if not math.isnan(x) and cfg.history_decay**age > 0]
        for d in range(k)
    ]
    this_step = [[x for x in steps[-1][:, d].tolist() if not math.isnan(x)] for d in range(k)]
    raw_mean, raw_std = [_mean(col) for col in this_step], [_std_unbiased(col) for col in this_step]
    cv = []
    for d, col in enumerate(columns):
        shift = cfg.reward_min[d] - (cfg.delta if cfg.preset == "paper" else 0.0)
        mu, std = _weighted_mean_std([(x - shift, w) for x, w in col])
        denominator_eps = cfg.delta if cfg.preset == "paper" else OFFICIAL_EPS
        cv.append(std / (abs(mu) + denominator_eps) if std > 0 else 0.0)
    if not cfg.dynamic or max(cv) == min(cv):  # equal CVs: the dynamic=false weights, exactly
        weights = [1.0] * k
    elif cfg.preset == "official":
        weights = [k * c / (sum(cv) + OFFICIAL_EPS) for c in cv]
    else:  # the paper's shares CV_k / sum CV, times K: the budget of the equal weights
        weights = [1.0] * k if sum(cv) < cfg.delta else [c / sum(cv) * k for c in cv]
    return weights, cv, raw_mean, raw_std


def reference_conditioned_rewards(rewards, conditions):
    """rewards (N, K), conditions: saw_verl.shaping.Condition records (any order) -> (conditioned rewards as N lists
    of K floats, gated fraction: K floats) (docs/spec.md, "Conditions and schedules"). Each key's value is found by
    following its chain of conditions, row by row: a non-finite reward stays as it is, otherwise it counts where the
    condition key's value is >= the threshold, and is the fill elsewhere."""
    rows = torch.as_tensor(rewards, dtype=torch.float64).tolist()
    by_key = {c.key: c for c in conditions}

    def value(row, key):
        raw = row[key]
        if key not in by_key or not math.isfinite(raw):
            return raw, False
        c = by_key[key]
        on, _ = value(row, c.on)
        passes = not math.isnan(on) and on >= c.threshold
        return (raw, False) if passes else (c.fill, True)

    out, replaced = [], [0] * (len(rows[0]) if rows else 0)
    for row in rows:
        values = [value(row, key) for key in range(len(row))]
        out.append([v for v, _ in values])
        replaced = [count + gated for count, (_, gated) in zip(replaced, values)]
    return out, [count / len(rows) for count in replaced]


def reference_alpha(points, step):
    """points: ((step, K weights), ...) with increasing steps -> the K static weights at `step`: linear between the
    two points around it, the first point's before the first, the last point's after the last."""
    if step <= points[0][0]:
        return list(points[0][1])
    for (s0, a0), (s1, a1) in zip(points, points[1:]):
        if s0 <= step < s1:
            return [x0 + (x1 - x0) * (step - s0) / (s1 - s0) for x0, x1 in zip(a0, a1)]
    return list(points[-1][1])


def reference_group_zscore(values, group_ids, epsilon: float, norm_by_std: bool = True):
    """values: N floats, group_ids: N hashables -> N z-scores within each group (docs/spec.md, Conventions)."""
    members = {}
    for j, g in enumerate(group_ids):
        members.setdefault(g, []).append(j)
    out = [0.0] * len(values)
    for rows in members.values():
        xs = [values[j] for j in rows]
        if len(xs) == 1:  # verl: mean 0, std 1
            out[rows[0]] = xs[0] / (1.0 + epsilon) if norm_by_std else xs[0]
            continue
        if max(xs) == min(xs):  # constant group: exactly 0 (verl leaks fp32 noise here)
            continue
        mu = _mean(xs)
        scale = _std_unbiased(xs) + epsilon if norm_by_std else 1.0
        for j in rows:
            out[j] = (values[j] - mu) / scale
    return out


def reference_saw_advantages(rewards, group_ids, response_mask, cfg: SawConfig, past=(), step=None) -> SawResult:
    """rewards (N, K), group_ids (N,) any hashables, response_mask (N, L) any dtype -> SawResult.
    past: the earlier steps' rewards for the history (reference_weights); SawResult.batch_cv is this step's.
    With cfg.conditions, every step's rewards are conditioned first (SawResult.gated_fraction: this step's); with
    cfg.weight_schedule, alpha is the schedule's at `step`."""
    gated = None
    if cfg.conditions:
        past = [reference_conditioned_rewards(old, cfg.conditions)[0] for old in past]
        rewards, gated = reference_conditioned_rewards(rewards, cfg.conditions)
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    n, k = rewards.shape
    weights, cv, raw_mean, raw_std = reference_weights(rewards, cfg, past)
    batch_cv = reference_weights(rewards, cfg)[1]
    ids = [g.item() if isinstance(g, torch.Tensor) else g for g in group_ids]
    alpha = cfg.static_weights if cfg.weight_schedule is None else reference_alpha(cfg.weight_schedule.points, step)
    coef = [weights[d] * alpha[d] for d in range(k)]
    columns = [[float(rewards[j, d]) for j in range(n)] for d in range(k)]
    if cfg.mode == "grpo":
        summed = [sum(coef[d] * columns[d][j] for d in range(k)) for j in range(n)]
        row_value = reference_group_zscore(summed, ids, cfg.epsilon, cfg.norm_by_std)
    else:
        zscores = [reference_group_zscore(col, ids, cfg.epsilon, cfg.norm_by_std) for col in columns]
        summed = [sum(coef[d] * zscores[d][j] for d in range(k)) for j in range(n)]
        tokens = [float(torch.as_tensor(response_mask[j]).double().sum()) for j in range(n)]
        total = sum(tokens)
        if total < 2:
            raise SawInputError(f"GDPO whitening needs at least 2 response tokens in the batch; got M={total:g}")
        mean = sum(t * s for t, s in zip(tokens, summed)) / total
        var = sum(t * (s - mean) ** 2 for t, s in zip(tokens, summed)) / (total - 1)
        row_value = [(s - mean) / math.sqrt(var + WHITEN_EPS) for s in summed]
    mask = torch.as_tensor(response_mask).to(torch.float64)
    advantages = torch.tensor(row_value, dtype=torch.float64)[:, None] * mask
    advantages = torch.where(mask != 0, advantages, 0.0)  # masked tokens: +0.0, never -0.0
    as64 = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return SawResult(advantages.float(), as64(weights), as64(cv), as64(raw_mean), as64(raw_std), as64(batch_cv),
                     gated_fraction=None if gated is None else as64(gated))
