"""Shared test data and checks: the worked example of docs/spec.md, a hypothesis strategy for random SAW batches,
and the comparison every fast-path test uses."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from saw_verl import SawConfig

EXAMPLE_KEYS = ("correctness", "format")
EXAMPLE_REWARDS = torch.tensor(
    [[-3, 1.5, 3, 3, 0, 3, -3, 3], [1, 1, 1, 0, 1, 1, 1, 1]], dtype=torch.float64
).T.contiguous()
EXAMPLE_GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
EXAMPLE_MASK = torch.ones(8, 1, dtype=torch.int64)
EXAMPLE_REWARD_MIN = (-3.0, 0.0)
EXAMPLE_CV = (0.673435, 0.404061)
EXAMPLE_WEIGHTS = {  # (preset, mode) -> weights
    ("official", "grpo"): (1.25, 0.75),
    ("official", "gdpo"): (1.25, 0.75),
    ("paper", "grpo"): (1.25, 0.75),
    ("paper", "gdpo"): (1.25, 0.75),
}
EXAMPLE_ADVANTAGES = {  # (mode, dynamic) -> per-row advantages (1 token each)
    ("grpo", True): (-1.460992, 0.192961, 0.744279, 0.523752, -0.261116, 0.783349, -1.305582, 0.783349),
    ("gdpo", True): (-1.301041, 0.487651, 1.083881, -0.270492, -0.294708, 0.884124, -1.473540, 0.884124),
    ("gdpo", False): (-0.999640, 0.663178, 1.217450, -0.880988, -0.273969, 0.821906, -1.369844, 0.821906),
}

# Equal CVs (docs/spec.md Step 1): each key is a reordering of the same 0/1 column over two groups of four, so
# every CV is the same number and SAW must give exactly its dynamic=false advantages.
EQUAL_CV_REWARDS = torch.tensor(
    [[1, 0, 0, 1, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0, 1]], dtype=torch.float64
).T.contiguous()
EQUAL_CV_GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
EQUAL_CV_MASK = (torch.arange(5)[None, :] < torch.tensor([5, 3, 4, 1, 2, 5, 5, 3])[:, None]).to(torch.int64)


def equal_cv_cases():
    """(preset, mode, norm_by_std, keys) for every combination, with 2 and 3 reward keys."""
    return [(preset, mode, norm, keys) for preset in ("paper", "official") for mode in ("grpo", "gdpo")
            for norm in (True, False) for keys in (2, 3)]


# Rewards on a small dyadic grid make ties and constant groups common, and group means exact in fp32.
REWARD_VALUES = [-3.0, -1.5, -0.25, 0.0, 0.5, 1.0, 2.0, 3.0]
MASK_DTYPES = [torch.bool, torch.int64, torch.int32, torch.float32]


def scaled_tolerance(expected, tolerance: float) -> float:
    """`tolerance` relative to the magnitude of `expected`, absolute below 1: tolerance * max(1, max |expected|)."""
    expected = torch.as_tensor(expected)
    return tolerance * max(1.0, float(expected.abs().max()) if expected.numel() else 1.0)


def assert_close(actual, expected, atol: float, what: str) -> None:
    """Compare in float64 on the CPU; on failure name how many entries differ, the worst index and both values."""
    actual = torch.as_tensor(actual).detach().cpu().double()
    expected = torch.as_tensor(expected).detach().cpu().double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual - expected).abs()
    if error.numel() and error.max() > atol:
        where = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape))
        raise AssertionError(
            f"{what}: {int((error > atol).sum())} entries differ by more than {atol:.2g}; worst at {list(where)}: "
            f"got {actual[where].item():.9g}, expected {expected[where].item():.9g}"
        )


@st.composite
def saw_batches(draw, max_rows: int = 24, max_len: int = 9, dyadic: bool = False):
    """Random (rewards (N,K), group_ids (N,), mask (N,L), cfg): N, K in 1..6 plus groups of any size."""
    num_keys = draw(st.integers(1, 6))
    num_groups = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 6), min_size=num_groups, max_size=num_groups))
    sizes[0] = max(sizes[0], 2)  # groups all of one rollout are refused (docs/spec.md, "Degenerate inputs")
    group_ids = [g for g, size in enumerate(sizes) for _ in range(size)][:max_rows]
    group_ids = draw(st.permutations(group_ids))  # non-contiguous groups
    n = len(group_ids)
    grid = st.sampled_from(REWARD_VALUES if dyadic else REWARD_VALUES + [0.1, 4.2])  # 0.1, 4.2: inexact means
    value = grid if dyadic else st.one_of(grid, st.floats(-5, 5, allow_nan=False, width=32))
    rewards = torch.tensor(draw(st.lists(st.lists(value, min_size=num_keys, max_size=num_keys), min_size=n, max_size=n)), dtype=torch.float64)
    constant_key = draw(st.none() | st.integers(0, num_keys - 1))
    if constant_key is not None:  # a whole dimension already learned: zero batch variance
        rewards[:, constant_key] = rewards[0, constant_key]
    length = draw(st.integers(1, max_len))
    mask = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=n, max_size=n)))
    mask[draw(st.integers(0, n - 1))] = True  # at least one full row keeps M >= 2 most of the time
    if draw(st.booleans()):
        mask[draw(st.integers(0, n - 1))] = False  # an all-zero row
    mask = mask.to(draw(st.sampled_from(MASK_DTYPES)))
    cfg = SawConfig(
        reward_keys=tuple(f"r{k}" for k in range(num_keys)),
        mode=draw(st.sampled_from(["grpo", "gdpo"])),
        preset=draw(st.sampled_from(["paper", "official"])),
        dynamic=draw(st.booleans()),
        reward_min=tuple(draw(st.lists(st.sampled_from([-3.0, 0.0, 1.0]), min_size=num_keys, max_size=num_keys))),
        static_weights=tuple(draw(st.lists(st.sampled_from([0.0, 0.25, 1.0, 2.0]), min_size=num_keys, max_size=num_keys))),
        norm_by_std=draw(st.booleans()),
    )
    return rewards, torch.tensor(group_ids), mask, cfg

# docs/spec.md, "History": three steps of 4 rollouts, keys [format, correct], saw_gdpo, paper, m = 0, decay 0.5
HISTORY_KEYS = ("format", "correct")
HISTORY_DECAY = 0.5
HISTORY_STEPS = (
    torch.tensor([[0, 0], [1, 0], [1, 0], [0, 0]], dtype=torch.float64),
    torch.tensor([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=torch.float64),
    torch.tensor([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=torch.float64),
)
HISTORY_EXPECTED = (  # per step: the pool's weight W, mean, std; CV and weights; this batch's CV and weights
    dict(W=(4, 4), pool_mean=(0.5, 0.0), pool_std=(0.577350, 0.0), cv=(1.154701, 0.0), weights=(2.0, 0.0),
         batch_cv=(1.154701, 0.0), batch_weights=(2.0, 0.0)),
    dict(W=(6, 6), pool_mean=(0.666667, 0.166667), pool_std=(0.516398, 0.408248), cv=(0.774597, 2.449489),
         weights=(0.480506, 1.519494), batch_cv=(0.666667, 2.0), batch_weights=(0.5, 1.5)),
    dict(W=(7, 7), pool_mean=(0.857143, 0.071429), pool_std=(0.377964, 0.278174), cv=(0.440959, 3.894439),
         weights=(0.203422, 1.796578), batch_cv=(0.0, 0.0), batch_weights=(1.0, 1.0)),
)
HISTORY_DECAYS = (0.0, 0.5, 0.9, 0.99)


def history_step_config(mode: str, preset: str, decay: float) -> SawConfig:
    """The SawConfig of history_steps' three keys."""
    return SawConfig(("sparse", "constant", "drifting"), mode=mode, preset=preset, history_decay=decay,
                     reward_min=(0.0, 0.0, -1.0), static_weights=(1.0, 0.5, 2.0))


def history_steps(seed: int, steps: int = 7, n: int = 24, keys: int = 3):
    """A sequence of (rewards (n, K), group ids (n,), mask (n, L)): a sparse key (no success in most steps), a key
    constant for a while at an inexact value (0.1), one that changes scale mid-run; groups of 4, ragged masks."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        rewards = torch.rand(n, keys, generator=generator, dtype=torch.float64).mul(4).round().div(4)
        rewards[:, 0] = (torch.rand(n, generator=generator) < (0.05 if step % 3 else 0.0)).double()  # sparse
        if step < 4:
            rewards[:, 1] = 0.1  # constant: exactly 0 std while the pool holds this one value only
        rewards[:, 2] *= 1 + 3 * (step >= 4)
        lengths = torch.randint(0, 6, (n,), generator=generator)
        mask = torch.arange(5)[None, :] < lengths[:, None]
        out.append((rewards, torch.arange(n) // 4, mask))
    return out
