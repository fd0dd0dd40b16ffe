"""CPU harness: run the real ``python -m verl.trainer.main_ppo`` (verl 0.9.1) on a CPU-only machine.

A test and demo aid, not part of SAW. Importing this package imports nothing; the modules are:

- ``plugin``: the verl plugin (opt-in: ``VERL_USE_EXTERNAL_MODULES=cpu_harness.plugin``)
- ``platform``: the ``cpu`` platform, gloo process groups, FSDP engines on device ``cpu``
- ``rollout``: the ``hf`` rollout (HF ``generate`` in a Ray actor, weights synced from the actor)
- ``launcher``: the CPU hydra overrides + environment, and a subprocess runner with a timeout
- ``assets``: a tiny random Qwen2, a byte-level tokenizer, verl-format parquet, all built locally
- ``smoke_task``: a two-step smoke task whose reward has several components
- ``compat``: feature detection of verl internals (deferred patches: ``saw_verl.integrations.import_hooks``)

It relies on verl 0.9.1 internals and raises ``compat.HarnessCompatError`` naming any that changed.
"""
