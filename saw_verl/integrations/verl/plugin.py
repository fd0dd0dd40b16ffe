"""verl plugin: registers saw_verl's estimators (saw_grpo / saw_gdpo and the rivals) and installs the shim
in every process that imports verl.

Loaded by verl itself from inside `verl/__init__.py`, through the `verl.plugins` entry point that
installing saw-verl declares, or through `VERL_USE_EXTERNAL_MODULES=saw_verl.integrations.verl.plugin`.
Imports only light verl modules; executing it again (reload, a Ray retry) is harmless. verl logs a
plugin's load error at DEBUG and goes on, so the error is logged here at WARNING first.
"""

import logging

logger = logging.getLogger(__name__)


def load() -> None:
    from saw_verl.integrations.verl import estimators, shim

    estimators.register()
    shim.install()
    logger.debug("saw_verl: registered %s and installed the verl shim", ", ".join(estimators.SAW_ESTIMATORS))


try:
    load()
except Exception:
    logger.warning("saw_verl: loading the verl plugin failed; saw_verl's estimators are unavailable", exc_info=True)
    raise
