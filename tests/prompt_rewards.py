"""A verl reward function that scores the prompt, never the response (tests/test_e2e_cpu.py's resume test).

Two runs that see the same prompts get the same rewards, whatever their rollouts sample. The values are
multiples of 1/16 below 2, so the batch sums and squared deviations SAW takes of 16 rows are exact in
any order: the history pools of two such runs agree bit for bit.
"""

REWARD_KEYS = ("even_sum", "sum_size")


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """The smoke task's "a+b=" prompts: whether a + b is even, and a + b / 16."""
    total = int(ground_truth)
    return {"score": 0.0, "even_sum": float(total % 2 == 0), "sum_size": total / 16}
