"""Run a patch right after a module finishes executing, without importing it early (no trainer import).

The verl plugin (and the repository's CPU harness plugin) are imported from inside ``import verl``, while
verl is half initialised; the OpenRLHF Ray setup hook runs in every Ray worker. Most of those processes
never import the modules they patch. :func:`after_import` defers each patch to the moment its module
is first imported, or applies it at once if it already was. Patches must be idempotent.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from types import ModuleType

Patch = Callable[[ModuleType], None]

_PENDING: dict[str, list[Patch]] = {}


class _PatchingLoader(importlib.abc.Loader):
    """Wraps a module's real loader: exec_module, hand the module its real loader back, apply the patches."""

    def __init__(self, inner: importlib.abc.Loader, module_name: str):
        self._inner = inner
        self._module_name = module_name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._inner
        for patch in _PENDING.pop(self._module_name, []):
            patch(module)

    def __getattr__(self, name):  # get_data, get_resource_reader, ... stay the inner loader's
        return getattr(self._inner, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds specs through the other finders and swaps in :class:`_PatchingLoader` for pending targets.

    The marker attribute (not the class) identifies it, so a reload of this module adds no second finder.
    """

    saw_verl_post_import_finder = True

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PENDING:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "saw_verl_post_import_finder", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


def after_import(module_name: str, patch: Patch) -> None:
    """Call ``patch(module)`` once ``module_name`` is imported; immediately if it already is."""
    module = sys.modules.get(module_name)
    if module is not None:
        patch(module)
        return
    pending = _PENDING.setdefault(module_name, [])
    if patch not in pending:
        pending.append(patch)
    if not any(getattr(f, "saw_verl_post_import_finder", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
