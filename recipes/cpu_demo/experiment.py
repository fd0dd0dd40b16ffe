"""Run the CPU demo: estimators x seeds through verl's real trainer on CPU, collecting per-step metrics.

    python recipes/cpu_demo/experiment.py --workdir /tmp/saw_cpu_demo --out results \
        --methods gdpo saw_gdpo --seeds 0 --steps 60 --parallel 2

Sets up from scratch under ``--workdir`` (the data, and one random tiny Qwen2 per seed: the seed
varies the initialisation, the data order and the sampling; every method of a seed starts from the
same model), then runs each (method, seed) with ``python -m verl.trainer.main_ppo`` through
``cpu_harness`` and the recipe's ``config/cpu_demo.yaml``. A run's verl log, step metrics and rollouts (one
JSONL per step) go to ``--workdir``/runs/<method>_seed<seed>/. As each run ends it is recorded in ``--out``:
``runs.csv`` (steps, exit code, wall time, peak memory) and ``metrics.csv`` (one row per method, seed and step,
from verl's ``file`` logger). Runs ``--out`` already records as finished with ``--steps`` steps are skipped, so
a stopped grid resumes and a grid given more seeds runs only those.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

from cpu_harness.assets import PLAIN_TEMPLATE, TinyQwen2, build_tiny_model, write_rl_parquet
from cpu_harness.launcher import RunResult, run_main_ppo
from recipes.common.runs import finished_runs, record_run
from recipes.cpu_demo.prepare_data import copy_digit_rows

RECIPE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = RECIPE_DIR / "config"
CONFIG_NAME = "cpu_demo"



class Method(NamedTuple):
    """estimator: verl's algorithm.adv_estimator. saw: the algorithm.saw options the run overrides (SAW's, or the
    rival's own; a rival's run replaces the block). prefix: its metric namespace (docs/estimators.md)."""

    estimator: str
    saw: dict
    prefix: str = "saw"


# The baselines grpo / gdpo are SAW's estimators with equal weights (algorithm.saw.dynamic=false), i.e. plain
# multi-reward GRPO / GDPO through SAW's code. The rivals of the registry run under their verl names:
# saw_verl_gdpo is the registry's `gdpo` (verl 0.9.1's gdpo, the same math as `gdpo` here through its own code);
# gd2po is the hard filter, gd2po_snr the SNR filter with the authors' script's tau = 0.8.
METHODS = {
    "grpo": Method("saw_grpo", {"dynamic": False, "history_decay": 0.0}),
    "saw_grpo": Method("saw_grpo", {"dynamic": True, "history_decay": 0.0}),
    "gdpo": Method("saw_gdpo", {"dynamic": False, "history_decay": 0.0}),
    "saw_gdpo": Method("saw_gdpo", {"dynamic": True, "history_decay": 0.0}),
    "saw_gdpo_history": Method("saw_gdpo", {"dynamic": True, "history_decay": 0.9}),
    "saw_verl_gdpo": Method("saw_verl_gdpo", {}, "gdpo"),
    "mo_grpo": Method("mo_grpo", {}, "mo_grpo"),
    "corr_grpo": Method("corr_grpo", {}, "corr_grpo"),
    "gd2po": Method("gd2po", {}, "gd2po"),
    "gd2po_snr": Method("gd2po", {"tau": 0.8}, "gd2po"),
}
GATES = ("keep_ratio", "conflict_ratio", "group_keep_ratio_mean", "correlation_sum_mean")  # rivals' batch metrics


def reward_keys() -> list[str]:
    """The reward keys of the recipe config (``algorithm.gdpo_reward_keys``)."""
    return list(OmegaConf.load(CONFIG_DIR / f"{CONFIG_NAME}.yaml").algorithm.gdpo_reward_keys)


def prepare(workdir: Path, seeds: list[int]) -> None:
    """Write the data and one tiny model per seed under ``workdir`` (kept if already there)."""
    for split, size in (("train", 4096), ("test", 64)):
        path = workdir / "data" / f"{split}.parquet"
        if not path.exists():
            write_rl_parquet(copy_digit_rows(size, split), path)
    for seed in seeds:
        model_dir = workdir / "models" / f"seed{seed}"
        if not (model_dir / "config.json").exists():
            build_tiny_model(model_dir, TinyQwen2(seed=seed), chat_template=PLAIN_TEMPLATE)


def run_overrides(workdir: Path, method: str, seed: int, steps: int) -> list[str]:
    """Hydra overrides of one run on top of ``config/cpu_demo.yaml``."""
    chosen = METHODS[method]
    if chosen.prefix == "saw":
        saw_block = [f"algorithm.saw.{name}={str(value).lower()}" for name, value in chosen.saw.items()]
    else:  # the recipe's SAW options would do nothing for a rival (refused): its own options only
        saw_block = ["~algorithm.saw"] + [f"+algorithm.saw.{name}={value}" for name, value in chosen.saw.items()]
    return [
        f"data.train_files={workdir / 'data' / 'train.parquet'}",
        f"data.val_files={workdir / 'data' / 'test.parquet'}",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={workdir / 'models' / f'seed{seed}'}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"reward.custom_reward_function.path={RECIPE_DIR / 'reward.py'}",
        f"algorithm.adv_estimator={chosen.estimator}",
        *saw_block,
        f"trainer.total_training_steps={steps}",
        f"trainer.experiment_name={method}_seed{seed}",
        f"trainer.default_local_dir={workdir / 'checkpoints' / f'{method}_seed{seed}'}",
        f"trainer.rollout_data_dir={workdir / 'runs' / f'{method}_seed{seed}' / 'rollouts'}",
    ]


def run_one(workdir: Path, method: str, seed: int, steps: int, timeout_s: float, keys: list[str]) -> RunResult:
    """One training run; its verl log and step metrics go to ``workdir/runs/<method>_seed<seed>/``.

    While it trains, each step's SAW weights and reward means are printed as verl logs them.
    """
    run_dir = workdir / "runs" / f"{method}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "verl_metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics_path))
    finished = threading.Event()
    printer = threading.Thread(target=print_steps, args=(metrics_path, method, seed, keys, finished))
    printer.start()
    try:
        return run_main_ppo(run_overrides(workdir, method, seed, steps), run_dir / "train.log", timeout_s,
                            config_path=CONFIG_DIR, config_name=CONFIG_NAME, env=env, cwd=run_dir)
    finally:
        finished.set()
        printer.join()


def print_steps(metrics_path: Path, method: str, seed: int, keys: list[str], finished: threading.Event) -> None:
    """Print one line per training step of a running job, as its verl ``file`` logger appends them."""
    printed = 0
    while True:
        done = finished.wait(1.0)
        try:
            rows = step_rows(metrics_path, method, seed, keys) if metrics_path.exists() else []
        except json.JSONDecodeError:  # a line verl is still writing: read it on the next tick
            continue
        for row in rows[printed:]:
            weights = " ".join(f"{key}={row[f'weight/{key}']:.3f}" for key in keys)
            rewards = " ".join(f"{key}={row[key]:.3f}" for key in keys)
            gates = "".join(f" | {gate} {row[f'gate/{gate}']:.3f}" for gate in GATES if row[f"gate/{gate}"] is not None)
            print(f"{method} seed {seed} step {row['step']}: weights {weights} | reward means {rewards}{gates}",
                  flush=True)
        printed = len(rows)
        if done:
            return


def step_rows(verl_metrics: Path, method: str, seed: int, keys: list[str]) -> list[dict]:
    """Per-step rows (reward means, weights: SAW's, or a rival's static ones; the rivals' gates, None where the
    method has none; step time) from one run's verl ``file`` logger output."""
    prefix = METHODS[method].prefix
    rows = []
    for line in verl_metrics.read_text().splitlines():
        record = json.loads(line)
        data = record["data"]
        if f"{prefix}/{keys[0]}/mean" not in data:  # e.g. a validation-only record
            continue
        row = {"method": method, "seed": seed, "step": record["step"]}
        row.update({key: data[f"{prefix}/{key}/mean"] for key in keys})
        row.update({f"weight/{key}": data[f"{prefix}/{key}/weight"] for key in keys})
        row.update({f"gate/{gate}": data.get(f"{prefix}/{gate}") for gate in GATES})
        row["step_time_s"] = data.get("timing_s/step")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["gdpo", "saw_gdpo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = parser.parse_args(argv)
    workdir = args.workdir.expanduser().resolve()
    prepare(workdir, args.seeds)
    keys = reward_keys()
    done = finished_runs(args.out, args.steps)
    jobs = [(method, seed) for seed in args.seeds for method in args.methods if (method, seed) not in done]
    if len(jobs) < len(args.seeds) * len(args.methods):
        print(f"{len(args.seeds) * len(args.methods) - len(jobs)} runs already finished in {args.out}: skipped",
              flush=True)

    def run(job):
        method, seed = job
        result = run_one(workdir, method, seed, args.steps, args.timeout, keys)
        print(f"{method} seed {seed}: exit {result.returncode}, {result.wall_s:.0f} s, "
              f"peak {result.peak_pss_bytes / 2**30:.2f} GiB PSS, log {result.log_path}", flush=True)
        run_row = {"method": method, "seed": seed, "steps": args.steps, "returncode": result.returncode,
                   "wall_s": round(result.wall_s, 1), "peak_pss_gib": round(result.peak_pss_bytes / 2**30, 2)}
        metrics_path = result.log_path.parent / "verl_metrics.jsonl"
        record_run(args.out, run_row, step_rows(metrics_path, method, seed, keys) if result.returncode == 0 else [])
        return job, result

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        outcomes = list(pool.map(run, jobs))
    failed = [f"{method} seed {seed} ({result.log_path})" for (method, seed), result in outcomes if result.returncode]
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
