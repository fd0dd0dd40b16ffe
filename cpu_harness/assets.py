"""Tiny local assets for CPU runs: a random Qwen2, a byte-level tokenizer, verl-format parquet.

Nothing is downloaded. The tokenizer has one token per byte (256) plus three ChatML specials, so
any text round-trips and chat templates work; the model is a few hundred thousand parameters at
most. ``tie_word_embeddings=False`` matters: verl's FSDP engine uses meta-tensor initialisation
only for untied embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

PAD, BOS_TURN, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Chat template that renders only the messages' text: generation starts right after the prompt.
PLAIN_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
RL_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def byte_level_tokenizer(chat_template: str = CHATML_TEMPLATE) -> PreTrainedTokenizerFast:
    """259-token tokenizer: the 256 byte symbols of GPT-2's byte-level alphabet, then PAD/BOS_TURN/EOS."""
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in (PAD, BOS_TURN, EOS):
        vocab[special] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([PAD, BOS_TURN, EOS])
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, bos_token=None,
                                   unk_token=None, chat_template=chat_template)


@dataclass(frozen=True)
class TinyQwen2:
    """Shape of the random model; the defaults give 107,456 parameters with the byte tokenizer."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    seed: int = 0

    def config(self, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
        return Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None, torch_dtype="float32",
        )


def build_tiny_model(out_dir: str | Path, shape: TinyQwen2 = TinyQwen2(),
                     chat_template: str = CHATML_TEMPLATE) -> Path:
    """Write tokenizer + randomly initialised Qwen2 (seeded by ``shape.seed``) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer(chat_template)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(shape.seed)
    model = Qwen2ForCausalLM(shape.config(tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir


def rl_row(data_source: str, prompt: str, ground_truth: str, split: str, index: int,
           ability: str = "synthetic", **extra_info) -> dict:
    """One row in verl's RL parquet schema (chat prompt, rule-based ground truth)."""
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": prompt}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"split": split, "index": index, **extra_info},
    }


def write_rl_parquet(rows: Iterable[Mapping], path: str | Path) -> Path:
    """Write rows (see :func:`rl_row`) to ``path``; refuses rows missing a column verl reads."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    for i, row in enumerate(rows):
        missing = [c for c in RL_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"row {i} for {path} lacks verl column(s) {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path
