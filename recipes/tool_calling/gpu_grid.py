"""The GPU tool-calling grid: every arm x seed on SmolLM2-135M-Instruct at once on one GPU, one command.

    python recipes/tool_calling/gpu_grid.py --model MODEL --data-dir BFCL --workdir W --out OUT --end-unix T \
        [--methods gdpo saw_gdpo] [--seeds 0 1 2] [--device cuda] [--plant-nonfinite RUN:STEP] ...

`run_gpu_grid.sh` converts the model and calls this. Every run is its own process (`cpu_experiment.py train`:
the CPU grid's task, rewards, trainer and run folder, here `--device cuda`), so that each run's Python loop,
which launches its kernels, has a CPU core of its own. The steps:

1. the environment (torch, transformers, trl, datasets, accelerate, saw_verl: versions and origins; the GPU);
2. every run's process starts (model, data, trainer) and waits at a start barrier, while this process scores
   the untrained model on the 80 held-out questions; the barrier opens when every run is ready (or dead)
   and the evaluation is done, so nothing else uses the GPU while steps are timed;
3. the step count adapts to a common target: once every live run has done `--timing-skip` +
   `--timing-rounds` steps, and again after every step, T = the median wall time of the last
   `--timing-rounds` rounds (a round: from the moment every live run had finished step s-1 to the moment
   every live run has finished step s), and the target N = steps done + floor(time left / (`--safety` T)),
   time left = up to the training deadline (`--end-unix` - `--reserve-s` - the evaluation reserve, twice
   the untrained evaluation's time + 5 s: the runs evaluate side by side), N between the leader's step + 1
   and `--max-steps`; every run reads target.json after each of its steps and stops at N. A run still
   training at the deadline stops after its step and is marked `stopped_at_deadline`;
4. each run ends with its held-out evaluation; a run that dies writes failure.json (recipes.common.run_control);
5. the outputs (grid_outputs.write_outputs), whatever died: metrics.csv, runs.csv, summary.md, heldout.md,
   the figures, grid.json, and each run's log.jsonl, failure.json and the end of its process log under runs/.

Exit code: 0 when the runs that died are exactly the `--expect-dead` ones (none by default), else 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import cpu_experiment  # noqa: E402
import grid_outputs  # noqa: E402
from evaluate_bfcl import bfcl_data_dir  # noqa: E402

from recipes.common.run_control import FAILURE_NAME, LOG_NAME, read_log, write_target  # noqa: E402

EXPERIMENT = HERE / "cpu_experiment.py"
ENVIRONMENT = ("torch", "transformers", "trl", "datasets", "accelerate", "saw_verl")


def environment(device: str) -> dict:
    """Version and origin of every package the runs import, and the device; SystemExit naming what to install."""
    import importlib

    found, missing = {}, []
    for name in ENVIRONMENT:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            missing.append(f"{name} ({error})")
            continue
        found[name] = {"version": getattr(module, "__version__", "-"), "from": str(Path(module.__file__).parent)}
    if missing:
        raise SystemExit("missing: " + "; ".join(missing) + ". The grid needs `pip install trl datasets` next to "
                         "torch, transformers and accelerate, and the checkout on PYTHONPATH (saw_verl)")  # fmt: skip
    import torch

    return {"packages": found, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}


def launch(argv: list[str], log: Path) -> subprocess.Popen:
    """Start one run's process, its output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)  # saw_verl, recipes
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": path}
    with open(log, "w") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def step_ends(log_path: Path) -> dict[int, float]:
    """{step: wall-clock time its log entry was written} of one run's log.jsonl (training steps only)."""
    return {e["step"]: e["time"] for e in read_log(log_path) if "step_time" in e}


def round_times(ends: list[dict[int, float]], start: float) -> list[tuple[int, float]]:
    """[(s, seconds from the moment every run had finished step s-1, or `start`, to the moment every run has
    finished step s)] for every step all of `ends` have done."""
    done = min((max(e, default=0) for e in ends), default=0)
    previous, rounds = start, []
    for step in range(1, done + 1):
        finished = max(e[step] for e in ends)
        rounds.append((step, finished - previous))
        previous = finished
    return rounds


def choose_target(rounds: list[tuple[int, float]], leader: int, seconds_left: float, skip: int, window: int,
                  safety: float, max_steps: int) -> dict | None:
    """The common step count from the rounds so far, or None while fewer than skip + window rounds exist:
    {"after_step", "step_s" (median of the last `window` rounds after the first `skip`), "steps" (at least the
    leader's step + 1, at most max_steps)}."""
    timed = [seconds for step, seconds in rounds if step > skip][-window:]
    if len(timed) < window:
        return None
    step_s = statistics.median(timed)
    done = rounds[-1][0]
    steps = done + math.floor(max(seconds_left, 0.0) / (safety * step_s))
    return {"after_step": done, "step_s": round(step_s, 3), "steps": min(max_steps, max(leader + 1, steps))}


def run_all(args, names: list[str], workdir: Path, timings: dict) -> dict:
    """Steps 2-4 of the module docstring -> {"untrained", "release_unix", "train_deadline_unix", "decisions",
    "exit_codes"}."""
    start_file, target_file = workdir / "start", workdir / "target.json"
    for stale in (start_file, target_file):
        stale.unlink(missing_ok=True)
    procs = {name: start_run(args, name, workdir, start_file, target_file) for name in names}
    say(f"{len(names)} runs started; the untrained model's held-out evaluation meanwhile")
    untrained = workdir / "collected" / "heldout_untrained.json"
    began = time.time()
    cpu_experiment.evaluate(args.model, untrained, args.device, str(args.data_dir))
    timings["untrained_eval_s"] = round(time.time() - began, 1)
    deadline = args.end_unix - args.reserve_s - (2 * timings["untrained_eval_s"] + 5)
    write_target(target_file, {"deadline_unix": round(deadline, 2)})
    folders = {name: cpu_experiment.run_dir(workdir, *split_name(name)) for name in names}
    while time.time() < deadline and not all((folders[n] / "ready").exists() or procs[n].poll() is not None
                                             for n in names):  # fmt: skip
        time.sleep(0.1)
    release = time.time()
    start_file.write_text(str(release))
    timings["ready_s"] = round(release - timings["grid_start_unix"], 1)
    say(f"every run ready after {timings['ready_s']:.0f} s; the start barrier opens")
    decisions = steer(args, procs, folders, release, deadline, target_file)
    timings["runs_s"] = round(time.time() - release, 1)
    return {"untrained": json.loads(untrained.read_text()), "release_unix": round(release, 2),
            "train_deadline_unix": round(deadline, 2), "decisions": decisions,
            "exit_codes": {n: procs[n].returncode for n in names}}  # fmt: skip


def start_run(args, name: str, workdir: Path, start_file: Path, target_file: Path) -> subprocess.Popen:
    """One run's process (cpu_experiment.py train), waiting at the start barrier."""
    method, seed = split_name(name)
    argv = [sys.executable, str(EXPERIMENT), "train", "--model", str(args.model), "--workdir", str(workdir),
            "--method", method, "--seed", str(seed), "--steps", str(args.max_steps), "--device", args.device,
            "--data-dir", str(args.data_dir), "--prompts-per-step", str(args.prompts_per_step),
            "--generations", str(args.generations), "--warmup-steps", str(args.warmup_steps),
            "--start-file", str(start_file), "--target-file", str(target_file)]  # fmt: skip
    planted = dict(args.plant_nonfinite)
    if name in planted:
        argv += ["--plant-nonfinite-at", str(planted[name])]
    return launch(argv, workdir / "logs" / f"{name}.log")


def steer(args, procs: dict, folders: dict, release: float, deadline: float, target_file: Path) -> list[dict]:
    """Until every process has ended: the common step count after every round (choose_target, written to
    `target_file`); a process still running at the end of the time is killed. Returns the decisions."""
    decisions, killed = [], set()
    while any(p.poll() is None for p in procs.values()):
        alive = [n for n in procs if procs[n].poll() is None and not (folders[n] / "run.json").exists()
                 and not (folders[n] / FAILURE_NAME).exists()]
        if time.time() > args.end_unix - args.reserve_s / 2:
            for name in set(alive) - killed:
                procs[name].kill()
                killed.add(name)
                say(f"{name} killed: still running at the end of the time")
        ends = [step_ends(folders[n] / LOG_NAME) for n in alive]
        leader = max((max(e, default=0) for e in ends), default=0)
        if ends and leader < (decisions[-1]["steps"] if decisions else args.max_steps):
            decision = choose_target(round_times(ends, release), leader, deadline - time.time(), args.timing_skip,
                                     args.timing_rounds, args.safety, args.max_steps)  # fmt: skip
            if decision and (not decisions or decision["steps"] != decisions[-1]["steps"]):
                now = time.time()
                predicted_end = now + (decision["steps"] - decision["after_step"]) * decision["step_s"]
                decision |= {"time_unix": round(now, 2), "alive": len(alive),
                             "predicted_train_end_unix": round(predicted_end, 1)}  # fmt: skip
                decisions.append(decision)
                write_target(target_file, {"steps": decision["steps"], "deadline_unix": round(deadline, 2)})
                say(f"after step {decision['after_step']}: {decision['step_s']:.2f} s per step ({len(alive)} runs) "
                    f"-> {decision['steps']} steps")  # fmt: skip
        time.sleep(0.5)
    return decisions


def split_name(name: str) -> tuple[str, int]:
    method, seed = name.rsplit("_seed", 1)
    return method, int(seed)


def say(text: str) -> None:
    print(f"{time.strftime('%T')} {text}", flush=True)


def parse_plant(text: str) -> tuple[str, int]:
    name, sep, step = text.rpartition(":")
    if not sep or not step.isdigit():
        raise argparse.ArgumentTypeError(f"expected RUN:STEP (e.g. saw_gdpo_seed1:2), got {text!r}")
    return name, int(step)


def main(argv: list[str] | None = None) -> int:
    from recipes.common import analyze

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the folder prepare_smollm2.py wrote")
    parser.add_argument("--data-dir", type=Path, help="bfcl_eval's data folder (default: the installed package's)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--end-unix", type=float, required=True, help="when the whole grid must be done")
    parser.add_argument("--methods", nargs="+", choices=list(cpu_experiment.METHODS), default=["gdpo", "saw_gdpo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--timing-skip", type=int, default=2, help="first steps left out of the step time")
    parser.add_argument("--timing-rounds", type=int, default=5, help="rounds in the median step time")
    parser.add_argument("--safety", type=float, default=1.05, help="the target leaves this share of slack")
    parser.add_argument("--reserve-s", type=float, default=30.0, help="kept after the runs for the outputs")
    parser.add_argument("--plant-nonfinite", type=parse_plant, action="append", default=[],
                        help="RUN:STEP: that run's loss is NaN at that step (a run that dies on purpose)")
    parser.add_argument("--expect-dead", nargs="*", default=[], help="runs that should die (the planted ones)")
    parser.add_argument("--threshold", type=analyze.parse_threshold, action="append", default=None)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--final-steps", type=int, default=10)
    parser.add_argument("--title", default="Tool calling (GPU)")
    args = parser.parse_args(argv)
    args.threshold = dict(args.threshold or [("format_reward", 0.8), ("correct_reward", 0.1)])
    args.model, args.workdir, args.out = args.model.resolve(), args.workdir.resolve(), args.out.resolve()
    args.data_dir = Path(bfcl_data_dir(args.data_dir and str(args.data_dir)))
    timings = {"grid_start_unix": round(time.time(), 2)}
    env = environment(args.device)
    say(f"environment: {env['device']}; " + ", ".join(f"{k} {v['version']}" for k, v in env["packages"].items()))
    for folder in (args.workdir / "collected", args.out):
        folder.mkdir(parents=True, exist_ok=True)
    names = [f"{m}_seed{s}" for s in args.seeds for m in args.methods]
    unknown = sorted(set(args.expect_dead) - set(names))
    if unknown:
        parser.error(f"--expect-dead names runs that are not in the grid: {unknown}")
    outcome = run_all(args, names, args.workdir, timings)
    return exit_code(grid_outputs.write_outputs(args, names, outcome, env, timings), args.expect_dead)


def exit_code(dead: list[str], expected: list[str]) -> int:
    """0 when the runs that died are exactly the expected ones, else 1 (saying which differ)."""
    unexpected, survived = sorted(set(dead) - set(expected)), sorted(set(expected) - set(dead))
    say(f"runs that died: {', '.join(dead) or 'none'}" + (f"; unexpected: {unexpected}" if unexpected else "")
        + (f"; expected to die but did not: {survived}" if survived else ""))  # fmt: skip
    return 1 if unexpected or survived else 0


if __name__ == "__main__":
    sys.exit(main())
