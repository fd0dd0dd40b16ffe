"""The CPU tool-calling experiment: SmolLM2-135M-Instruct on BFCL `simple_python` through TRL's GRPOTrainer.

    PYTHONPATH=. python recipes/tool_calling/cpu_experiment.py evaluate --model M --out base_eval.json
    PYTHONPATH=. python recipes/tool_calling/cpu_experiment.py train --model M --workdir W --method saw_gdpo --seed 0
    PYTHONPATH=. python recipes/tool_calling/cpu_experiment.py collect --workdir W --out results --methods ... --seeds ...

(from the checkout: saw_verl and recipes.common come from it.)

Task, split, prompt and rewards: cpu_task.py. Every method is `SAWGRPOTrainer`; the baselines have
`saw_dynamic=False`, which is exactly TRL's GRPOTrainer (tests/test_trl_trainer.py). Per seed, every
method sees the same model and the same data order (TRL's sampler is seeded by `seed`). A run writes
`runs/<method>_seed<seed>/log.jsonl` (every log entry as it is made: loss, grad norm, learning rate,
rewards, SAW weights, step time), `trainer_state.json` (TRL's log_history), `heldout.json` (greedy accuracy
on the 80 held-out questions after training) and `run.json` (steps done, wall times; written last), or
`failure.json` (step, reason, the parameter with a non-finite gradient) when the run dies
(recipes.common.run_control). A completion is cut after its first stop token (end of turn or a newline), so
the end-of-turn padding that follows a line's end is not trained on.

Training runs under bf16 autocast on float32 weights (TRL's GRPOConfig defaults to `bf16=True`; the committed
CPU grid trained so too), `--fp32` without autocast. `--device cuda` (used by gpu_grid.py) trains without
gradient checkpointing and scores the held-out questions under the same autocast; `--prompts-per-step` and
`--generations` set the batch; `--warmup-steps` ramps the learning rate up linearly; `--start-file` waits
for that file before training (the run's folder gets `ready` first), `--target-file` ends training at the
step count or deadline written there (re-read every step); `--plant-nonfinite-at N` makes step N's loss NaN
(a run that dies on purpose); `--data-dir` is bfcl_eval's data folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from recipes.common.run_control import (
    LOG_NAME, GuardedTrainer, RunLog, StepTarget, wait_for, write_failure,
)  # fmt: skip
from recipes.common.runs import collect_runs, run_dir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_task  # noqa: E402

# method -> (its SAWGRPOConfig options, the equal-weight method it is compared with seed by seed). A new arm is
# one more entry (e.g. SAW-GDPO with other SAW options), run by naming it in --methods / METHODS.
METHODS = {
    "grpo": ({"saw_estimator": "saw_grpo", "saw_dynamic": False}, None),
    "saw_grpo": ({"saw_estimator": "saw_grpo", "saw_dynamic": True}, "grpo"),
    "gdpo": ({"saw_estimator": "saw_gdpo", "saw_dynamic": False}, None),
    "saw_gdpo": ({"saw_estimator": "saw_gdpo", "saw_dynamic": True}, "gdpo"),
    "saw_gdpo_history": ({"saw_estimator": "saw_gdpo", "saw_dynamic": True, "saw_history_decay": 0.9}, "gdpo"),
}
# The step budget and shape, fixed before the grid ran (README, "CPU experiment").
PROMPTS_PER_STEP, GENERATIONS = 2, 4
MAX_COMPLETION_TOKENS = 48
LEARNING_RATE = 5e-5
MAX_GRAD_NORM = 1.0  # TRL's default, set here because the finite-gradient check runs where gradients are clipped
TEMPERATURE = 0.7  # at 1.0 the untrained model wrote a decodable call in ~1 of 10 samples
TRAINED_TOP_LAYERS = 10  # of 30 decoder layers; the rest, and the (tied) embeddings, stay frozen
EVAL_BATCH = 40


def stop_token_ids(tokenizer) -> list[int]:
    """End of turn and every token holding a newline: an answer is the call's one line (cpu_task's prompt)."""
    newline = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
    return [tokenizer.eos_token_id, *newline]


def tool_call_trainer():
    """SAWGRPOTrainer with the finite-gradient check, and completions cut after their first stop token.

    generate stops a row at any token of stop_token_ids and pads the finished row with the end-of-turn id;
    TRL's completion mask runs to the first end-of-turn id, so a row that stopped at a newline would train on
    one end-of-turn token it never sampled. The cut leaves exactly the sampled tokens (TRL then counts such a
    row as clipped in `completions/clipped_ratio`)."""
    from saw_verl.integrations.trl import SAWGRPOTrainer

    class ToolCallTrainer(GuardedTrainer, SAWGRPOTrainer):
        stop_ids: frozenset[int] = frozenset()

        def _generate_single_turn(self, *args, **kwargs):
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            return [cut_after_stop(ids, self.stop_ids) for ids in completion_ids], logprobs

    return ToolCallTrainer


def cut_after_stop(ids: list[int], stop_ids) -> list[int]:
    """`ids` up to and including its first stop token (all of it if none)."""
    return next((ids[: i + 1] for i, token in enumerate(ids) if token in stop_ids), ids)


def freeze_lower_layers(model) -> None:
    """Train only the top TRAINED_TOP_LAYERS decoder layers and the final norm (backward stops below them)."""
    layers = model.model.layers
    for param in model.parameters():
        param.requires_grad_(False)
    for module in (*layers[len(layers) - TRAINED_TOP_LAYERS :], model.model.norm):
        for param in module.parameters():
            param.requires_grad_(True)


def heldout_accuracy(model, tokenizer, entries: list[dict]) -> dict:
    """Greedy answers to `entries`: {"format", "correct"} means of cpu_task's two scores and "n" (on a CUDA
    model under bf16 autocast)."""
    import torch

    tokenizer.padding_side = "left"
    on_cuda = model.device.type == "cuda"
    scores = {"format": [], "correct": []}
    for start in range(0, len(entries), EVAL_BATCH):
        batch = entries[start : start + EVAL_BATCH]
        prompts = [cpu_task.prompt_text(e, tokenizer) for e in batch]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
            out = model.generate(
                **inputs, max_new_tokens=MAX_COMPLETION_TOKENS, do_sample=False, eos_token_id=stop_token_ids(tokenizer)
            )
        for entry, tokens in zip(batch, out[:, inputs["input_ids"].shape[1] :], strict=True):
            answer = cpu_task.ANSWER_PREFIX + tokenizer.decode(tokens, skip_special_tokens=True)
            scores["format"].append(cpu_task.format_score(answer, entry["function"]))
            scores["correct"].append(cpu_task.correct_score(answer, entry["function"], entry["ground_truth"]))
    return {key: sum(values) / len(values) for key, values in scores.items()} | {"n": len(entries)}


def load(model_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(model_path)


def evaluate(model_path: Path, out: Path, device: str = "cpu", data_dir: str | None = None) -> None:
    """Held-out greedy accuracy of the untrained model (the same for every run: one model, greedy)."""
    model, tokenizer = load(model_path)
    start = time.perf_counter()
    result = heldout_accuracy(model.to(device).eval(), tokenizer, cpu_task.split_entries(data_dir)[1])
    out.write_text(json.dumps(result | {"wall_s": round(time.perf_counter() - start, 1)}))


def train(model_path: Path, workdir: Path, method: str, seed: int, steps: int, prompts_per_step: int = PROMPTS_PER_STEP,
          generations: int = GENERATIONS, device: str = "cpu", data_dir: str | None = None, warmup_steps: int = 0,
          control: dict | None = None, fp32: bool = False) -> int:
    """One run: at most `steps` GRPO steps on the 320 training questions, then held-out greedy accuracy; 0, or 3
    if the run died (failure.json says why). `control` (all optional): "start_file", "target_file",
    "plant_nonfinite_at" (module docstring)."""
    from datasets import Dataset

    from saw_verl.integrations.trl import SAWGRPOConfig

    control = control or {}
    options = METHODS[method][0]
    out = run_dir(workdir, method, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "failure.json", "heldout.json", "ready"):  # written again by this run
        (out / name).unlink(missing_ok=True)
    start = time.perf_counter()
    model, tokenizer = load(model_path)
    freeze_lower_layers(model)
    args = SAWGRPOConfig(
        output_dir=str(out), **options, saw_reward_min=[0.0, 0.0],
        num_generations=generations, per_device_train_batch_size=prompts_per_step * generations,
        gradient_accumulation_steps=1, max_steps=steps, max_completion_length=MAX_COMPLETION_TOKENS,
        temperature=TEMPERATURE, learning_rate=LEARNING_RATE, lr_scheduler_type="constant_with_warmup",
        warmup_steps=warmup_steps, max_grad_norm=MAX_GRAD_NORM, weight_decay=0.0, beta=0.0, seed=seed,
        use_cpu=device == "cpu", logging_steps=1, logging_nan_inf_filter=False, save_strategy="no",
        report_to="none", disable_tqdm=True, generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
        bf16=not fp32, **({"gradient_checkpointing": False} if device == "cuda" else {}),
    )  # fmt: skip
    train_entries, heldout_entries = cpu_task.split_entries(data_dir)
    dataset = Dataset.from_list(cpu_task.dataset_rows(train_entries, tokenizer))
    stop = StepTarget(control.get("target_file"))
    trainer = tool_call_trainer()(
        model, [cpu_task.format_reward, cpu_task.correct_reward], args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[RunLog(out / LOG_NAME), stop],
    )  # fmt: skip
    trainer.stop_ids = frozenset(stop_token_ids(tokenizer))
    trainer.plant_nonfinite_at = control.get("plant_nonfinite_at")
    if control.get("start_file"):
        (out / "ready").write_text(str(time.time()))
        print(f"ready; waiting for {control['start_file']}", flush=True)
        wait_for(control["start_file"], timeout_s=1800)
    train_start = time.time()
    try:
        trainer.train()
    except Exception as error:  # noqa: BLE001 - whatever ends the run is recorded, then the run exits
        failure = write_failure(out, error, trainer.state.global_step + 1)
        print(f"run died at step {failure['step']}: {failure['message']}", flush=True)
        return 3
    train_end = time.time()
    trainer.save_state()
    heldout = heldout_accuracy(trainer.model.eval(), tokenizer, heldout_entries)
    (out / "heldout.json").write_text(json.dumps(heldout))
    run = {"method": method, "seed": seed, "steps": trainer.state.global_step, "max_steps": steps,
           "stopped_at_deadline": stop.stopped_at_deadline, "train_s": round(train_end - train_start, 1),
           "train_start_unix": round(train_start, 1), "train_end_unix": round(train_end, 1),
           "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    (out / "run.json").write_text(json.dumps(run))
    return 0


def heldout_table(runs: list[dict], untrained: dict) -> str:
    """Markdown: held-out greedy accuracy per run, and each SAW run minus its baseline on the same seed."""
    lines = [
        f"Untrained model: format {untrained['format']:.3f}, correct {untrained['correct']:.3f} (n = {untrained['n']})",
        "",
        "| method | seed | held-out format | held-out correct | paired Δ format | paired Δ correct |",
        "|---|---|---|---|---|---|",
    ]
    by_key = {(r["method"], r["seed"]): r for r in runs}
    for r in runs:
        base = by_key.get((METHODS[r["method"]][1], r["seed"]))
        deltas = [f"{r[k] - base[k]:+.3f}" if base else "" for k in ("heldout_format", "heldout_correct")]
        cells = [r["method"], str(r["seed"]), f"{r['heldout_format']:.3f}", f"{r['heldout_correct']:.3f}", *deltas]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def heldout_fields(folder: Path) -> dict:
    heldout = json.loads((folder / "heldout.json").read_text())
    return {"heldout_format": heldout["format"], "heldout_correct": heldout["correct"]}


def collect(workdir: Path, out: Path, methods: list[str], seeds: list[int]) -> int:
    """metrics.csv, runs.csv (with held-out accuracy after training) and heldout.md from every run; 1 if a run
    did not finish."""
    runs, missing = collect_runs(workdir, out, methods, seeds, cpu_task.REWARD_KEYS, heldout_fields)
    if runs:
        (out / "heldout.md").write_text(heldout_table(runs, json.loads((out / "heldout_untrained.json").read_text())))
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["evaluate", "train", "collect"])
    parser.add_argument("--model", type=Path, help="the Hugging Face folder prepare_smollm2.py wrote")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path, help="evaluate: the JSON to write; collect: the results folder")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=["gdpo", "saw_gdpo"])
    parser.add_argument("--method", choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prompts-per-step", type=int, default=PROMPTS_PER_STEP)
    parser.add_argument("--generations", type=int, default=GENERATIONS, help="rollouts per prompt")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data-dir", help="bfcl_eval's data folder (default: the installed bfcl_eval package's)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="train: linear learning-rate warm-up")
    parser.add_argument("--start-file", type=Path, help="train: wait for this file before the first step")
    parser.add_argument("--target-file", type=Path, help="train: stop at the step count written in this file")
    parser.add_argument("--plant-nonfinite-at", type=int, help="train: make this step's loss NaN (a run that dies)")
    parser.add_argument("--fp32", action="store_true", help="train: without bf16 autocast")
    args = parser.parse_args(argv)
    needed = {"evaluate": ("model", "out"), "train": ("model", "workdir", "method"), "collect": ("workdir", "out")}
    absent = [f"--{name}" for name in needed[args.command] if getattr(args, name) is None]
    if absent:
        parser.error(f"{args.command} needs {' '.join(absent)}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.command == "evaluate":
        evaluate(args.model.expanduser().resolve(), args.out, args.device, args.data_dir)
    elif args.command == "train":
        workdir = args.workdir.expanduser().resolve()
        control = {"start_file": args.start_file, "target_file": args.target_file,
                   "plant_nonfinite_at": args.plant_nonfinite_at}  # fmt: skip
        return train(args.model.expanduser().resolve(), workdir, args.method, args.seed, args.steps,
                     args.prompts_per_step, args.generations, args.device, args.data_dir, args.warmup_steps, control,
                     args.fp32)
    else:
        return collect(args.workdir.expanduser().resolve(), args.out, args.methods, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
