"""What bf16 autocast and the end-of-turn padding do to the training signal of the real model, on CPU.

    PYTHONPATH=. python recipes/tool_calling/precision_probe.py --model MODEL [--prompts 4] [--generations 4]

Samples completions of the first training prompts as the trainer does (temperature 0.7, at most 48 tokens,
stop at the call line's end), then scores every sampled token's log-probability in float32 and under bf16
autocast (the largest and the mean absolute difference), and, for each completion that stopped at a newline,
the log-probability of the end-of-turn token that generate pads it with: the token TRL's completion mask
trained before the cut (cpu_experiment.tool_call_trainer). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_experiment  # noqa: E402
import cpu_task  # noqa: E402


def token_logps(model, ids, start: int, autocast: bool):
    """Log-probabilities of ids[start:] given what precedes each, in float32 or under CPU bf16 autocast."""
    import torch

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids.unsqueeze(0)).logits[0, start - 1 : -1].float()
    return torch.log_softmax(logits, dim=-1).gather(1, ids[start:].unsqueeze(1)).squeeze(1)


def probe(model_path: Path, prompts: int, generations: int, seed: int) -> dict:
    import torch

    torch.manual_seed(seed)
    model, tokenizer = cpu_experiment.load(model_path)
    model.eval()
    stop_ids = cpu_experiment.stop_token_ids(tokenizer)
    end_of_turn = tokenizer.eos_token_id
    differences, padding_logps, stopped_at_newline = [], [], 0
    for entry in cpu_task.split_entries()[0][:prompts]:
        prompt = tokenizer(cpu_task.prompt_text(entry, tokenizer), return_tensors="pt", add_special_tokens=False)
        out = model.generate(**prompt, do_sample=True, temperature=cpu_experiment.TEMPERATURE, eos_token_id=stop_ids,
                             max_new_tokens=cpu_experiment.MAX_COMPLETION_TOKENS, num_return_sequences=generations)
        start = prompt["input_ids"].shape[1]
        for row in out:
            completion = cpu_experiment.cut_after_stop(row[start:].tolist(), set(stop_ids))
            ids = torch.tensor(row[:start].tolist() + completion)
            full, half = token_logps(model, ids, start, False), token_logps(model, ids, start, True)
            differences += (full - half).abs().tolist()
            if completion[-1] != end_of_turn and completion[-1] in stop_ids:  # stopped at a newline
                stopped_at_newline += 1
                padded = torch.cat([ids, torch.tensor([end_of_turn])])
                padding_logps.append(float(token_logps(model, padded, len(padded) - 1, False)[0]))
    return {
        "completions": prompts * generations, "sampled_tokens": len(differences),
        "bf16_logp_abs_diff_max": round(max(differences), 4),
        "bf16_logp_abs_diff_mean": round(sum(differences) / len(differences), 5),
        "stopped_at_newline": stopped_at_newline,
        "padding_end_of_turn_logp": [round(v, 2) for v in sorted(padding_logps)],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the folder prepare_smollm2.py wrote")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.model.resolve(), args.prompts, args.generations, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
