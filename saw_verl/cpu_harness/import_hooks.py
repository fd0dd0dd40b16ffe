"""Run a patch right after a module finishes executing, without importing it early.

The harness plugin is imported from inside ``import verl`` (verl is half initialised then), and
it runs in every Ray actor, most of which never touch the FSDP engines or the rollout code. So
instead of importing those heavy modules to patch them, :func:`after_import` defers each patch
to the moment the module is first imported (or applies it at once if it already was).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType

Patch = Callable[[ModuleType], None]

_PENDING: dict[str, list[Patch]] = {}


class _PatchingLoader(importlib.abc.Loader):
    """Wraps a module's real loader and applies the pending patches after ``exec_module``."""

    def __init__(self, inner: importlib.abc.Loader, module_name: str):
        self._inner = inner
        self._module_name = module_name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        for patch in _PENDING.pop(self._module_name, []):
            patch(module)

    def __getattr__(self, name):  # get_data, get_resource_reader, ... stay the inner loader's
        return getattr(self._inner, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds specs through the other finders and swaps in :class:`_PatchingLoader` for targets."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PENDING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


def after_import(module_name: str, patch: Patch) -> None:
    """Call ``patch(module)`` once ``module_name`` is imported; immediately if it already is."""
    module = sys.modules.get(module_name)
    if module is not None:
        patch(module)
        return
    _PENDING.setdefault(module_name, []).append(patch)
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
