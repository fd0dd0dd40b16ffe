"""Swap verl's original functions for wrappers wherever a verl module binds them, including modules
imported later, so the shim survives verl moving a function to another module.

verl binds its helpers by name in other modules: 0.9.1 defines `compute_advantage` in
`verl/trainer/ppo/ray_trainer.py`, and `v1/utils.py` and `experimental/separation/ray_trainer.py`
`from ... import compute_advantage` it; an upstream branch moves it to `verl/trainer/ppo/trainer_utils.py`,
which other modules then import by name. A fixed list of modules to patch breaks on such a move.

Design:
- A *target* is a plain top-level function (`__qualname__` is one of the names given to `install`)
  whose `__module__` is `verl` or `verl.*`, and that is not one of our wrappers (they carry the
  `WRAPPED` marker): verl's original, wherever it is defined and under whatever attribute name a
  module binds it.
- `rebind(module)` makes one pass over the module's globals and replaces each target by its wrapper.
  The wrapper is built once per original function object (cached by identity), so every binding of
  one original gets the same wrapper and a feature probe runs once. A factory may return the
  original itself: that binding is then left alone (e.g. verl already does what the wrapper adds).
- `install` rebinds every verl module already imported and puts `_VerlImportWatcher` on
  `sys.meta_path`. For each `verl.*` module about to be imported, the watcher registers `rebind`
  with `saw_verl.integrations.import_hooks.after_import` (the post-import mechanism of the integrations) and asks
  that hook's finder for the spec, so `rebind` runs right after the module executes; a module that
  does `from x import compute_advantage` therefore binds the wrapper (x was rebound first) or gets
  rebound itself. Non-verl imports cost one string test; the cost per verl module is in
  benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from types import FunctionType, ModuleType

from saw_verl.integrations.import_hooks import after_import

logger = logging.getLogger(__name__)

WRAPPED = "_saw_verl_wrapped"  # marker attribute on every wrapper (survives a reload of this module)
WrapFactory = Callable[[FunctionType], FunctionType]  # original -> its wrapper, or the original to leave it

_factories: dict[str, WrapFactory] = {}  # target name (__qualname__) -> factory
_wrappers: dict[FunctionType, FunctionType] = {}  # original -> what replaces it (one per function object)


def in_verl(module_name: str) -> bool:
    return module_name == "verl" or module_name.startswith("verl.")


def is_target(value) -> bool:
    """Is `value` verl's original of a function we wrap (and not a wrapper)?"""
    return (
        type(value) is FunctionType
        and value.__qualname__ in _factories
        and in_verl(value.__module__ or "")
        and not getattr(value, WRAPPED, False)
    )


def replacement(original: FunctionType) -> FunctionType:
    """The wrapper of `original` (built on first use); the original itself when its factory declines or fails."""
    wrapper = _wrappers.get(original)
    if wrapper is None:
        try:
            wrapper = _factories[original.__qualname__](original)
        except Exception:
            logger.warning(
                "saw_verl: wrapping %s.%s failed; saw_* estimators may miss per-key rewards or metrics on this path",
                original.__module__, original.__qualname__, exc_info=True,
            )
            wrapper = original
        if wrapper is not original:
            setattr(wrapper, WRAPPED, True)
        _wrappers[original] = wrapper
    return wrapper


def rebind(module: ModuleType) -> None:
    """Replace every global of `module` that is a target by its wrapper (one pass over the module's dict)."""
    for name, value in list(vars(module).items()):
        if is_target(value):
            wrapper = replacement(value)
            if wrapper is not value:
                setattr(module, name, wrapper)


class _VerlImportWatcher(importlib.abc.MetaPathFinder):
    """Hooks `rebind` onto every `verl.*` module about to be imported (see the module docstring).

    It finds the spec through import_hooks' finder, which consults every finder but itself, this one
    included: the per-thread `_finding` set makes that inner call return None.
    """

    saw_verl_import_watcher = True  # the marker (not the class) identifies it across reloads

    def __init__(self):
        self._finding = threading.local()

    def find_spec(self, fullname, path, target=None):
        if not in_verl(fullname) or fullname in sys.modules:  # not verl, or a reload: left alone
            return None
        finding = self._finding.__dict__.setdefault("names", set())
        if fullname in finding:
            return None
        after_import(fullname, rebind)
        post_import_finder = next(f for f in sys.meta_path if getattr(f, "saw_verl_post_import_finder", False))
        finding.add(fullname)
        try:
            return post_import_finder.find_spec(fullname, path, target)
        finally:
            finding.discard(fullname)


def install(factories: Mapping[str, WrapFactory]) -> None:
    """Wrap the targets named in `factories` in every verl module, imported now or later; idempotent."""
    _factories.update(factories)
    for name, module in list(sys.modules.items()):
        if module is not None and in_verl(name):
            rebind(module)
    if not any(getattr(f, "saw_verl_import_watcher", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _VerlImportWatcher())
