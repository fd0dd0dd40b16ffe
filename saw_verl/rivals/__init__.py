"""The multi-reward estimators beside SAW (docs/estimators.md), on the torch path: vectorized, statistics in float64.

Each module holds one estimator: a function (rewards (N, K), group_ids (N,), response_mask (N, L), cfg, num_groups,
its own options) -> EstimatorResult. saw_verl.registry lists them; saw_verl.compute_advantages runs them by name.
"""
