"""Launch the real ``python -m verl.trainer.main_ppo`` on CPU through the harness plugin.

:data:`CPU_OVERRIDES` are the hydra overrides every CPU run needs (platform, FSDP2, sdpa, logical
Ray GPUs/CPUs, the ``hf`` rollout with ``full_determinism`` (every request sampled from a seed of its own,
:mod:`cpu_harness.rollout`), one TransferQueue storage unit for the v1 trainer, one agent
loop and one reward worker); :func:`harness_env` adds the environment variables that load the
plugin in every process. Callers add their own model/data/algorithm overrides, which win over
ours on the same key. Being command-line overrides, :data:`CPU_OVERRIDES` also win over a
``--config-name`` file: to change one (e.g. ``reward.num_workers``), pass it as an override.

Command line (prints nothing of its own; exec's verl with the merged overrides)::

    python -m cpu_harness.launcher [--config-path DIR --config-name NAME] key=value ...
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

PLUGIN_MODULE = "cpu_harness.plugin"
CHECKOUT = str(Path(__file__).resolve().parents[1])  # the folder holding cpu_harness/: it ships in no wheel

CPU_OVERRIDES = (
    "trainer.device=cpu",
    "trainer.nnodes=1",
    "trainer.n_gpus_per_node=1",
    "+ray_kwargs.ray_init.num_gpus=1",  # verl places workers on the Ray resource "GPU"
    "ray_kwargs.ray_init.num_cpus=16",  # logical: a placement bundle asks for 3 CPUs per GPU
    "actor_rollout_ref.actor.strategy=fsdp2",  # FSDP1 insists on GPU tensors for sync_module_states
    "actor_rollout_ref.ref.strategy=fsdp2",
    "critic.strategy=fsdp2",
    "actor_rollout_ref.model.use_remove_padding=False",
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",  # default is flash_attention_2
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "actor_rollout_ref.rollout.full_determinism=True",  # request ids by batch position: the hf rollout's seeds
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",  # v1: one storage actor, not 8
)


def harness_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the variables that load the plugin from this checkout."""
    env = dict(os.environ if base is None else base)
    modules = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if PLUGIN_MODULE not in modules:
        modules.append(PLUGIN_MODULE)
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if CHECKOUT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([CHECKOUT, *paths])  # every Ray worker imports the plugin from here
    env["VERL_PLATFORM"] = "cpu"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def override_key(override: str) -> str:
    """The config key an override sets: ``'+a.b=1'`` -> ``'a.b'``."""
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def merge_overrides(*groups: Iterable[str]) -> list[str]:
    """Concatenate override groups; an override replaces an earlier one on the same key. A deletion (``~key``, hydra's
    way to drop a config node) needs no value."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            if "=" not in override and not override.startswith("~"):
                raise ValueError(f"not a hydra override (key=value): {override!r}")
            merged.pop(override_key(override), None)
            merged[override_key(override)] = override
    return list(merged.values())


def main_ppo_command(overrides: Iterable[str], config_path: str | Path | None = None,
                     config_name: str | None = None) -> list[str]:
    """argv of ``python -m verl.trainer.main_ppo`` with the CPU overrides merged before ``overrides``."""
    argv = [sys.executable, "-m", "verl.trainer.main_ppo"]
    if config_path is not None:
        argv.append(f"--config-path={Path(config_path).resolve()}")
    if config_name is not None:
        argv.append(f"--config-name={config_name}")
    return argv + merge_overrides(CPU_OVERRIDES, overrides)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run_main_ppo`; ``log`` holds the merged stdout/stderr."""

    returncode: int
    wall_s: float
    peak_pss_bytes: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _tree_pss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _kill_tree(proc: subprocess.Popen) -> int:
    """Kill ``proc`` and all its descendants (Ray's processes included); return ``proc``'s exit code."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(children, timeout=10)
    return proc.wait()  # reaped by Popen, so the code is the kill signal's, not psutil's


def run_main_ppo(overrides: Iterable[str], log_path: str | Path, timeout_s: float,
                 config_path: str | Path | None = None, config_name: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> RunResult:
    """Run verl's trainer in a subprocess, logging to ``log_path``, killing its process tree on timeout.

    Peak memory is the summed PSS of the process tree (driver, Ray and every actor), sampled every 2 s.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = main_ppo_command(overrides, config_path, config_name)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=harness_env(env), cwd=cwd)
        root, peak, done = psutil.Process(proc.pid), [0], threading.Event()

        def sample() -> None:
            while not done.wait(2.0):
                try:
                    peak[0] = max(peak[0], _tree_pss(root))
                except psutil.NoSuchProcess:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            returncode = _kill_tree(proc)
            log.write(f"\n[cpu_harness] killed after {timeout_s:.0f} s timeout\n".encode())
        finally:
            done.set()
            sampler.join()
    return RunResult(returncode, time.monotonic() - start, peak[0], log_path)


def _cli(argv: list[str]) -> None:
    config: dict[str, str] = {}
    overrides = []
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag in ("--config-path", "--config-name"):
            config[flag[2:].replace("-", "_")] = value
        else:
            overrides.append(arg)
    command = main_ppo_command(overrides, **config)
    os.execve(command[0], command, harness_env())


if __name__ == "__main__":
    _cli(sys.argv[1:])
