"""The only part of saw_verl that imports verl (lazily: importing this package imports nothing).

- `plugin`: what verl loads (`verl.plugins` entry point / `VERL_USE_EXTERNAL_MODULES`)
- `estimators`: `saw_grpo`, `saw_gdpo` in verl's estimator registry
- `shim`: gives them the per-key rewards in both verl 0.9.1 trainers, and the `saw/*` step metrics
- `config`: `algorithm.saw` options, `SawAlgoConfig`
"""
