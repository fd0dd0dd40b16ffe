"""The shim survives verl moving `compute_advantage`: every verl module attribute that is verl's
original is wrapped, whichever module defines it, under any name, in modules imported before or after
install. Synthetic verl modules stand in for upstream's move to `verl/trainer/ppo/trainer_utils.py`."""

from __future__ import annotations

import importlib
import inspect
import sys
import types

import pytest
import torch

import saw_verl.integrations.verl.plugin  # noqa: F401  (what verl's entry point loads)
from saw_verl.integrations.verl import bindings, estimators, shim
from spec_cases import EXAMPLE_ADVANTAGES, EXAMPLE_KEYS
from verl_batches import algorithm_config, example_batch, example_config
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.v1 import utils as v1_utils

SAW_GDPO_EXAMPLE = torch.tensor(EXAMPLE_ADVANTAGES[("gdpo", True)], dtype=torch.float32)

# upstream's trainer_utils.py: verl 0.9.1's own compute_advantage source, defined in another module
MOVED_DEFINITION = '''
import inspect
from verl.trainer.ppo import ray_trainer as _ray_trainer

globals().update({k: v for k, v in vars(_ray_trainer).items() if not k.startswith("__") and k != "compute_advantage"})
exec(compile(inspect.getsource(_ray_trainer.compute_advantage.__wrapped__), _ray_trainer.__file__, "exec"))
'''
# a later module that imports it by name, under another name too
MOVED_USER = '''
from verl.trainer.ppo._saw_test_trainer_utils import compute_advantage
from verl.trainer.ppo._saw_test_trainer_utils import compute_advantage as compute_advantage_again
'''


@pytest.fixture
def moved_verl(tmp_path, monkeypatch):
    """Synthetic verl.trainer.ppo._saw_test_trainer_utils (defines compute_advantage) and _saw_test_user
    (binds it twice), importable from tmp_path; removed from sys.modules afterwards."""
    (tmp_path / "_saw_test_trainer_utils.py").write_text(MOVED_DEFINITION)
    (tmp_path / "_saw_test_user.py").write_text(MOVED_USER)
    package = sys.modules["verl.trainer.ppo"]
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    names = ("verl.trainer.ppo._saw_test_trainer_utils", "verl.trainer.ppo._saw_test_user")
    yield names
    for name in names:
        sys.modules.pop(name, None)
        if hasattr(package, name.rsplit(".", 1)[1]):
            delattr(package, name.rsplit(".", 1)[1])


def defined_original(module):
    """The function object the moved module defined (the wrapper's __wrapped__ once wrapped)."""
    return getattr(module.compute_advantage, "__wrapped__", module.compute_advantage)


def test_a_moved_compute_advantage_is_wrapped_wherever_it_is_bound(moved_verl):
    defining_name, user_name = moved_verl
    user = importlib.import_module(user_name)  # imports the defining module first, both after install
    defining = sys.modules[defining_name]
    original = defined_original(defining)
    assert original.__module__ == defining_name and original is not ray_trainer.compute_advantage.__wrapped__
    wrapper = defining.compute_advantage
    assert getattr(wrapper, shim.WRAPPED, False) and wrapper.__wrapped__ is original
    assert user.compute_advantage is wrapper and user.compute_advantage_again is wrapper  # one wrapper per original
    # it forwards the per-key rewards that verl's own function does not hand to registered estimators
    data = user.compute_advantage_again(example_batch(), "saw_gdpo", config=example_config())
    torch.testing.assert_close(data.batch["advantages"][:, 0], SAW_GDPO_EXAMPLE, atol=1e-5, rtol=0)


@pytest.mark.parametrize("estimator", ["grpo", "gdpo", "rloo"])
def test_a_moved_compute_advantage_delegates_other_estimators_untouched(estimator, moved_verl, monkeypatch):
    defining = importlib.import_module(moved_verl[0])
    monkeypatch.setattr(estimators, "forwarded", None)  # any use of the shim's forwarding would fail
    config = algorithm_config(estimator, EXAMPLE_KEYS)
    ours = defining.compute_advantage(example_batch(), estimator, config=config)
    verls = defined_original(defining)(example_batch(), estimator, config=config)
    assert torch.equal(ours.batch["advantages"], verls.batch["advantages"])


def test_modules_imported_before_install_are_wrapped_by_install(moved_verl, monkeypatch):
    watchers = [f for f in sys.meta_path if getattr(f, "saw_verl_import_watcher", False)]
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if f not in watchers])
    user = importlib.import_module(moved_verl[1])  # no watcher: verl's original stays bound
    original = sys.modules[moved_verl[0]].compute_advantage
    assert not getattr(original, shim.WRAPPED, False) and user.compute_advantage is original
    shim.install()
    assert getattr(user.compute_advantage, shim.WRAPPED, False) and user.compute_advantage.__wrapped__ is original
    assert user.compute_advantage_again is user.compute_advantage is sys.modules[moved_verl[0]].compute_advantage


def test_install_is_idempotent(moved_verl):
    user = importlib.import_module(moved_verl[1])
    wrappers = (ray_trainer.compute_advantage, v1_utils.compute_advantage_for_multi_trajectories, user.compute_advantage)
    for _ in range(2):
        shim.install()
    assert sum(getattr(f, "saw_verl_import_watcher", False) for f in sys.meta_path) == 1
    assert (ray_trainer.compute_advantage, v1_utils.compute_advantage_for_multi_trajectories, user.compute_advantage) == wrappers
    assert all(not getattr(w.__wrapped__, shim.WRAPPED, False) for w in wrappers)  # wrapped once


def test_every_binding_in_the_installed_verl_is_wrapped():
    """No verl module attribute is still one of the originals we wrap (run after a verl upgrade)."""
    import verl.trainer.ppo.v1.trainer_base  # noqa: F401  (the v1 trainer binds two of them)

    originals = [
        (name, attribute)
        for name, module in list(sys.modules.items())
        if module is not None and bindings.in_verl(name)
        for attribute, value in vars(module).items()
        if bindings.is_target(value)
    ]
    assert originals == []
    bound = {name for name, module in list(sys.modules.items()) if bindings.in_verl(name)
             and getattr(getattr(module, "compute_advantage", None), shim.WRAPPED, False)}
    assert {"verl.trainer.ppo.ray_trainer", "verl.trainer.ppo.v1.utils"} <= bound


def test_non_verl_modules_and_same_named_non_verl_functions_are_left_alone():
    def compute_advantage(data, adv_estimator):
        return data

    compute_advantage.__qualname__ = "compute_advantage"  # a top-level function of this (non-verl) test module
    module = types.ModuleType("not_verl.trainer")
    module.compute_advantage = compute_advantage
    bindings.rebind(module)
    assert module.compute_advantage is compute_advantage
    compute_advantage.__module__ = "verl.trainer.synthetic"  # the same function, were it verl's: wrapped
    bindings.rebind(module)
    assert module.compute_advantage.__wrapped__ is compute_advantage
    bindings._wrappers.pop(compute_advantage)


def test_a_failing_factory_is_logged_and_leaves_the_original(monkeypatch, caplog):
    def broken(original):
        raise RuntimeError("boom")

    def compute_data_metrics(batch, use_critic=True):
        return {}

    compute_data_metrics.__module__, compute_data_metrics.__qualname__ = "verl.synthetic", "compute_data_metrics"
    module = types.ModuleType("verl.synthetic")
    module.compute_data_metrics = compute_data_metrics
    monkeypatch.setitem(bindings._factories, "compute_data_metrics", broken)
    bindings.rebind(module)
    assert module.compute_data_metrics is compute_data_metrics
    assert any(r.levelname == "WARNING" and "wrapping verl.synthetic.compute_data_metrics failed" in r.message
               for r in caplog.records)
    monkeypatch.delitem(bindings._wrappers, compute_data_metrics)


def test_the_watcher_hands_back_the_real_loader(moved_verl):
    defining = importlib.import_module(moved_verl[0])
    assert type(defining.__loader__).__name__ == "SourceFileLoader"
    assert inspect.getsourcefile(defining).endswith("_saw_test_trainer_utils.py")
