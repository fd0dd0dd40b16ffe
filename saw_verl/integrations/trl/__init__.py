"""SAW for Hugging Face TRL (trl>=0.27,<2; tested with 1.16.0): the only saw_verl code that imports trl.

    from saw_verl.integrations.trl import SAWGRPOConfig, SAWGRPOTrainer

    args = SAWGRPOConfig(output_dir="out", saw_estimator="saw_gdpo", saw_reward_min=[0.0, 0.0])
    trainer = SAWGRPOTrainer(model, reward_funcs=[format_reward, correct_reward], args=args, train_dataset=ds)

Reward keys are TRL's `reward_func_names`; `reward_weights` are the static alpha_k (>= 0). Each
generation batch, the SAW weights w_k (docs/spec.md Step 1, over the gathered batch, NaN = unscored left
out) become `reward_weights = w * alpha`, and TRL's own aggregation runs:

* `saw_grpo` = `sum_then_normalize` with `scale_rewards` "group" (docs/spec.md Step 2a) or "none" (no std
  division, Dr. GRPO); "batch" is refused.
* `saw_gdpo` = `normalize_then_sum` (docs/spec.md Step 2b).

Where TRL differs from the spec (and from saw_verl's verl estimators), TRL wins, so that
`saw_dynamic=False` is exactly `GRPOTrainer`: epsilon 1e-4 added to every std (spec 1e-6 in the
group z-score, sqrt(var + 1e-8) in the whitening); GDPO's final whitening over sequences, not tokens;
TRL's handling of constant groups (no exact-zero rule) and of completions no reward function scored
(advantage 0). Infinite rewards raise `SawInputError` naming the function and row. TRL's logged
`reward` becomes the SAW-weighted sum; `saw/static_weighted_reward` keeps the alpha-weighted one.

`saw_conditions` gate the rewards before TRL aggregates them, and `saw_weight_schedule` gives alpha at the
logged step, `trainer.state.global_step + 1` (docs/trl.md, "Conditions and weight schedules"); metrics
`saw/{name}/alpha` and, for a conditioned function, `saw/{name}/gated_fraction`.
"""

from saw_verl.integrations import require_trainer

require_trainer("trl", "trl")
from saw_verl.integrations.trl.config import SAWGRPOConfig  # noqa: E402
from saw_verl.integrations.trl.trainer import SAWGRPOTrainer  # noqa: E402

__all__ = ["SAWGRPOConfig", "SAWGRPOTrainer"]
