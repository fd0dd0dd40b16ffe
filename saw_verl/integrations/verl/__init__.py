"""The only part of saw_verl that imports verl.

- `plugin`: what verl loads (`verl.plugins` entry point / `VERL_USE_EXTERNAL_MODULES`)
- `estimators`: every estimator of saw_verl's registry in verl's (`saw_grpo`, `saw_gdpo`, and the rivals
  `saw_verl_gdpo`, `mo_grpo`, `corr_grpo`, `gd2po`: docs/estimators.md)
- `shim`: gives them the per-key rewards in both verl 0.9.1 trainers, and their per-key step metrics
- `bindings`: wraps a verl function wherever a verl module binds it (the shim's survival of verl moves)
- `sessions`: v1 multi-output agent sessions (final outputs only, broadcast), as verl's GRPO
- `config`: `algorithm.saw` options (SAW's and the rivals' own), `SawAlgoConfig`, verl's option names in errors
- `columns`: verl's reward columns and uid array -> the core's tensors
- `metrics`: the per-key step metrics and the per-step log line

verl is imported here, before any submodule: `import verl` loads our plugin, which needs these
modules whole. Were a submodule (say `config`) to import verl first, the plugin would meet it half
executed and fail. Inside verl's own plugin loading, `import verl` returns the module in progress.
"""

from saw_verl.integrations import require_trainer

require_trainer("verl", "verl")
import verl  # noqa: E402, F401  (see above)
