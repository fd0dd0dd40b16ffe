"""SAW for Hugging Face TRL (trl>=0.27,<2; tested with 1.16): the only saw_verl code that imports trl.

    from saw_verl.integrations.trl import SAWGRPOConfig, SAWGRPOTrainer

    args = SAWGRPOConfig(output_dir="out", saw_estimator="saw_gdpo", saw_reward_min=[0.0, 0.0])
    trainer = SAWGRPOTrainer(model, reward_funcs=[format_reward, correct_reward], args=args, train_dataset=ds)

`reward_weights` are the static alpha_k; SAW's weights w_k are recomputed from each generation batch
and TRL aggregates with w_k * alpha_k: `saw_grpo` = `sum_then_normalize`, `saw_gdpo` =
`normalize_then_sum` (TRL's epsilons 1e-4 and sequence-level whitening, not verl's token-level one).
"""

from saw_verl.integrations.trl.config import SAWGRPOConfig
from saw_verl.integrations.trl.trainer import SAWGRPOTrainer

__all__ = ["SAWGRPOConfig", "SAWGRPOTrainer"]
