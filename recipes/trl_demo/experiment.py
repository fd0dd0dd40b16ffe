"""The CPU demo's copy-digit task through TRL's GRPOTrainer: one run, or the grid's bookkeeping.

    python recipes/trl_demo/experiment.py prepare --workdir W --seeds 0 1
    python recipes/trl_demo/experiment.py train --workdir W --out results --method saw_gdpo --seed 0 --steps 60

Same task, data, rewards, model (one random tiny Qwen2 per seed, shared by every method of that seed)
and batch shape as `recipes/cpu_demo` (16 prompts x 8 completions of up to 3 tokens per step, one
on-policy AdamW update at lr 5e-3, no KL). Every method is `SAWGRPOTrainer`; the baselines have
`saw_dynamic=False`, which is exactly plain `GRPOTrainer` (tested in tests/test_trl_trainer.py).
A run writes `runs/<method>_seed<seed>/trainer_state.json` (TRL's `log_history`) and `run.json`, then is
recorded in `--out` (`runs.csv`, and its steps in `metrics.csv`); a run `--out` already records as finished
with `--steps` steps is skipped, so a stopped grid resumes and a grid given more seeds runs only those.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from recipes.common.runs import finished_runs, record_run, run_dir, step_rows
from recipes.cpu_demo.reward import REWARD_KEYS, compute_score

# method -> (SAW estimator, dynamic weights)
METHODS = {
    "grpo": ("saw_grpo", False),
    "saw_grpo": ("saw_grpo", True),
    "gdpo": ("saw_gdpo", False),
    "saw_gdpo": ("saw_gdpo", True),
}


def model_dir(workdir: Path, seed: int) -> Path:
    return workdir / "models" / f"seed{seed}"


def prepare(workdir: Path, seeds: list[int]) -> None:
    """One random tiny Qwen2 per seed (kept if already built)."""
    from cpu_harness.assets import PLAIN_TEMPLATE, TinyQwen2, build_tiny_model

    for seed in seeds:
        if not (model_dir(workdir, seed) / "config.json").exists():
            build_tiny_model(model_dir(workdir, seed), TinyQwen2(seed=seed), chat_template=PLAIN_TEMPLATE)


def reward_functions() -> list:
    """The CPU demo's two reward components as TRL reward functions (named after their keys)."""
    def component(key):
        def reward(completions, ground_truth, **kwargs):
            return [compute_score(None, c, gt)[key] for c, gt in zip(completions, ground_truth, strict=True)]

        reward.__name__ = key
        return reward

    return [component(key) for key in REWARD_KEYS]


def train_dataset():
    """The CPU demo's 4096 training prompts "copy D" as a TRL prompt dataset with a ground_truth column."""
    from datasets import Dataset

    from recipes.cpu_demo.prepare_data import copy_digit_rows  # torch and transformers, through cpu_harness

    rows = copy_digit_rows(4096, "train")
    return Dataset.from_list(
        [{"prompt": row["prompt"][0]["content"], "ground_truth": row["reward_model"]["ground_truth"]} for row in rows]
    )


def train(workdir: Path, out: Path, method: str, seed: int, steps: int) -> None:
    """One run, unless `out` records it as finished: trainer_state.json and run.json (wall time) into its run
    folder, then its record in `out`."""
    if (method, seed) in finished_runs(out, steps):
        print(f"{method} seed {seed}: already finished in {out}, skipped")
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from saw_verl.integrations.trl import SAWGRPOConfig, SAWGRPOTrainer

    torch.set_num_threads(1)
    estimator, dynamic = METHODS[method]
    folder = run_dir(workdir, method, seed)
    (folder / "run.json").unlink(missing_ok=True)  # written again only if this run finishes
    start = time.perf_counter()
    args = SAWGRPOConfig(
        output_dir=str(folder), saw_estimator=estimator, saw_dynamic=dynamic, saw_reward_min=[0.0, 0.0],
        num_generations=8, per_device_train_batch_size=128, gradient_accumulation_steps=1, max_steps=steps,
        max_completion_length=3, temperature=1.0, learning_rate=5e-3, lr_scheduler_type="constant",
        weight_decay=0.01, beta=0.0, seed=seed, use_cpu=True, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir(workdir, seed), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir(workdir, seed))
    trainer = SAWGRPOTrainer(model, reward_functions(), args=args, train_dataset=train_dataset(),
                             processing_class=tokenizer)
    trainer.train()
    trainer.save_state()
    run = {"method": method, "seed": seed, "steps": steps, "wall_s": round(time.perf_counter() - start, 1)}
    (folder / "run.json").write_text(json.dumps(run))
    record_run(out, run, step_rows(folder / "trainer_state.json", method, seed, REWARD_KEYS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "train"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="train: the grid's folder, where runs.csv and metrics.csv go")
    parser.add_argument("--method", choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    workdir = args.workdir.expanduser().resolve()
    if args.command == "prepare":
        prepare(workdir, args.seeds)
    else:
        if args.method is None or args.out is None:
            parser.error("train needs --method and --out")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        train(workdir, args.out.expanduser().resolve(), args.method, args.seed, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
