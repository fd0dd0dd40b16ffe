"""Every estimator of the registry through verl's own `ray_trainer.compute_advantage`, side by side with verl
0.9.1's `gdpo`, in one process on one verl batch (CPU, torch path).

    python -m benchmarks.bench_registry_cpu [--threads 1] [--rounds 7]

The batch is a DataProto as the legacy trainer holds it before compute_advantage (N=4096, L=1024, K=3, groups
of 16 shuffled, int64 response_mask, reward columns and uid in non_tensor_batch). All calls alternate, the order
rotating every round, so that every estimator sees the same disturbances (this machine is shared): report the
ratios of one run. Targets (issue #25): every estimator >= 10x faster than verl's gdpo, within 2x of saw_gdpo.
Writes results/registry_cpu.json and .md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.providers import make_workload
from benchmarks.timing import report_header, run_side_by_side

SHAPE = (4096, 1024, 3)
RESULTS = Path(__file__).parent / "results"
# shown name -> verl's adv_estimator (verl's own gdpo first: the baseline)
ESTIMATORS = {"verl gdpo": "gdpo", "saw_grpo": "saw_grpo", "saw_gdpo": "saw_gdpo",
              "gdpo (saw_verl_gdpo)": "saw_verl_gdpo", "mo_grpo": "mo_grpo", "corr_grpo": "corr_grpo",
              "gd2po": "gd2po", "gd2po tau=0.8": "gd2po"}


def calls(n: int, length: int, k: int) -> dict:
    """shown name -> zero-argument call of ray_trainer.compute_advantage on the same DataProto."""
    import saw_verl.integrations.verl.plugin  # noqa: F401  (registers the estimators, as verl's entry point does)
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    work = make_workload(n, length, k)
    data = DataProto.from_dict(
        tensors={**work.batch, "response_mask": work.response_mask, "token_level_rewards": work.token_level_rewards,
                 "responses": torch.zeros_like(work.response_mask)},
        non_tensors=work.non_tensor_batch,
    )
    out = {}
    for shown, estimator in ESTIMATORS.items():
        algorithm = {"adv_estimator": estimator, "gdpo_reward_keys": list(work.keys), "gdpo_reward_weights": None,
                     "norm_adv_by_std_in_grpo": True}
        if shown.endswith("tau=0.8"):
            algorithm["saw"] = {"tau": 0.8}
        config = OmegaConf.create(algorithm)
        out[shown] = lambda estimator=estimator, config=config: compute_advantage(data, estimator, config=config)
    return out


def markdown(report: dict) -> str:
    timings = report["timings"]
    verl, saw = timings["verl gdpo"]["median_ms"], timings["saw_gdpo"]["median_ms"]
    lines = [
        *report_header("Every registry estimator through verl's compute_advantage (CPU)", report, "estimators"),
        "| estimator | median ms | fastest ms | faster than verl gdpo | time / saw_gdpo |",
        "|---|---|---|---|---|",
    ]
    for name, t in timings.items():
        lines.append(f"| {name} | {t['median_ms']:.1f} | {t['min_ms']:.1f} | {verl / t['median_ms']:.1f}x "
                     f"| {t['median_ms'] / saw:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    run_side_by_side(__doc__, "benchmarks.bench_registry_cpu", "registry_cpu", calls, SHAPE, markdown, RESULTS)


if __name__ == "__main__":
    main()
