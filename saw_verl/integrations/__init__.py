"""One subpackage per trainer, each the only code that imports that trainer: `verl`, `trl`, `openrlhf`.

Importing this package (or `saw_verl`) imports none of them. Importing a subpackage whose trainer is not
installed raises ImportError naming the extra that installs it (:func:`require_trainer`).
`import_hooks` is the post-import patch mechanism the verl and OpenRLHF integrations share.
"""

from __future__ import annotations

import importlib.util


def require_trainer(module: str, extra: str) -> None:
    """Raise ImportError unless `module` (a trainer's top-level package) can be imported; no import is done."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"saw_verl.integrations.{extra} needs {module}, which is not installed: "
            f"pip install 'saw-verl[{extra}]'",
            name=module,
        )
