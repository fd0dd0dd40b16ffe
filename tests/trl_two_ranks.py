"""Two ranks of SAWGRPOTrainer on CPU (gloo) with a history: each rank writes its SawHistory state after training.

    python -m torch.distributed.run --nproc_per_node 2 tests/trl_two_ranks.py MODEL_DIR OUT_DIR

tests/test_trl_trainer.py runs it and compares the ranks' files.
"""

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from saw_verl.integrations.trl import SAWGRPOConfig, SAWGRPOTrainer


def sum_mod5(completion_ids, **kwargs):
    return [(sum(ids) % 5) / 4 for ids in completion_ids]


def first_mod3(completion_ids, **kwargs):
    return [float(ids[0] % 3) for ids in completion_ids]


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    args = SAWGRPOConfig(
        output_dir=out_dir, use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no", num_generations=4,
        per_device_train_batch_size=8, max_completion_length=3, max_steps=2, learning_rate=1e-2, beta=0.0, seed=7,
        saw_estimator="saw_gdpo", saw_history_decay=0.5,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompts = Dataset.from_list([{"prompt": f"copy {i % 10}"} for i in range(32)])
    trainer = SAWGRPOTrainer(model, [sum_mod5, first_mod3], args=args, train_dataset=prompts,
                             processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.train()
    rank = trainer.accelerator.process_index
    state = {"world_size": trainer.accelerator.num_processes, "history": trainer.saw_history.state_dict()}
    (Path(out_dir) / f"history_rank{rank}.json").write_text(json.dumps(state))


if __name__ == "__main__":
    main(*sys.argv[1:])
