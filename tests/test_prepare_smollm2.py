"""recipes/tool_calling/prepare_smollm2.py: a tiny GGUF made here -> a Hugging Face folder and back, on every
transformers the project supports (5.10 without a GGUF quantizer, 5.17 on with one that must be removed)."""

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "tool_calling"))

import prepare_smollm2  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed (pip install gguf)")
HIDDEN, FFN, LAYERS = prepare_smollm2.TINY_SHAPE


def check_folder(folder: Path) -> tuple:
    """Load the converted folder; assert what every conversion must give; return (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert model.config.eos_token_id == model.generation_config.eos_token_id == end_of_turn
    assert getattr(model.config, "quantization_config", None) is None
    messages = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    return model, tokenizer


def test_a_tiny_gguf_round_trips_bit_for_bit_in_float32(tmp_path):
    import torch

    tensors = prepare_smollm2.write_tiny_gguf(tmp_path / "tiny.gguf")
    out = prepare_smollm2.convert(tmp_path / "tiny.gguf", tmp_path / "hf")
    assert prepare_smollm2.saved_dtypes(out) == {"F32"}
    model, tokenizer = check_folder(out)
    assert model.config.num_hidden_layers == LAYERS and model.config.hidden_size == HIDDEN
    # Unpermuted tensors come back bit for bit (q/k are re-ordered by transformers' llama GGUF loader).
    assert torch.equal(model.model.embed_tokens.weight, torch.from_numpy(tensors["token_embd.weight"]))
    assert torch.equal(model.model.layers[1].self_attn.v_proj.weight, torch.from_numpy(tensors["blk.1.attn_v.weight"]))
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, torch.from_numpy(tensors["blk.0.ffn_down.weight"]))
    assert tokenizer("hi", add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids("hi")]


def test_the_loaded_model_has_no_quantizer_left(tmp_path):
    prepare_smollm2.write_tiny_gguf(tmp_path / "tiny.gguf")
    model = prepare_smollm2.load_dequantized(tmp_path / "tiny.gguf")
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert {p.dtype for p in model.parameters()} == {__import__("torch").float32}


def test_weights_saved_in_another_dtype_are_refused(tmp_path, monkeypatch):
    import torch

    prepare_smollm2.write_tiny_gguf(tmp_path / "tiny.gguf")
    real = prepare_smollm2.load_dequantized
    monkeypatch.setattr(prepare_smollm2, "load_dequantized", lambda gguf: real(gguf).to(torch.bfloat16))
    with pytest.raises(ValueError, match=r"\['BF16'\], not float32"):
        prepare_smollm2.convert(tmp_path / "tiny.gguf", tmp_path / "hf")


def test_a_gguf_without_chat_template_is_refused(tmp_path):
    prepare_smollm2.write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    with pytest.raises(ValueError, match="no chat template"):
        prepare_smollm2.convert(tmp_path / "plain.gguf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_command_line_writes_a_tiny_stand_in(tmp_path):
    assert prepare_smollm2.main(["--out", str(tmp_path / "model"), "--tiny"]) == 0
    model, _ = check_folder(tmp_path / "model")
    assert model.config.num_hidden_layers == LAYERS
