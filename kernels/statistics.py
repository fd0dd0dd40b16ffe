"""docs/spec.md in float64 on the device: Step 1 (the batch statistics, then the weights) and the z-scores within
groups of Step 2a / 2b, for the SAW kernels' statistics programs.

Statistics are float64 whatever the rewards' dtype. No atomics: every reduction runs in a fixed order, and
every program that computes Step 1 computes it from the same rows in the same order, so a call gives the same
bits every time and in every program.

Groups: the group ids are read in sorted order (the caller's order when it says they are non-decreasing, else
torch.sort's). A group is a run of equal ids; no array is sized by an id value. Statistics program p owns the
runs that start in its block of sorted positions [p * BLOCK, (p + 1) * BLOCK) and follows the last one past the
block's end, so each group is reduced whole, by one program, in order.

Conditions (docs/spec.md, "Conditions and schedules") are applied in registers wherever rewards are read (Step 1
and both group passes): the same values in every pass, no extra pass and no extra launch.

Loops whose trip count is only known at run time are `while` loops: the interpreter of triton 3.6 turns every
runtime scalar into a shape-(1,) array, which `range()` cannot take.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import (
    BATCH_CV_ROW, BELOW_MIN_KEY, BELOW_MIN_VALUE, CV_ROW, DELTA, EPSILON, FIRST_BAD, FIRST_LEVEL_ROW, GATED_ROW,
    HISTORY_DECAY, LEVEL_ROWS, MEAN_ROW, OFFICIAL_EPS, OWNS_A_GROUP, UNSORTED, REWARD_MIN_ROW, SCALARS,
    STATIC_WEIGHT_ROW, STD_ROW, WEIGHTS_ROW,
)


@triton.jit
def merge_moments(na, ma, qa, nb, mb, qb):
    """Merge (count, mean, M2) of two disjoint sets (Chan et al.); counts may be weights, a count of 0 the empty set."""
    n = na + nb
    share = tl.where(n > 0, nb / tl.maximum(n, 1e-300), 0)
    d = mb - ma
    return n, ma + d * share, qa + qb + d * d * na * share


@triton.jit
def _extremes(ha, la, ba, hb, lb, bb):
    """Merge (max, min, first bad index) of two sets of rewards."""
    return tl.maximum(ha, hb), tl.minimum(la, lb), tl.minimum(ba, bb)


@triton.jit
def _extremes_and_count(ha, la, ba, ca, hb, lb, bb, cb):
    """_extremes, and the sum of a count."""
    return tl.maximum(ha, hb), tl.minimum(la, lb), tl.minimum(ba, bb), ca + cb


@triton.jit
def chunk_moments(weight, x):
    """(total weight, weighted mean, weighted M2 about that mean) along axis 0 of x (weight 0: absent)."""
    total = tl.sum(weight, 0)
    mean = tl.sum(weight * x, 0) / tl.maximum(total, 1e-300)
    d = x - mean
    return total, mean, tl.sum(weight * d * d, 0)


@triton.jit
def is_finite(x):
    return (x == x) & (tl.abs(x) != float("inf"))


@triton.jit
def level_row(consts_ptr, level, row, K, other, BLOCK_K: tl.constexpr):
    """Row `row` (0: gate key, 1: threshold, 2: fill) of level `level` of the conditions (common.constants_vector),
    (BLOCK_K,) float64, `other` past K."""
    keys = tl.arange(0, BLOCK_K)
    at = consts_ptr + SCALARS + (FIRST_LEVEL_ROW + LEVEL_ROWS * level + row) * K
    return tl.load(at + keys, mask=keys < K, other=other)


@triton.jit
def gate_level(values, gate, consts_ptr, level, K, BLOCK_K: tl.constexpr):
    """values (R, BLOCK_K): the rewards of the keys c_level of each chain; gate: the conditioned values of the keys
    that gate them -> (the conditioned values of c_level, where they were replaced by the fill)."""
    gated = (level_row(consts_ptr, level, 0, K, -1.0, BLOCK_K) >= 0)[None, :]
    replaced = gated & is_finite(values) & ~(gate >= level_row(consts_ptr, level, 1, K, 0.0, BLOCK_K)[None, :])
    return tl.where(replaced, level_row(consts_ptr, level, 2, K, 0.0, BLOCK_K)[None, :], values), replaced


@triton.jit
def reward_columns(row_ptrs, take, stride_k, column_of_key):
    """The rewards (R, BLOCK_K) float64 of the rows at row_ptrs (R, 1) in the columns column_of_key (BLOCK_K,)
    float64 (-1: none, read as 0): a gather from the cache lines the rows were just read from."""
    columns = column_of_key.to(tl.int32)
    inside = take & (columns >= 0)[None, :]
    return tl.load(row_ptrs + columns[None, :] * stride_k, mask=inside, other=0).to(tl.float64)


@triton.jit
def condition(x, row_ptrs, take, stride_k, consts_ptr, K, LEVELS: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md, "Conditions and schedules": rewards x (R, BLOCK_K) float64 of the rows at row_ptrs (R, 1)
    (take: where they are read) -> (conditioned rewards, replaced: where a reward became its fill) (R, BLOCK_K).
    Key k keeps x_k where the key gating it has a conditioned value >= its threshold (a NaN fails), else takes its
    fill; a non-finite x_k stays. LEVELS >= 1: each key's chain (common.constants_vector: c_0 = k, c_1, ...) is
    resolved from its end, its last key's reward as it is, then level by level down to c_0 = k; the rewards of
    the c_i are gathered from the same rows (reward_columns): no exchange between threads."""
    gate = reward_columns(row_ptrs, take, stride_k, level_row(consts_ptr, LEVELS - 1, 0, K, -1.0, BLOCK_K))
    for step in tl.static_range(LEVELS - 1):  # levels LEVELS - 1 down to 1
        level = LEVELS - 1 - step
        values = reward_columns(row_ptrs, take, stride_k, level_row(consts_ptr, level - 1, 0, K, -1.0, BLOCK_K))
        gate, _ = gate_level(values, gate, consts_ptr, level, K, BLOCK_K)
    return gate_level(x, gate, consts_ptr, 0, K, BLOCK_K)


@triton.jit
def batch_statistics(rewards_ptr, stride_n, stride_k, consts_ptr, N, K, LEVELS: tl.constexpr, CHUNK: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    """docs/spec.md Step 1, first half: per key (count, mean, M2, max, min) (BLOCK_K,) float64 over the N rows of
    the rewards conditioned (`condition`, LEVELS levels; 0: none), the first non-finite reward as row * K + key
    (N * K if none), and per key the number of rows whose reward became its fill (BLOCK_K,) float64 (LEVELS > 0).
    Each step summarises CHUNK rows (mean, then M2 about it) and merges that into the running summary in row
    order; the next step's loads are issued first."""
    keys = tl.arange(0, BLOCK_K)
    steps = tl.arange(0, CHUNK)
    offsets = steps[:, None] * stride_n + keys[None, :] * stride_k
    count = tl.zeros((BLOCK_K,), tl.float64)
    mean = tl.zeros((BLOCK_K,), tl.float64)
    m2 = tl.zeros((BLOCK_K,), tl.float64)
    high = tl.full((BLOCK_K,), float("-inf"), tl.float64)
    low = tl.full((BLOCK_K,), float("inf"), tl.float64)
    bad = tl.full((BLOCK_K,), N * K, tl.int64)
    gated = tl.zeros((BLOCK_K,), tl.float64)
    base = rewards_ptr
    live = (steps < N)[:, None] & (keys < K)[None, :]
    x = tl.load(base + offsets, mask=live, other=0).to(tl.float64)
    start = 0
    while start < N:
        base += CHUNK * stride_n
        ahead = (start + CHUNK + steps < N)[:, None] & (keys < K)[None, :]
        following = tl.load(base + offsets, mask=ahead, other=0).to(tl.float64)
        flat = (start + steps.to(tl.int64))[:, None] * K + keys[None, :]
        if LEVELS > 0:  # the count of replaced rewards reduced with the extremes
            row_ptrs = base - CHUNK * stride_n + steps[:, None] * stride_n  # x's rows
            x, replaced = condition(x, row_ptrs, live, stride_k, consts_ptr, K, LEVELS, BLOCK_K)
            hi, lo, first_bad, replaced_count = tl.reduce(
                (tl.where(live, x, float("-inf")), tl.where(live, x, float("inf")),
                 tl.where(live & ~is_finite(x), flat, N * K), tl.where(live & replaced, 1.0, 0.0).to(tl.float64)), 0,
                _extremes_and_count)
            gated += replaced_count
        else:
            hi, lo, first_bad = tl.reduce((tl.where(live, x, float("-inf")), tl.where(live, x, float("inf")),
                                           tl.where(live & ~is_finite(x), flat, N * K)), 0, _extremes)
        n, mu, q = chunk_moments(tl.where(live, 1.0, 0.0).to(tl.float64), x)
        count, mean, m2 = merge_moments(count, mean, m2, n, mu, q)
        high, low, bad = tl.maximum(high, hi), tl.minimum(low, lo), tl.minimum(bad, first_bad)
        x = following
        live = ahead
        start += CHUNK
    return count, mean, m2, high, low, tl.min(bad, 0), gated


@triton.jit
def coefficient_of_variation(count, mean, m2, high, low, consts_ptr, K, PAPER: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md Step 1: per-key (count or pool weight, mean, M2, max, min) (BLOCK_K,) float64 -> (cv, std): the
    std over count - 1, exactly 0 where every value was the same (max == min) or the count is 1 or less; the CV of
    the shifted reward, 0 past K."""
    keys = tl.arange(0, BLOCK_K)
    live = keys < K
    spread = (high > low) & (count > 1)
    std = tl.where(spread, tl.sqrt(m2 / tl.maximum(count - 1, 1)), 0)
    reward_min = tl.load(consts_ptr + SCALARS + REWARD_MIN_ROW * K + keys, mask=live, other=0)
    if PAPER:  # shifted rewards s = r - m + delta have the raw std
        delta = tl.load(consts_ptr + DELTA)
        cv = std / (tl.abs(mean - reward_min + delta) + delta)
    else:
        cv = std / (tl.abs(mean - reward_min) + tl.load(consts_ptr + OFFICIAL_EPS))
    return tl.where(live & spread, cv, 0), std


@triton.jit
def saw_weights(cv, consts_ptr, K, PAPER: tl.constexpr, DYNAMIC: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md Step 1, the weights: cv (BLOCK_K,) float64 -> (weights, coef = weight * alpha) (BLOCK_K,)
    float64, 0 past K. They sum to K in both modes; CVs all equal give exactly 1 each (the dynamic=false weights).
    Float64 reference: naive.naive_weights."""
    keys = tl.arange(0, BLOCK_K)
    live = keys < K
    delta = tl.load(consts_ptr + DELTA)
    alpha = tl.load(consts_ptr + SCALARS + STATIC_WEIGHT_ROW * K + keys, mask=live, other=0)
    cv_sum = tl.sum(cv, 0)
    ones = tl.where(live, 1.0, 0.0).to(tl.float64)
    if not DYNAMIC:
        weights = ones
    else:
        if PAPER:
            weights = tl.where(cv_sum < delta, ones, (cv / tl.maximum(cv_sum, delta)) * K)
        else:
            weights = K * cv / (cv_sum + tl.load(consts_ptr + OFFICIAL_EPS))
        all_equal = tl.max(tl.where(live, cv, float("-inf")), 0) == tl.min(tl.where(live, cv, float("inf")), 0)
        weights = tl.where(all_equal, ones, weights)
    return weights, weights * alpha


@triton.jit
def merge_pool(pool_ptr, consts_ptr, count, mean, m2, high, low, K, BLOCK_K: tl.constexpr):
    """docs/spec.md, "History": the pool (weight W, mean M, M2 S, low, high) at pool_ptr, decayed by beta and merged
    with this batch's (count c, mean m, M2 Q, max, min) (BLOCK_K,) float64 -> the new pool's five (BLOCK_K,).
    W' = beta W + c, M' = (beta W M + c m) / W', S' = beta S + Q + (beta W c / W') (m - M)^2; a pool with no weight
    left takes the batch as it is. Float64 reference: saw_verl.weights.merge_pool (the same operations)."""
    keys = tl.arange(0, BLOCK_K)
    live = keys < K
    decay = tl.load(consts_ptr + HISTORY_DECAY)
    weight = tl.load(pool_ptr + keys, mask=live, other=0)
    pool_mean = tl.load(pool_ptr + K + keys, mask=live, other=0)
    pool_m2 = tl.load(pool_ptr + 2 * K + keys, mask=live, other=0)
    pool_low = tl.load(pool_ptr + 3 * K + keys, mask=live, other=float("inf"))
    pool_high = tl.load(pool_ptr + 4 * K + keys, mask=live, other=float("-inf"))
    kept = decay * weight
    merged = kept + count
    fresh = kept == 0
    unscored = count == 0
    gap = mean - pool_mean
    new_mean = tl.where(fresh, mean, tl.where(unscored, pool_mean, (kept * pool_mean + count * mean) / merged))
    new_m2 = tl.where(fresh, m2, tl.where(unscored, decay * pool_m2,
                                           decay * pool_m2 + m2 + kept * count / merged * gap * gap))
    new_low = tl.where(fresh, low, tl.minimum(pool_low, low))
    new_high = tl.where(fresh, high, tl.maximum(pool_high, high))
    return merged, new_mean, new_m2, new_low, new_high


@triton.jit
def store_row(out_ptr, row, K, values, BLOCK_K: tl.constexpr):
    """values (BLOCK_K,) -> row `row` of out (rows, K)."""
    keys = tl.arange(0, BLOCK_K)
    tl.store(out_ptr + row * K + keys, values, mask=keys < K)


@triton.jit
def step1(rewards_ptr, stride_n, stride_k, consts_ptr, status_ptr, summary_ptr, pool_ptr, pool_out_ptr, N, K,
          PAPER: tl.constexpr, DYNAMIC: tl.constexpr, HISTORY: tl.constexpr, LEVELS: tl.constexpr,
          CHUNK: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md Step 1 in every statistics program (the same bits in each), on the rewards conditioned
    (`condition`, LEVELS levels; 0: none); program 0 stores the summary (LEVELS > 0: with the gated fractions), the
    first non-finite reward, the first key below its reward_min (status words) and (HISTORY) the new pool at
    pool_out_ptr. HISTORY: the CVs and weights are the pool's at pool_ptr with this batch merged in. Returns
    coef = weight * alpha (BLOCK_K,) float64."""
    count, mean, m2, high, low, first_bad, gated = batch_statistics(rewards_ptr, stride_n, stride_k, consts_ptr, N, K,
                                                                    LEVELS, CHUNK, BLOCK_K)
    batch_cv, std = coefficient_of_variation(count, mean, m2, high, low, consts_ptr, K, PAPER, BLOCK_K)
    if HISTORY:
        weight, pool_mean, pool_m2, pool_low, pool_high = merge_pool(pool_ptr, consts_ptr, count, mean, m2, high, low,
                                                                      K, BLOCK_K)
        cv, _ = coefficient_of_variation(weight, pool_mean, pool_m2, pool_high, pool_low, consts_ptr, K, PAPER,
                                         BLOCK_K)
    else:
        cv = batch_cv
    weights, coef = saw_weights(cv, consts_ptr, K, PAPER, DYNAMIC, BLOCK_K)
    if tl.program_id(0) == 0:
        store_row(summary_ptr, WEIGHTS_ROW, K, weights, BLOCK_K)
        store_row(summary_ptr, CV_ROW, K, cv, BLOCK_K)
        store_row(summary_ptr, MEAN_ROW, K, mean, BLOCK_K)
        store_row(summary_ptr, STD_ROW, K, std, BLOCK_K)
        store_row(summary_ptr, BATCH_CV_ROW, K, batch_cv, BLOCK_K)
        if LEVELS > 0:
            store_row(summary_ptr, GATED_ROW, K, gated / N, BLOCK_K)
        if HISTORY:  # rows of common.POOL_ROWS
            store_row(pool_out_ptr, 0, K, weight, BLOCK_K)
            store_row(pool_out_ptr, 1, K, pool_mean, BLOCK_K)
            store_row(pool_out_ptr, 2, K, pool_m2, BLOCK_K)
            store_row(pool_out_ptr, 3, K, pool_low, BLOCK_K)
            store_row(pool_out_ptr, 4, K, pool_high, BLOCK_K)
        tl.store(status_ptr + FIRST_BAD, first_bad.to(tl.float64))
        keys = tl.arange(0, BLOCK_K)
        reward_min = tl.load(consts_ptr + SCALARS + REWARD_MIN_ROW * K + keys, mask=keys < K, other=0)
        below = tl.min(tl.where((keys < K) & (low < reward_min), keys, K), 0)
        tl.store(status_ptr + BELOW_MIN_KEY, below.to(tl.float64))
        tl.store(status_ptr + BELOW_MIN_VALUE, tl.min(tl.where(keys == below, low, float("inf")), 0))
    return coef


@triton.jit
def _maximum(a, b):
    return tl.maximum(a, b)


@triton.jit
def last_row(values, is_last):
    """The row of `values` (CHUNK, ...) where is_last (CHUNK, 1) holds, exactly (a max over one value)."""
    return tl.max(tl.where(is_last, values, float("-inf")), 0)


@triton.jit
def _segmented_moments(fa, na, ma, qa, ha, la, fb, nb, mb, qb, hb, lb):
    """Scan step over (starts a run, count, mean, M2, max, min): b restarts the summary where it starts a run."""
    n, mean, m2 = merge_moments(na, ma, qa, nb, mb, qb)
    return (fa | fb, tl.where(fb, nb, n), tl.where(fb, mb, mean), tl.where(fb, qb, m2),
            tl.where(fb, hb, tl.maximum(ha, hb)), tl.where(fb, lb, tl.minimum(la, lb)))


@triton.jit
def runs(ids_ptr, start, N, first_before, CHUNK: tl.constexpr):
    """Sorted positions [start, start + CHUNK) -> (positions, inside, first, ends, descents) (CHUNK,): where each
    position's run of equal ids starts (first_before for a run begun before `start`), which positions end a run,
    and where the ids descend (only possible when the caller's order was taken on trust)."""
    positions = start + tl.arange(0, CHUNK).to(tl.int64)
    inside = positions < N
    ids = tl.load(ids_ptr + positions, mask=inside, other=0)
    before = tl.load(ids_ptr + positions - 1, mask=inside & (positions > 0), other=0)
    after = tl.load(ids_ptr + positions + 1, mask=positions + 1 < N, other=0)
    starts = inside & ((positions == 0) | (ids != before))
    first = tl.maximum(tl.associative_scan(tl.where(starts, positions, -1), 0, _maximum), first_before)
    ends = inside & ((positions + 1 == N) | (ids != after))
    return positions, inside, first, ends, inside & (positions > 0) & (ids < before)


@triton.jit
def row_values(rewards_ptr, stride_n, stride_k, consts_ptr, rows, inside, coef, K, GDPO: tl.constexpr,
               LEVELS: tl.constexpr, BLOCK_K: tl.constexpr):
    """The values z-scored within groups, (R, C) float64 for `rows` (R,): GDPO each conditioned reward (C = BLOCK_K,
    Step 2b), GRPO the weighted sum R = sum_k coef_k r_k of the conditioned rewards (C = 1, Step 2a). LEVELS: as
    condition (0: no conditions)."""
    keys = tl.arange(0, BLOCK_K)
    take = inside[:, None] & (keys < K)[None, :]
    row_ptrs = rewards_ptr + rows[:, None] * stride_n
    x = tl.load(row_ptrs + keys[None, :] * stride_k, mask=take, other=0).to(tl.float64)
    if LEVELS > 0:
        x, _ = condition(x, row_ptrs, take, stride_k, consts_ptr, K, LEVELS, BLOCK_K)
    if GDPO:
        values = x
    else:
        values = tl.sum(x * coef[None, :], 1)[:, None]
    return values


@triton.jit
def group_zscores(rewards_ptr, stride_n, stride_k, ids_ptr, order_ptr, consts_ptr, out_ptr, scratch_ptr, coef, N, K,
                  BLOCK, NORM_BY_STD: tl.constexpr, SORTED: tl.constexpr, GDPO: tl.constexpr, LEVELS: tl.constexpr,
                  CHUNK: tl.constexpr, BLOCK_K: tl.constexpr):
    """docs/spec.md Step 2a / 2b within groups, for the runs this program owns (those starting in its block of
    BLOCK sorted positions). GRPO: out (N,) float32 = z(R); GDPO: out (N,) float64 = S = sum_k coef_k z(r_k).
    Conventions: a run of one row gives x / (1 + eps), a constant run (max == min) exactly 0, NORM_BY_STD False
    drops the division by (std + eps). The rewards are conditioned as in Step 1 (LEVELS levels; 0: none).
    Returns the status bits UNSORTED (the ids it read descend) and OWNS_A_GROUP (a run of 2 or more rows starts in
    its block).

    Pass 1 scans the owned positions in steps of CHUNK (a segmented Chan scan, the open run carried from one step
    to the next) and stores each run's (mean, divisor) per column at the run's first position; pass 2 reads them
    back: z = (x - mean) / divisor (divisor +inf for a constant run).
    """
    C: tl.constexpr = BLOCK_K if GDPO else 1
    columns = tl.arange(0, C)
    block_start = tl.program_id(0).to(tl.int64) * BLOCK
    block_end = block_start + BLOCK
    epsilon = tl.load(consts_ptr + EPSILON)
    last_position = tl.arange(0, CHUNK) == CHUNK - 1
    is_last = last_position[:, None]
    count = tl.zeros((C,), tl.float64)
    mean = tl.zeros((C,), tl.float64)
    m2 = tl.zeros((C,), tl.float64)
    high = tl.full((C,), float("-inf"), tl.float64)
    low = tl.full((C,), float("inf"), tl.float64)
    first_before = tl.full((), -1, tl.int64)  # where the run open at `start` began; -1: before this block
    descended = 0
    paired = 0
    open_owned = block_start >= 0
    start = block_start
    while (start < N) & ((start < block_end) | open_owned):
        positions, inside, first, ends, descents = runs(ids_ptr, start, N, first_before, CHUNK)
        owned = inside & (first >= block_start) & (first < block_end)
        rows = positions if SORTED else tl.load(order_ptr + positions, mask=inside, other=0)
        x = row_values(rewards_ptr, stride_n, stride_k, consts_ptr, rows, inside, coef, K, GDPO, LEVELS, BLOCK_K)
        starts = tl.broadcast_to((first == positions)[:, None], x.shape)
        one = tl.where(inside[:, None], 1.0, 0.0).to(tl.float64) + tl.zeros_like(x)
        zero = tl.zeros_like(x)
        top = tl.where(inside[:, None], x, float("-inf"))
        bottom = tl.where(inside[:, None], x, float("inf"))
        carried = merge_moments(count, mean, m2, one, x, zero)  # the open run, continued
        seed = (tl.arange(0, CHUNK) == 0)[:, None] & ~starts
        _, n, mu, q, hi, lo = tl.associative_scan(
            (starts, tl.where(seed, carried[0], one), tl.where(seed, carried[1], x), tl.where(seed, carried[2], zero),
             tl.where(seed, tl.maximum(high, top), top), tl.where(seed, tl.minimum(low, bottom), bottom)), 0,
            _segmented_moments)
        if NORM_BY_STD:
            divisor = tl.where(n == 1, 1 + epsilon, tl.sqrt(q / tl.maximum(n - 1, 1)) + epsilon)
        else:
            divisor = tl.full(x.shape, 1.0, tl.float64)
        divisor = tl.where((hi == lo) & (n > 1), float("inf"), divisor)
        where = scratch_ptr + (first * 2 * C)[:, None] + columns[None, :]
        keep = tl.broadcast_to((ends & owned)[:, None], x.shape)
        paired = tl.maximum(paired, tl.max(tl.max(tl.where(keep & (n > 1), 1, 0), 1), 0))
        tl.store(where, tl.where(n == 1, 0, mu), mask=keep)
        tl.store(where + C, divisor, mask=keep)
        count, mean, m2 = last_row(n, is_last), last_row(mu, is_last), last_row(q, is_last)
        high, low = last_row(hi, is_last), last_row(lo, is_last)
        last_first = tl.max(first, 0)
        run_ends = tl.max(tl.where(last_position & ends, 1, 0), 0) == 1
        open_owned = ~run_ends & (last_first >= block_start) & (last_first < block_end)
        first_before = last_first
        descended = tl.maximum(descended, tl.max((descents & owned).to(tl.int32), 0))
        start += CHUNK
    stop = start
    tl.debug_barrier()  # pass 1's stores of this program, read back by its other threads
    keys = tl.arange(0, BLOCK_K)
    first_before = tl.full((), -1, tl.int64)
    start = block_start
    while start < stop:
        positions, inside, first, _, _ = runs(ids_ptr, start, N, first_before, CHUNK)
        owned = inside & (first >= block_start) & (first < block_end)
        rows = positions if SORTED else tl.load(order_ptr + positions, mask=inside, other=0)
        x = row_values(rewards_ptr, stride_n, stride_k, consts_ptr, rows, inside, coef, K, GDPO, LEVELS, BLOCK_K)
        where = scratch_ptr + (first * 2 * C)[:, None] + columns[None, :]
        take = tl.broadcast_to(owned[:, None], x.shape)
        z = (x - tl.load(where, mask=take, other=0)) / tl.load(where + C, mask=take, other=1)
        if GDPO:
            tl.store(out_ptr + rows, tl.sum(tl.where((keys < K)[None, :], z * coef[None, :], 0), 1), mask=owned)
        else:
            tl.store(out_ptr + rows, tl.sum(z, 1).to(tl.float32), mask=owned)
        first_before = tl.max(first, 0)
        start += CHUNK
    return descended * UNSORTED + paired * OWNS_A_GROUP
