"""Every fenced code block of README.md and docs/*.md runs as written, or, where it needs a GPU, is checked on CPU.

SNIPPETS finds each block by a fragment of its text and names the test that runs it; a block that no entry
finds fails test_every_snippet_has_a_test, so a new snippet comes with its test. What a snippet leaves to
the reader is supplied here, and only that:

* placeholders: `...` at the end of a verl command (the rest of the user's overrides) becomes a tiny model
  and data, or `--cfg job` (print the config, train nothing); `<train_ppo_ray flags>` becomes
  `--reward.remote_url reward_func.py`;
* the user's own objects: TRL's `model` (a tiny random Qwen2 on disk), `format_reward`, `correct_reward` and
  `ds`; OpenRLHF's `score`; verl's `my_reward.py`; docs/backends.md's `rewards`, `group_ids`, `response_mask`.

Shell snippets run with this interpreter's folder first on PATH (their `python` is this one). verl trains on
GPUs: the README's command runs here through `python -m cpu_harness.launcher`, as the README says for CPUs.
OpenRLHF trains on GPUs only: its commands go through the launcher and OpenRLHF's own argument parsing, stopped
before anything starts (where OpenRLHF is installed: scripts/install_matrix.sh's openrlhf cell). The README's
clone commands start with scripts/setup_env.sh, which .ci/run runs first; the main job runs 2 steps, not 60.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from saw_verl import plot

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md")))]
FENCE = re.compile(r"^```\w*\n(.*?)^```", re.S | re.M)
TRAIN_PPO_RAY_FLAGS = "<train_ppo_ray flags>"
RUN_TIMEOUT_S = 900

SNIPPETS = {  # (file, a fragment of exactly one of its code blocks) -> the test that runs that block
    ("README.md", "python -m verl.trainer.main_ppo"): "test_readme_verl_command_trains_on_cpu",
    ("README.md", "SAWGRPOTrainer("): "test_trl_snippet_trains_on_cpu",
    ("README.md", "python -m saw_verl.integrations.openrlhf"): "test_openrlhf_command_reaches_train_ppo_ray",
    ("README.md", "saw_gdpo_advantages("): "test_readme_tensor_api_prints_what_it_says",
    ("README.md", "run_demo.sh"): "test_readme_main_job_leaves_what_the_plot_tool_reads",
    ("README.md", "-m pytest"): "test_readme_test_command_is_what_ci_runs",
    ("docs/trl.md", "pip install"): "test_pip_installs_name_existing_extras",
    ("docs/trl.md", "SAWGRPOTrainer("): "test_trl_snippet_trains_on_cpu",
    ("docs/trl.md", "saw_weight_schedule="): "test_trl_shaping_snippet_configures_what_it_says",
    ("docs/openrlhf.md", "pip install"): "test_pip_installs_name_existing_extras",
    ("docs/openrlhf.md", "def reward_func"): "test_openrlhf_reward_function_returns_the_launchers_keys",
    ("docs/openrlhf.md", "python -m saw_verl.integrations.openrlhf"): "test_openrlhf_command_reaches_train_ppo_ray",
    ("docs/openrlhf.md", "--saw.weight_schedule"): "test_openrlhf_shaping_flags_configure_what_they_say",
    ("docs/verl.md", "VERL_USE_EXTERNAL_MODULES"): "test_verl_external_modules_snippet",
    ("docs/verl.md", "algorithm.saw.weight_schedule"): "test_verl_conditions_and_schedule_snippet",
    ("docs/backends.md", "saw_advantages("): "test_backends_snippet",
    ("docs/estimators.md", "compute_advantages("): "test_estimators_snippet",
}


def code_blocks(doc: str) -> list[str]:
    return FENCE.findall((ROOT / doc).read_text())


def snippet(doc: str, fragment: str) -> str:
    found = [block for block in code_blocks(doc) if fragment in block]
    assert len(found) == 1, f"{doc}: {len(found)} code blocks contain {fragment!r}"
    return found[0]


def command_words(block: str) -> list[str]:
    """A one-command shell block as words (line continuations joined, comments dropped)."""
    return shlex.split(block.replace("\\\n", " "), comments=True)


def shell_env(**extra: str) -> dict[str, str]:
    """This environment, with this interpreter's `python` first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra)


def flag_value(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def test_every_snippet_has_a_test():
    for doc in DOCS:
        for block in code_blocks(doc):
            tests = [test for (file, fragment), test in SNIPPETS.items() if file == doc and fragment in block]
            assert len(tests) == 1, f"{doc}: {len(tests)} SNIPPETS entries find this block:\n{block}"
    for (doc, fragment), test in SNIPPETS.items():
        snippet(doc, fragment)
        assert callable(globals().get(test)), f"no test named {test}"


# verl

MY_REWARD = '''
from cpu_harness.smoke_task import compute_score as smoke_score


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    scores = smoke_score(data_source, solution_str, ground_truth, extra_info)
    return {"score": scores["accuracy_reward"] + scores["format_reward"],
            "accuracy_reward": scores["accuracy_reward"], "format_reward": scores["format_reward"]}
'''


@pytest.mark.e2e
def test_readme_verl_command_trains_on_cpu(tmp_path):
    pytest.importorskip("verl")
    from cpu_harness.assets import build_tiny_model
    from cpu_harness.launcher import run_main_ppo
    from cpu_harness.smoke_task import write_smoke_data

    words = command_words(snippet("README.md", "python -m verl.trainer.main_ppo"))
    assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"] and words[-1] == "..."
    (tmp_path / "my_reward.py").write_text(MY_REWARD)
    train, val = write_smoke_data(tmp_path / "data")
    rest_of_overrides = [
        f"data.train_files={train}", f"data.val_files={val}", "data.train_batch_size=4",
        "data.max_prompt_length=32", "data.max_response_length=8",
        f"actor_rollout_ref.model.path={build_tiny_model(tmp_path / 'model')}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        "trainer.logger=[console,file]", "trainer.total_training_steps=1", "trainer.val_before_train=False",
        "trainer.test_freq=-1", "trainer.save_freq=-1", f"trainer.default_local_dir={tmp_path / 'checkpoints'}",
    ]
    result = run_main_ppo(words[3:-1] + rest_of_overrides, tmp_path / "train.log", RUN_TIMEOUT_S, cwd=tmp_path,
                          env=dict(os.environ, VERL_FILE_LOGGER_PATH=str(tmp_path / "metrics.jsonl")))
    assert result.returncode == 0, result.log[-6000:]
    step = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    keys = re.search(r"gdpo_reward_keys=\[(.*?)\]", " ".join(words)).group(1).split(",")
    weights = [step["data"][f"saw/{key}/weight"] for key in keys]
    assert step["step"] == 1 and sum(weights) == pytest.approx(len(keys))  # saw_gdpo: the weights sum to K


def test_verl_external_modules_snippet(tmp_path):
    """The export loads the plugin by name (verl raises on a module it cannot import); the override composes."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("verl")
    from importlib.metadata import entry_points

    block = snippet("docs/verl.md", "VERL_USE_EXTERNAL_MODULES")
    script = block.replace("python -m verl.trainer.main_ppo ...", "python -m verl.trainer.main_ppo --cfg job")
    assert script != block
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    module = re.search(r"export VERL_USE_EXTERNAL_MODULES=(\S+)", block).group(1)
    assert module in [entry.value for entry in entry_points(group="verl.plugins")]
    config = yaml.safe_load(done.stdout)
    assert config["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == module


def test_verl_conditions_and_schedule_snippet():
    """The overrides compose with verl's own config (Hydra takes the integer steps), pass the driver's check and give
    the condition and the schedule they say; the real runs with them are tests/test_e2e_cpu.py's."""
    pytest.importorskip("verl")
    import verl
    from hydra import compose, initialize_config_dir

    from saw_verl.integrations.verl.config import estimator_config_from_algorithm, validate_run
    from saw_verl.registry import REGISTRY

    words = command_words(snippet("docs/verl.md", "algorithm.saw.weight_schedule"))
    assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"] and words[-1] == "..."
    rest_of_overrides = ["actor_rollout_ref.rollout.n=4"]
    with initialize_config_dir(str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        config = compose("ppo_trainer", overrides=words[3:-1] + rest_of_overrides)
    validate_run(config, REGISTRY["saw_gdpo"])
    cfg, _ = estimator_config_from_algorithm(config.algorithm, REGISTRY["saw_gdpo"])
    (condition,) = cfg.conditions
    assert (cfg.reward_keys[condition.key], cfg.reward_keys[condition.on], condition.threshold, condition.fill) == (
        "format_reward", "accuracy_reward", 1.0, 0.0)
    assert cfg.at_step(50).static_weights == pytest.approx([1.0, 0.5])


# TRL


def format_reward(completions, **kwargs):
    return [float(text.strip().isdigit()) for text in completions]


def correct_reward(completions, answer, **kwargs):
    return [float(text.strip() == expected) for text, expected in zip(completions, answer)]


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    pytest.importorskip("transformers")
    from cpu_harness.assets import PLAIN_TEMPLATE, build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"), chat_template=PLAIN_TEMPLATE))


@pytest.fixture
def one_torch_thread():
    """A tiny model gains nothing from threads, and a shared 2-core machine makes two spin (~8x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("doc", ["README.md", "docs/trl.md"])
def test_trl_snippet_trains_on_cpu(doc, tiny_model_path, tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("trl")
    from datasets import Dataset

    monkeypatch.chdir(tmp_path)  # output_dir="out"
    ds = Dataset.from_dict({"prompt": ["copy 3"], "answer": ["3"]})
    namespace = {"model": tiny_model_path, "format_reward": format_reward, "correct_reward": correct_reward, "ds": ds}
    exec(snippet(doc, "SAWGRPOTrainer("), namespace)
    trainer = namespace["trainer"]
    assert trainer.args.use_cpu != torch.cuda.is_available()
    assert trainer.state.global_step == 3  # one prompt's 8 completions a step, 3 epochs
    assert {"saw/format_reward/weight", "saw/correct_reward/weight"} <= set(trainer.state.log_history[-1])


def test_trl_shaping_snippet_configures_what_it_says(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from saw_verl.integrations.trl import SAWGRPOConfig
    from saw_verl.integrations.trl.trainer import build_saw_config

    monkeypatch.chdir(tmp_path)  # output_dir="out"
    namespace = {"torch": torch, "SAWGRPOConfig": SAWGRPOConfig}
    exec(snippet("docs/trl.md", "saw_weight_schedule="), namespace)
    assert_shaping_as_documented(build_saw_config(namespace["args"], ["format_reward", "correct_reward"], None))


def assert_shaping_as_documented(cfg):
    """The docs' example: format gated on correct >= 1.0 (fill 0); alpha [0.2, 1] at step 0 to [1, 1] at 100."""
    assert cfg.at_step(0).static_weights == (0.2, 1.0) and cfg.at_step(100).static_weights == (1.0, 1.0)
    assert cfg.at_step(50).static_weights == pytest.approx((0.6, 1.0))
    keys = list(cfg.reward_keys)
    (gate,) = [(keys[c.key], keys[c.on], c.threshold, c.fill) for c in cfg.conditions]
    assert gate in {("format", "correct", 1.0, 0.0), ("format_reward", "correct_reward", 1.0, 0.0)}


# OpenRLHF


def openrlhf_command(doc: str) -> list[str]:
    """The doc's launcher command, its placeholder filled: the arguments after `python -m <module>`."""
    block = snippet(doc, "python -m saw_verl.integrations.openrlhf")
    assert TRAIN_PPO_RAY_FLAGS in block
    words = command_words(block.replace(TRAIN_PPO_RAY_FLAGS, "--reward.remote_url reward_func.py"))
    assert words[:3] == ["python", "-m", "saw_verl.integrations.openrlhf"]
    return words[3:]


def test_openrlhf_reward_function_returns_the_launchers_keys():
    namespace = {"score": lambda query, label: (1.0, 0.5)}  # the user's scoring: (correct, format)
    exec(snippet("docs/openrlhf.md", "def reward_func"), namespace)
    out = namespace["reward_func"](["copy 3 3"], ["copy 3"], ["3"])
    keys = flag_value(openrlhf_command("docs/openrlhf.md"), "--saw.reward_keys").split(",")
    assert list(out["extra_logs"]) == keys
    assert {key: float(value) for key, value in out["extra_logs"].items()} == {"correct": 1.0, "format": 0.5}
    assert float(out["rewards"]) == 1.5 and float(out["scores"]) == 1.0


@pytest.mark.parametrize("doc", ["README.md", "docs/openrlhf.md"])
def test_openrlhf_command_reaches_train_ppo_ray(doc, monkeypatch):
    pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs this")
    from openrlhf_standins import launch_until_training

    from saw_verl.integrations.openrlhf.options import config_from_env

    argv = openrlhf_command(doc)
    seen = launch_until_training(monkeypatch, argv)
    args = seen["args"]
    assert (args.algo.advantage.estimator, args.rollout.n_samples_per_prompt) == ("dr_grpo", 8)
    cfg = config_from_env(seen["init"]["runtime_env"]["env_vars"])
    assert (cfg.mode, list(cfg.reward_keys)) == ("gdpo", flag_value(argv, "--saw.reward_keys").split(","))
    assert list(cfg.reward_min) == [float(m) for m in flag_value(argv, "--saw.reward_min").split(",")]


def test_openrlhf_shaping_flags_configure_what_they_say():
    pytest.importorskip("openrlhf", reason="OpenRLHF not installed: scripts/install_matrix.sh openrlhf runs this")
    from saw_verl.integrations.openrlhf import launcher
    from saw_verl.integrations.openrlhf.options import config_from_env

    argv = openrlhf_command("docs/openrlhf.md")
    weights = argv.index("--saw.reward_weights")
    argv = argv[:weights] + argv[weights + 2:] + command_words(snippet("docs/openrlhf.md", "--saw.weight_schedule"))
    assert_shaping_as_documented(config_from_env(launcher.prepare(argv).runtime_env["env_vars"]))


# Tensor API


def test_readme_tensor_api_prints_what_it_says(capsys):
    block = snippet("README.md", "saw_gdpo_advantages(")
    namespace = {}
    exec(block, namespace)
    printed = capsys.readouterr().out.strip()
    assert f"print(out.weights)  # {printed}" in block
    out, (n, length), k = namespace["out"], namespace["response_mask"].shape, namespace["rewards"].shape[1]
    assert out.advantages.shape == (n, length) and out.advantages.dtype == torch.float32
    for stat in (out.weights, out.cv, out.mean, out.std):
        assert stat.shape == (k,) and stat.dtype == torch.float64


def test_backends_snippet():
    namespace = {"rewards": torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]),
                 "group_ids": torch.tensor([0, 0, 1, 1]), "response_mask": torch.ones(4, 3, dtype=torch.bool)}
    exec(snippet("docs/backends.md", "saw_advantages("), namespace)
    result = namespace["result"]
    assert result.advantages.shape == (4, 3) and result.weights.shape == (2,)


def test_estimators_snippet(capsys):
    namespace = {}
    exec(snippet("docs/estimators.md", "compute_advantages("), namespace)
    assert namespace["result"].advantages.shape == (4, 3)
    assert capsys.readouterr().out.startswith("torch.Size([4, 3]) ")


# Installing, the main job, the tests


def test_pip_installs_name_existing_extras():
    """pip only warns about an unknown extra; every `.[extra]` the docs name is one pyproject.toml defines."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    defined = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {extra for doc in DOCS for group in re.findall(r"\.\[([\w,]+)\]", (ROOT / doc).read_text())
             for extra in group.split(",")}
    assert {"trl", "openrlhf"} <= named and named <= defined, named - defined
    for doc in ("docs/trl.md", "docs/openrlhf.md"):
        assert re.search(r"pip install \S*\.\[", snippet(doc, "pip install"))


def ci_commands() -> list[str]:
    return [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]


def test_readme_test_command_is_what_ci_runs():
    commands = snippet("README.md", "-m pytest").strip().split(" && ")
    assert commands == ["bash scripts/setup_env.sh", ".venv/bin/python -m pytest -q -ra"]
    assert all(command in ci_commands() for command in commands)


@pytest.mark.e2e
def test_readme_main_job_leaves_what_the_plot_tool_reads(tmp_path, request):
    """The main job in a fresh folder of its own (printed, then removed), its results plotted as it says.

    Its folder is made under the usual TMPDIR: Ray's socket paths under a pytest tmp_path are too long.
    """
    setup, job = snippet("README.md", "run_demo.sh").strip().split(" && ")
    assert setup in ci_commands()  # CI's first step: it built the .venv this test runs in
    assert job.startswith("PYTHON=.venv/bin/python ")
    done = subprocess.run(["bash", "-c", job.replace(".venv/bin/python", sys.executable, 1)], cwd=ROOT,
                          env=shell_env(STEPS="2"), capture_output=True, text=True, timeout=2 * RUN_TIMEOUT_S)
    workdir = Path(re.search(r"working folder (\S+)", done.stdout).group(1))
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert workdir.parent == Path(tempfile.gettempdir()) and workdir.name.startswith("saw_cpu_demo.")
    results = workdir / "results"
    assert all((results / name).stat().st_size for name in ("metrics.csv", "summary.md", "curves.png"))
    assert "± n/a" in (results / "summary.md").read_text()  # one seed: no spread
    plot_command = re.search(r"Plot the SAW weights per run: (.+)", done.stdout).group(1)
    # as from the repository root, where the user ran the job, with weights.png written here
    plotted = subprocess.run(plot_command, shell=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert plotted.returncode == 0
    assert (tmp_path / "weights.png").stat().st_size
    run_files = [workdir / "runs" / f"{method}_seed0" / "verl_metrics.jsonl" for method in ("gdpo", "saw_gdpo")]
    assert [label for label, _ in plot.labelled_runs(run_files)] == ["gdpo seed 0", "saw_gdpo seed 0"]


def test_readme_says_which_verl_options_need_a_plus_on_the_cli():
    """gdpo_reward_keys / gdpo_reward_weights and algorithm.saw.* are not in verl's YAML: hydra needs `+`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| verl (`algorithm."))
    assert "`+` on the CLI for `gdpo_reward_*` and `saw.*`" in header
