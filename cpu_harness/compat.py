"""Feature detection for the verl internals the CPU harness relies on.

The harness is written against verl 0.9.1. Every private name it touches is looked up through
:func:`require`, so a verl release that renames or removes one fails with an error naming the
missing piece instead of an ``AttributeError`` deep inside a Ray actor.
"""

from __future__ import annotations

import inspect
from typing import Any

TESTED_VERL_VERSION = "0.9.1"


class HarnessCompatError(RuntimeError):
    """verl no longer exposes something the CPU harness patches or registers into."""


def _verl_version() -> str:
    try:
        from importlib.metadata import version

        return version("verl")
    except Exception:  # pragma: no cover - metadata missing only in broken installs
        return "unknown"


def incompatible(what: str) -> HarnessCompatError:
    """Build the error raised when a verl internal changed, naming it and both verl versions."""
    return HarnessCompatError(
        f"cpu_harness: {what}. The harness was written against verl {TESTED_VERL_VERSION}; "
        f"installed verl is {_verl_version()}. Update cpu_harness for this verl release."
    )


def require(owner: Any, name: str, params: tuple[str, ...] = ()) -> Any:
    """Return ``owner.name``; raise :class:`HarnessCompatError` if it is missing or, when ``params``
    are given, if it no longer accepts each of those keyword parameters."""
    label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
    if not hasattr(owner, name):
        raise incompatible(f"`{label}` is missing")
    found = getattr(owner, name)
    if params:
        accepted = inspect.signature(found).parameters
        missing = [p for p in params if p not in accepted]
        if missing:
            raise incompatible(f"`{label}` no longer accepts {missing}")
    return found
