"""The verl integration: plugin registration, the shim around verl's legacy-trainer functions, and
the step metrics. Calls go through verl 0.9.1's real functions (v1 trainer: test_integration_v1.py;
config and bad input: test_integration_config.py)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import types

import pytest
import torch

import saw_verl.integrations.verl.plugin as plugin
from saw_verl import SawConfig, SawInputError
from saw_verl.reference import reference_saw_advantages
from saw_verl.integrations.verl import estimators, shim
from spec_cases import EXAMPLE_ADVANTAGES, EXAMPLE_CV, EXAMPLE_GROUPS, EXAMPLE_KEYS, EXAMPLE_MASK
from spec_cases import EXAMPLE_REWARD_MIN, EXAMPLE_REWARDS, EXAMPLE_WEIGHTS
from verl_batches import algorithm_config, example_batch, example_config, verl_batch
from verl.trainer.ppo import core_algos, ray_trainer

VERL_NAMES = ["corr_grpo", "gd2po", "mo_grpo", "saw_gdpo", "saw_grpo", "saw_verl_gdpo"]  # every one registered
SAW_GDPO_EXAMPLE = torch.tensor(EXAMPLE_ADVANTAGES[("gdpo", True)], dtype=torch.float32)


def assert_example_advantages(data):
    torch.testing.assert_close(data.batch["advantages"][:, 0], SAW_GDPO_EXAMPLE, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ registration

PROBE = """
import json, sys
import verl
from verl.trainer.ppo import core_algos
from saw_verl.registry import REGISTRY
ours = {entry.verl_name for entry in REGISTRY.values()}
registered = sorted(name for name in core_algos.ADV_ESTIMATOR_REGISTRY if name in ours)
eager = "verl.trainer.ppo.ray_trainer" in sys.modules
import verl.trainer.ppo.ray_trainer as rt, verl.trainer.ppo.v1.trainer_base as tb
print(json.dumps({"registered": registered, "eager": eager,
                  "legacy": getattr(rt.compute_advantage, "_saw_verl_wrapped", False),
                  "v1": getattr(tb.PPOTrainer._compute_advantage, "_saw_verl_wrapped", False)}))
"""


@pytest.mark.parametrize(
    "env, active",
    [
        ({"VERL_USE_EXTERNAL_PLUGINS": "saw_verl"}, True),
        ({"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "saw_verl.integrations.verl.plugin"}, True),
        ({"VERL_USE_EXTERNAL_PLUGINS": "none"}, False),
    ],
    ids=["entry-point", "VERL_USE_EXTERNAL_MODULES", "plugins-disabled"],
)
def test_import_verl_registers_and_hooks_lazily(env, active):
    """A fresh process: `import verl` alone registers, without importing the trainers; they get patched on import."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL_")}
    env = {**inherited, **env, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    state = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {"registered": VERL_NAMES if active else [], "eager": False, "legacy": active, "v1": active}
    assert state == expected


def test_entry_point_is_declared():
    (entry,) = [ep for ep in importlib.metadata.entry_points(group="verl.plugins") if ep.name == "saw_verl"]
    assert entry.value == "saw_verl.integrations.verl.plugin"
    assert entry.load() is plugin


def test_the_math_does_not_import_verl():
    code = "import sys, saw_verl, saw_verl.kernels; print('verl' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr[-2000:]


@pytest.mark.parametrize("module", ["config", "estimators", "shim", "metrics", "plugin"])
def test_any_integration_module_imported_first_still_registers(module):
    code = (
        f"import saw_verl.integrations.verl.{module}\n"
        "from verl.trainer.ppo import core_algos\n"
        "from saw_verl.registry import REGISTRY\n"
        "print(sorted(e.verl_name for e in REGISTRY.values() if e.verl_name in core_algos.ADV_ESTIMATOR_REGISTRY))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == str(VERL_NAMES)
    assert "loading the verl plugin failed" not in run.stderr, run.stderr[-3000:]


def test_reexecuting_the_plugin_is_idempotent():
    importlib.reload(estimators)  # new function objects: verl's register_adv_est alone would raise
    importlib.reload(plugin)
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    assert registry["saw_grpo"] is estimators.compute_saw_grpo_advantage
    assert registry["saw_gdpo"] is estimators.compute_saw_gdpo_advantage
    shim.install()
    assert sum(getattr(f, "saw_verl_post_import_finder", False) for f in sys.meta_path) == 1
    assert sum(getattr(f, "saw_verl_import_watcher", False) for f in sys.meta_path) == 1
    assert not getattr(ray_trainer.compute_advantage.__wrapped__, shim.WRAPPED, False)  # wrapped once
    assert_example_advantages(ray_trainer.compute_advantage(example_batch(), "saw_gdpo", config=example_config()))


def test_another_packages_saw_estimator_is_not_overwritten(monkeypatch):
    monkeypatch.setitem(core_algos.ADV_ESTIMATOR_REGISTRY, "saw_gdpo", lambda **kwargs: None)
    with pytest.raises(ValueError, match="'saw_gdpo' is already registered by another package"):
        estimators.register()


def test_plugin_load_failure_is_logged_at_warning(monkeypatch, caplog):
    def broken_register():
        raise RuntimeError("boom")

    monkeypatch.setattr(estimators, "register", broken_register)
    with pytest.raises(RuntimeError, match="boom"):
        importlib.reload(plugin)
    assert any(r.levelname == "WARNING" and "loading the verl plugin failed" in r.message for r in caplog.records)


# ------------------------------------------------------------------ shim


@pytest.mark.parametrize("estimator", ["grpo", "gdpo", "rloo"])
def test_other_estimators_are_delegated_untouched(estimator, monkeypatch):
    monkeypatch.setattr(estimators, "forwarded", None)  # any use of the shim's forwarding would fail
    config = algorithm_config(estimator, EXAMPLE_KEYS)
    ours = ray_trainer.compute_advantage(example_batch(), estimator, config=config)
    verls = ray_trainer.compute_advantage.__wrapped__(example_batch(), estimator, config=config)
    assert torch.equal(ours.batch["advantages"], verls.batch["advantages"])


def test_verl_that_forwards_non_tensor_batch_is_left_alone():
    def forwarding_compute_advantage(data, adv_estimator, norm_adv_by_std_in_grpo=True, config=None):  # PR #7473 style
        fn = core_algos.get_adv_estimator_fn(adv_estimator)
        data.batch["advantages"], data.batch["returns"] = fn(
            token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"], config=config, non_tensor_batch=data.non_tensor_batch, batch=data.batch,
        )
        return data

    assert shim.wrap_compute_advantage(forwarding_compute_advantage) is forwarding_compute_advantage
    assert_example_advantages(forwarding_compute_advantage(example_batch(), "saw_gdpo", config=example_config()))
    assert not shim.forwards_non_tensor_batch(ray_trainer.compute_advantage.__wrapped__)  # verl 0.9.1 does not


def fake_v1_module(**attributes):
    return types.SimpleNamespace(__name__="verl.trainer.ppo.v1.trainer_base", **attributes)


CHANGED_FUNCTIONS = {
    "compute_advantage-new-signature": (shim.wrap_compute_advantage, lambda batch, name: 0),
    "multi-trajectories-new-signature": (shim.wrap_multi_trajectories, lambda data, adv_estimator, keys: 0),
    "compute_data_metrics-new-signature": (shim.wrap_compute_data_metrics, lambda data, use_critic: {}),
}


@pytest.mark.parametrize("wrap, fn", CHANGED_FUNCTIONS.values(), ids=CHANGED_FUNCTIONS.keys())
def test_a_changed_verl_function_gets_a_warning_not_a_crash(wrap, fn, caplog):
    assert wrap(fn) is fn
    assert any(r.levelname == "WARNING" and "not patching" in r.message for r in caplog.records)


CHANGED_V1 = {
    "v1-method-missing": (fake_v1_module(PPOTrainer=type("T", (), {}), tq=None), "_compute_advantage"),
    "v1-method-new-signature": (
        fake_v1_module(PPOTrainer=type("T", (), {"_compute_advantage": lambda self, batch: 0}), tq=None),
        "_compute_advantage",
    ),
    "v1-no-transfer-queue": (
        fake_v1_module(PPOTrainer=type("T", (), {"_compute_advantage": lambda self, batch, metrics: 0})),
        "TransferQueue",
    ),
}


@pytest.mark.parametrize("module, named", CHANGED_V1.values(), ids=CHANGED_V1.keys())
def test_a_changed_v1_trainer_gets_a_warning_not_a_crash(module, named, caplog):
    before = {name: dict(vars(value)) if isinstance(value, type) else value for name, value in vars(module).items()}
    shim.patch_v1_trainer(module)
    assert {name: dict(vars(value)) if isinstance(value, type) else value for name, value in vars(module).items()} == before
    assert any(r.levelname == "WARNING" and "not patching" in r.message and named in r.message for r in caplog.records)


def test_a_failing_v1_patch_is_logged_not_raised(caplog):
    class Frozen(type):
        def __setattr__(cls, name, value):
            raise TypeError("frozen class")

    trainer = Frozen("PPOTrainer", (), {"_compute_advantage": lambda self, batch, metrics: 0})
    shim.patch_v1_trainer(fake_v1_module(PPOTrainer=trainer, tq=types.SimpleNamespace(kv_batch_get=print)))
    assert not getattr(trainer._compute_advantage, shim.WRAPPED, False)
    assert any(r.levelname == "WARNING" and "patching verl.trainer.ppo.v1.trainer_base" in r.message for r in caplog.records)


def test_no_per_key_data_names_the_missing_shim():
    data = example_batch()
    with pytest.raises(SawInputError, match="shim is not active.*VERL_USE_EXTERNAL_MODULES=saw_verl.integrations.verl.plugin"):
        estimators.compute_saw_gdpo_advantage(
            data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"], example_config()
        )


# ------------------------------------------------------------------ metrics


def test_step_metrics_reach_legacy_compute_data_metrics(caplog):
    caplog.set_level("INFO", logger="saw_verl")
    data = ray_trainer.compute_advantage(example_batch(), "saw_gdpo", config=example_config())
    step = ray_trainer.compute_data_metrics(batch=data, use_critic=False)
    expected = reference_saw_advantages(
        EXAMPLE_REWARDS, EXAMPLE_GROUPS, EXAMPLE_MASK, SawConfig(EXAMPLE_KEYS, reward_min=EXAMPLE_REWARD_MIN)
    )
    for k, key in enumerate(EXAMPLE_KEYS):
        assert step[f"saw/{key}/weight"] == pytest.approx(EXAMPLE_WEIGHTS[("paper", "gdpo")][k])
        assert step[f"saw/{key}/cv"] == pytest.approx(EXAMPLE_CV[k], abs=1e-6)
        assert step[f"saw/{key}/mean"] == pytest.approx(expected.mean[k].item())
        assert step[f"saw/{key}/std"] == pytest.approx(expected.std[k].item())
    assert "critic/advantages/mean" in step  # verl's own metrics are still there
    assert "saw_gdpo per key: correctness (weight 1.2500" in caplog.text
    assert not any(name.startswith("saw/") for name in ray_trainer.compute_data_metrics(batch=data, use_critic=False))


def test_legacy_compute_advantage_carries_the_history_across_steps():
    """algorithm.saw.history_decay through verl's legacy compute_advantage: step 2's statistics pool step 1's
    rewards (docs/spec.md, "History"); step metrics add saw/{key}/batch_cv."""
    estimators.HISTORIES.clear()
    config = example_config(history_decay=0.9)
    first, second = example_batch(), verl_batch(EXAMPLE_REWARDS.flip(0), EXAMPLE_KEYS, EXAMPLE_GROUPS, EXAMPLE_MASK)
    ray_trainer.compute_advantage(first, "saw_gdpo", config=config)
    ray_trainer.compute_data_metrics(batch=first, use_critic=False)
    data = ray_trainer.compute_advantage(second, "saw_gdpo", config=config)
    step = ray_trainer.compute_data_metrics(batch=data, use_critic=False)
    cfg = SawConfig(EXAMPLE_KEYS, reward_min=EXAMPLE_REWARD_MIN, history_decay=0.9)
    expected = reference_saw_advantages(EXAMPLE_REWARDS.flip(0), EXAMPLE_GROUPS, EXAMPLE_MASK, cfg, past=[EXAMPLE_REWARDS])
    torch.testing.assert_close(data.batch["advantages"], expected.advantages, atol=1e-5, rtol=0)
    for k, key in enumerate(EXAMPLE_KEYS):
        assert step[f"saw/{key}/cv"] == pytest.approx(expected.cv[k].item())
        assert step[f"saw/{key}/batch_cv"] == pytest.approx(expected.batch_cv[k].item())
    estimators.HISTORIES.clear()
