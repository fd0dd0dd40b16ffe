"""SAW for OpenRLHF (>= 0.10.2; tested with 0.10.2, 0.11.0 and 0.11.2): the only saw_verl code that imports it.

The reward function (``--reward.remote_url reward_func.py``; OpenRLHF calls it one sample at a time)
returns every SAW key in ``extra_logs``; its ``rewards`` stay OpenRLHF's logged ``reward``::

    def reward_func(queries, prompts, labels):
        correct, fmt = score(queries[0], labels[0])
        return {"rewards": torch.tensor([correct + fmt]), "scores": torch.tensor([correct]),
                "extra_logs": {"correct": torch.tensor([correct]), "format": torch.tensor([fmt])}}

Drop-in launcher (the usual ``openrlhf.cli.train_ppo_ray`` flags)::

    python -m saw_verl.integrations.openrlhf ... --rollout.n_samples_per_prompt 8 --algo.kl.use_loss \\
        --algo.advantage.estimator saw_gdpo --saw.reward_keys correct,format [--saw.reward_min 0,0] \\
        [--saw.reward_weights 1,1] [--saw.preset paper|official] [--saw.dynamic true|false]

Your own driver, or ``ray job submit`` of plain ``openrlhf.cli.train_ppo_ray``: pass
``saw_runtime_env("saw_gdpo", ["correct", "format"])`` as (part of) the Ray runtime_env (``--runtime-env-json``)
and run OpenRLHF with ``--algo.advantage.estimator dr_grpo`` (saw_gdpo: also ``--reward.clip_range
-1000000000 1000000000``); the launcher as the job's entrypoint needs neither.

How: a Ray ``worker_process_setup_hook`` (:mod:`.hook`) wraps
``RemoteExperienceMaker.compute_advantages_and_returns`` in the one worker that imports it (the
``PPOTrainer`` actor, or the async ``TrainingActor``). The wrapper (:mod:`.advantages`) computes the
per-rollout SAW advantage with the core (float64, groups = OpenRLHF's prompt groups), writes it into
``Experience.rewards`` and delegates to OpenRLHF's ``dr_grpo``, which subtracts each group's mean (0
up to float32 rounding here), puts the value on the last response token and, with gamma forced to 1,
on every response token: the spec's ``A(j) * response_mask``. ``--saw.conditions`` gate the rewards first and
``--saw.weight_schedule`` gives the static weights at the step OpenRLHF logs (``global_step + 1``, handed over by
a wrapper of ``BasePPOTrainer.train_step``; docs/openrlhf.md). Metrics ``saw/{key}/{weight,cv,mean,std}``, ``saw/{key}/alpha``
and, for a conditioned key, ``saw/{key}/gated_fraction`` go through ``Experience.info`` as (B,) tensors. With
``--saw.history_decay`` the history pool travels in the checkpoints' client states (:mod:`.checkpoints`).

Where this differs from the specification (docs/spec.md) and from verl:
- saw_gdpo whitens over rollouts (each rollout weight 1; unbiased variance, eps 1e-8), not over
  response tokens: the delegate subtracts group means, which would undo a token-weighted mean. Equal
  to the spec when all responses have the same length; TRL whitens per rollout too.
- Epsilons are the spec's, not OpenRLHF's: group std + 1e-6 (``group_norm`` uses 1e-9), and a group
  whose rollouts all score the same gets 0 exactly (``group_norm`` divides float32 noise by 1e-9).
- Without ``--algo.kl.use_loss`` (and ``--algo.kl.init_coef`` > 0) OpenRLHF adds its per-token KL
  penalty to SAW's advantage, as it does for its own estimators.
- ``--reward.clip_range`` clips saw_grpo's z-scores as it clips ``group_norm``'s (never, with the
  default +-10 and groups of <= 101); for saw_gdpo a range that can clip is refused.
- Refused: length penalties (``--reward.overlong_buffer_len``, ``--reward.stop_properly_penalty_coef``:
  they would act on the advantage; make length a SAW key) and ``--algo.advantage.no_std_norm`` (no Dr.GRPO mode).
"""

from saw_verl.integrations import require_trainer

require_trainer("openrlhf", "openrlhf")  # found, not imported: the Ray hook imports no OpenRLHF
from saw_verl.integrations.openrlhf.options import saw_runtime_env  # noqa: E402

__all__ = ["saw_runtime_env"]
