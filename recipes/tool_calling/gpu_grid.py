"""The GPU tool-calling grid: GDPO vs GDPO + SAW on SmolLM2-135M-Instruct, every run at once on one GPU.

    python recipes/tool_calling/gpu_grid.py grid --site SITE --model MODEL --data-dir BFCL --workdir W --out OUT \
        --end-unix T [--seeds 0 1 2 3 4] [--methods gdpo saw_gdpo] [--device cuda] ...
    python recipes/tool_calling/gpu_grid.py experiment --site SITE -- train|evaluate ...   # cpu_experiment.py

`run_gpu_grid.sh` calls `grid` once the GGUF is reassembled and the wheels unpacked. Every run is a separate
process (`worker`) that calls `cpu_experiment.py train` (the CPU grid's run: same task, rewards, trainer and
run folder) twice, here with `--device cuda`: its calibration run, then its run, paying its imports once. A
run's loop is bound by the CPU that launches its kernels, so separate processes (one per CPU core) run side
by side where one process would serialise them. The steps:

0. `gpu_bundle.check` (every module the runs import, with its version and origin; stops if one is missing)
   and, with `--gguf`, the model folder (`prepare_smollm2.convert`);
1. calibration: every run of the grid for `--calibration-steps` steps, all at once, while this process
   scores the untrained model on the held-out questions; per-step time T = the slowest run's median step
   time (its first step left out), start-up U and evaluation E = the slowest run's;
2. the step count: floor(A / (1.1 T)), with A = min(`--train-s`, time to `--end-unix` - `--reserve-s` - U - E),
   between 1 and `--max-steps`, the same for every run, fixed before the runs start;
3. the runs, all at once (each worker starts its run when the step count is written); a run still training
   at `--end-unix` - `--reserve-s` - E stops there and says so; each ends with its held-out greedy
   evaluation (80 questions, batched);
4. `cpu_experiment.collect` (metrics.csv, runs.csv, heldout.md), `recipes.common.analyze`'s tables
   (summary.md), the figures (curves and weights: PNG through recipes.common.analyze and `saw_verl.plot` where
   matplotlib imports, else SVG drawn here), and grid.json (settings, calibration, step count, timings, the
   wheel check) in `--out`, at most 8 files.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
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
import gpu_bundle  # noqa: E402

SAFETY = 1.1  # the step count leaves 10 % of the training time for steps slower than the calibration's
OUT_FILES = ("metrics.csv", "runs.csv", "summary.md", "heldout.md", "grid.json")
TITLE = "SmolLM2-135M on BFCL simple_python (TRL, GPU)"


def launch(argv: list[str], log: Path) -> dict:
    """Start one process, its output to `log`; returns {"proc", "log", "start"}."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return {"proc": proc, "log": log, "start": time.time()}


def wait_all(jobs: dict[str, dict]) -> tuple[dict[str, float], list[str]]:
    """Wait for every job -> (each one's wall seconds, start to exit; the failed ones, the end of their logs
    printed)."""
    walls, failed = {}, []
    while len(walls) < len(jobs):
        for name, job in jobs.items():
            if name in walls or job["proc"].poll() is None:
                continue
            walls[name] = round(time.time() - job["start"], 1)
            if job["proc"].returncode != 0:
                failed.append(name)
                tail = job["log"].read_text(errors="replace").splitlines()[-25:]
                print(f"--- {name} failed (exit {job['proc'].returncode}); end of {job['log']}:\n" + "\n".join(tail),
                      flush=True)  # fmt: skip
        time.sleep(0.2)
    return walls, failed


def wait_calibrated(jobs: dict[str, dict], calibration_dir: Path) -> dict[str, Path]:
    """Wait until every job's calibration run has written its run.json; {name: its run folder}. SystemExit if a
    job ends before (the end of its log shown)."""
    folders = {name: calibration_dir / "runs" / name for name in jobs}
    while not all((folder / "run.json").exists() for folder in folders.values()):
        for name, job in jobs.items():
            if job["proc"].poll() is not None and not (folders[name] / "run.json").exists():
                tail = job["log"].read_text(errors="replace").splitlines()[-25:]
                raise SystemExit(f"{name} ended during calibration (exit {job['proc'].returncode}); end of "
                                 f"{job['log']}:\n" + "\n".join(tail))  # fmt: skip
        time.sleep(0.2)
    return folders


def worker(argv: list[str]) -> int:
    """One run's process: its calibration run, then (when the step-count file appears) its run, one import."""
    parser = argparse.ArgumentParser(prog="gpu_grid.py worker")
    for name in ("--site", "--calibration-workdir", "--steps-file", "--workdir"):
        parser.add_argument(name, default="")
    parser.add_argument("--calibration-steps", type=int, required=True)
    parser.add_argument("--wait-s", type=float, default=1800.0, help="give up waiting for the step count after this")
    split = argv.index("--")
    args, run = parser.parse_args(argv[:split]), argv[split + 1 :]
    gpu_bundle.use_site(args.site or None)
    experiment = _cpu_experiment()
    calibration = ["--workdir", args.calibration_workdir, "--steps", str(args.calibration_steps)]
    code = experiment.main(["train", *run, *calibration])
    if code:
        return code
    gc.collect()  # the calibration run's model, optimiser and trainer are garbage now
    import torch

    live = sum(isinstance(o, torch.nn.Module) and type(o).__name__.endswith("ForCausalLM") for o in gc.get_objects())
    if "cuda" in run:
        torch.cuda.empty_cache()
        print(f"after calibration: {torch.cuda.memory_allocated() / 2**20:.0f} MiB allocated on the GPU", flush=True)
    print(f"after calibration: {live} causal LM(s) alive", flush=True)
    steps_file, waited = Path(args.steps_file), time.time()
    while not steps_file.exists():
        if time.time() - waited > args.wait_s:
            raise SystemExit(f"no step count in {steps_file} after {args.wait_s:.0f} s")
        time.sleep(0.1)
    plan = json.loads(steps_file.read_text())
    return experiment.main(["train", *run, "--workdir", args.workdir, "--steps", str(plan["steps"]),
                            "--deadline-unix", str(plan["deadline_unix"])])  # fmt: skip


def step_times(state_path: Path) -> list[float]:
    """TRL's per-step `step_time` from a run's trainer_state.json, in step order."""
    history = json.loads(state_path.read_text())["log_history"]
    return [entry["step_time"] for entry in sorted(history, key=lambda e: e["step"]) if "step_time" in entry]


def calibration_summary(runs: dict[str, dict]) -> dict:
    """runs: name -> {"step_times", "train_wall_s", "wall_s"} of its calibration run -> per-step time T (median
    without the first step), start-up U (model load and trainer set-up: train_wall_s - the steps) and held-out
    evaluation E (wall_s - train_wall_s): the slowest run's each."""
    per_run = {}
    for name, run in runs.items():
        times = run["step_times"]
        steady = times[1:] or times
        per_run[name] = {
            "step_s": statistics.median(steady), "eval_s": round(run["wall_s"] - run["train_wall_s"], 1),
            "startup_s": round(run["train_wall_s"] - sum(times), 1), "step_times": [round(t, 3) for t in times],
        }  # fmt: skip
    return {
        "step_s": max(r["step_s"] for r in per_run.values()),
        "startup_s": max(r["startup_s"] for r in per_run.values()),
        "eval_s": max(r["eval_s"] for r in per_run.values()),
        "runs": per_run,
    }


def choose_steps(step_s: float, train_s: float, seconds_left: float, max_steps: int, safety: float = SAFETY) -> int:
    """The step count: as many steps of `step_s` (times `safety`) as fit in min(train_s, seconds_left), 1 to
    max_steps."""
    available = min(train_s, seconds_left)
    return max(1, min(max_steps, math.floor(available / (step_s * safety))))


def svg_figure(panels: list[dict], path: Path, title: str) -> None:
    """An SVG of line panels side by side: panel = {"title", "series": {label: [(x, y), ...]}}."""
    width, height, pad = 380, 260, 40
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(panels)}" height="{height + 30}">',
             f'<text x="10" y="18" font-size="13">{title}</text>']  # fmt: skip
    for index, panel in enumerate(panels):
        points = [p for series in panel["series"].values() for p in series]
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(0.0, min(p[1] for p in points)), max(1.0, max(p[1] for p in points))
        left, top = index * width + pad, 30 + 20

        def scale(x, y, left=left, top=top, x0=x0, x1=x1, y0=y0, y1=y1):
            sx = left + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)
            sy = top + (1 - (y - y0) / ((y1 - y0) or 1)) * (height - 2 * pad)
            return f"{sx:.1f},{sy:.1f}"

        parts.append(f'<text x="{left}" y="{top - 6}" font-size="12">{panel["title"]}</text>')
        parts.append(f'<polyline fill="none" stroke="#888" points="{scale(x0, y1)} {scale(x0, y0)} {scale(x1, y0)}"/>')
        for label_y in (y0, y1):
            y = scale(x0, label_y).split(",")[1]
            parts.append(f'<text x="{left - 34}" y="{y}" font-size="10">{label_y:g}</text>')
        parts.append(f'<text x="{left + width - 2 * pad - 20}" y="{top + height - 2 * pad + 14}" font-size="10">'
                     f"step {x1:g}</text>")  # fmt: skip
        for number, (label, series) in enumerate(panel["series"].items()):
            color = colors[number % len(colors)]
            dash = "" if "saw" in label else ' stroke-dasharray="5,3"'
            coords = " ".join(scale(x, y) for x, y in series)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{coords}"/>')
            y = top + 12 + 12 * number
            parts.append(f'<text x="{left + 8}" y="{y}" font-size="10" fill="{color}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def svg_figures(metrics, keys: list[str], out: Path, title: str) -> list[Path]:
    """curves.svg (each reward's batch mean) and weights.svg (each SAW weight), mean over seeds per method."""
    written = []
    for name, prefix in (("curves.svg", ""), ("weights.svg", "weight/")):
        panels = []
        for key in keys:
            means = metrics.groupby(["method", "step"])[prefix + key].mean()
            series = {m: [(float(s), float(v)) for s, v in means[m].items()] for m in means.index.unique("method")}
            panels.append({"title": f"{'SAW weight of ' if prefix else ''}{key}", "series": series})
        svg_figure(panels, out / name, f"{title}: {'SAW weights' if prefix else 'batch-mean training rewards'}, "
                   "mean over seeds")  # fmt: skip
        written.append(out / name)
    return written


def figures(metrics_csv: Path, workdir: Path, methods: list[str], seed: int, out: Path, title: str) -> list[Path]:
    """curves and weights figures in `out`: PNG (analyze.py, saw_verl.plot) if matplotlib imports, else SVG."""
    import pandas as pd

    from recipes.common import analyze

    metrics = pd.read_csv(metrics_csv)
    keys = analyze.reward_keys(metrics)
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib does not import here: the figures are SVG", flush=True)
        return svg_figures(metrics, keys, out, title)
    analyze.plot(metrics, keys, out / "curves.png", title)
    states = [str(workdir / "runs" / f"{m}_seed{seed}" / "trainer_state.json") for m in methods]
    subprocess.run([sys.executable, "-m", "saw_verl.plot", *states, "-o", str(out / "weights.png"), "--title",
                    f"{title}, seed {seed}: SAW weights and reward batch means"], check=True, cwd=REPO)  # fmt: skip
    return [out / "curves.png", out / "weights.png"]


def tables(workdir: Path, scratch: Path, methods: list[str], seeds: list[int], thresholds: dict[str, float],
           window: int, final_steps: int) -> int:
    """metrics.csv, runs.csv, heldout.md (cpu_experiment.collect) and summary.md (analyze.py) in `scratch`."""
    import pandas as pd

    from recipes.common import analyze

    experiment = _cpu_experiment()
    code = experiment.collect(workdir, scratch, methods, seeds)
    metrics = pd.read_csv(scratch / "metrics.csv")
    runs = analyze.per_run(metrics, thresholds, window, final_steps)
    text = analyze.markdown(analyze.summarise(runs, thresholds), analyze.paired(runs, thresholds), thresholds,
                            window, final_steps)  # fmt: skip
    (scratch / "summary.md").write_text(text)
    print(text, flush=True)
    return code


def _cpu_experiment():
    sys.path.insert(0, str(HERE))
    import cpu_experiment

    return cpu_experiment


def grid(args) -> int:
    """The wheel check, the model folder, calibration, step count, the runs, outputs (module docstring); 1 if a
    run did not finish."""
    started = time.time()
    workdir, out = args.workdir.resolve(), args.out.resolve()
    scratch = workdir / "collected"
    for folder in (workdir, scratch, out):
        folder.mkdir(parents=True, exist_ok=True)
    rows, problems, notes = gpu_bundle.check(args.site)
    print(gpu_bundle.check_report(rows, problems, notes), flush=True)
    if problems:
        raise SystemExit("the wheel check failed: " + "; ".join(problems))
    if args.gguf is not None:  # the model folder from the reassembled GGUF
        import prepare_smollm2

        prepare_smollm2.convert(args.gguf.resolve(), args.model.resolve())
        print(f"{time.strftime('%T')} model converted: {args.model}", flush=True)
    timings = {"check_and_convert_s": round(time.time() - started, 1)}
    common = ["--model", str(args.model), "--device", args.device, "--data-dir", str(args.data_dir)]
    shape = ["--prompts-per-step", str(args.prompts_per_step), "--generations", str(args.generations)]
    names = [(m, s) for s in args.seeds for m in args.methods]

    jobs: dict[str, dict] = {}
    try:
        # 1. calibration: one worker process per run, all at once; each calibrates, then waits for the step count
        calibration_dir, steps_file = workdir / "calibration", workdir / "steps.json"
        steps_file.unlink(missing_ok=True)
        for m, s in names:
            worker = [sys.executable, str(Path(__file__).resolve()), "worker", "--site", str(args.site or ""),
                      "--calibration-workdir", str(calibration_dir), "--steps-file", str(steps_file),
                      "--calibration-steps", str(args.calibration_steps), "--workdir", str(workdir), "--"]  # fmt: skip
            run = [*common, *shape, "--method", m, "--seed", str(s)]
            jobs[f"{m}_seed{s}"] = launch([*worker, *run], workdir / "logs" / f"{m}_seed{s}.log")
        print(f"{time.strftime('%T')} calibration: {len(names)} runs x {args.calibration_steps} steps, all at once, "
              "and the untrained model's held-out evaluation here", flush=True)  # fmt: skip
        untrained = scratch / "heldout_untrained.json"
        _cpu_experiment().evaluate(args.model.resolve(), untrained, args.device, str(args.data_dir))
        runs = {}
        for name, folder in wait_calibrated(jobs, calibration_dir).items():
            run = json.loads((folder / "run.json").read_text())
            runs[name] = {"step_times": step_times(folder / "trainer_state.json"),
                          "train_wall_s": run["train_wall_s"], "wall_s": run["wall_s"]}  # fmt: skip
        calibration = calibration_summary(runs)
        timings["calibration_s"] = round(time.time() - started - timings["check_and_convert_s"], 1)

        # 2. the step count, fixed before the runs start
        now = time.time()
        stop_at = args.end_unix - args.reserve_s - calibration["eval_s"]
        seconds_left = stop_at - now - calibration["startup_s"]
        steps = choose_steps(calibration["step_s"], args.train_s, seconds_left, args.max_steps)
        print(f"{time.strftime('%T')} calibration: step {calibration['step_s']:.2f} s (slowest run's median), "
              f"start-up {calibration['startup_s']:.0f} s, evaluation {calibration['eval_s']:.0f} s; "
              f"{seconds_left:.0f} s left for training -> {steps} steps per run (budget {args.train_s:.0f} s)",
              flush=True)  # fmt: skip

        # 3. the runs, all at once: every worker starts its run when the step count appears
        started_runs = time.time()
        partial = steps_file.with_suffix(".partial")
        partial.write_text(json.dumps({"steps": steps, "deadline_unix": round(stop_at, 1)}))
        partial.replace(steps_file)
        walls, failed = wait_all(jobs)  # a failed run is left out of the tables (collect names it), not fatal
        timings["runs_s"] = round(time.time() - started_runs, 1)
        print(f"{time.strftime('%T')} runs done in {timings['runs_s']:.0f} s; failed: {failed or 'none'}", flush=True)
    finally:  # a failure leaves no worker waiting for a step count that will not come
        for job in jobs.values():
            if job["proc"].poll() is None:
                job["proc"].kill()

    # 4. outputs
    thresholds = dict(args.threshold)
    code = tables(workdir, scratch, args.methods, args.seeds, thresholds, args.window, args.final_steps)
    for name in OUT_FILES[:-1]:
        (out / name).write_bytes((scratch / name).read_bytes())
    written = figures(out / "metrics.csv", workdir, args.methods, args.seeds[0], out, args.title)
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "command"},
        "device": _device_name(args.device), "calibration": calibration, "steps": steps,
        "stop_at_unix": round(stop_at, 1), "untrained_heldout": json.loads(untrained.read_text()),
        "worker_s": walls, "failed_runs": failed, "timings": timings | {"grid_s": round(time.time() - started, 1)},
        "check": {"modules": rows, "problems": problems, "notes": notes},
    }  # fmt: skip
    (out / "grid.json").write_text(json.dumps(summary, indent=1))
    files = [out / n for n in OUT_FILES] + written
    print(f"{time.strftime('%T')} wrote {len(files)} files to {out}: "
          + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in files), flush=True)  # fmt: skip
    return code


def _device_name(device: str) -> str:
    if device != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    if argv[:1] == ["experiment"]:  # cpu_experiment.py's CLI, with the bundle's folder on the path
        split = argv.index("--")
        site = argv[argv.index("--site") + 1] if "--site" in argv[:split] else ""
        gpu_bundle.use_site(site or None)
        return _cpu_experiment().main(argv[split + 1 :])
    from recipes.common import analyze

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["grid"])
    parser.add_argument("--site", type=Path, help="the bundle's unpacked wheels (gpu_bundle.py install)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="the BFCL data folder")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--end-unix", type=float, required=True, help="when the whole grid must be done")
    parser.add_argument("--methods", nargs="+", default=["gdpo", "saw_gdpo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--calibration-steps", type=int, default=3)
    parser.add_argument("--train-s", type=float, default=420.0, help="the training time the step count aims at")
    parser.add_argument("--reserve-s", type=float, default=30.0, help="kept after the runs for the outputs")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--threshold", type=analyze.parse_threshold, action="append", default=None)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--final-steps", type=int, default=10)
    parser.add_argument("--title", default=TITLE)
    parser.add_argument("--gguf", type=Path, help="convert this GGUF into --model first (prepare_smollm2.convert)")
    args = parser.parse_args(argv)
    args.threshold = args.threshold or [("format_reward", 0.8), ("correct_reward", 0.1)]
    gpu_bundle.use_site(args.site)
    return grid(args)


if __name__ == "__main__":
    sys.exit(main())
