"""recipes/tool_calling: the ToolRL reward wrapper, the data preparation and the BFCL checker, on hand-made cases."""

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tool_calling"
sys.path.insert(0, str(RECIPE))

import bfcl_checker  # noqa: E402
import evaluate_bfcl  # noqa: E402
import prepare_toolrl  # noqa: E402
from verl.utils.import_utils import load_extern_object  # noqa: E402
from verl.utils.reward_score import rlla  # noqa: E402

# Loaded exactly as verl's reward loop loads it (by file path).
compute_score = load_extern_object(str(RECIPE / "toolrl_reward.py"), "compute_score")


def tool_answer(*calls, think="<think>Weather question.</think>"):
    lines = "\n".join(json.dumps(call) for call in calls)
    return f"{think}\n<tool_call>\n{lines}\n</tool_call>"


WEATHER = {"name": "get_weather", "parameters": {"city": "Beijing", "unit": "celsius"}}
GT_TOOL = tool_answer(WEATHER)
GT_CHAT = "<think>Just a greeting.</think>\n<response>Hello! How can I help?</response>"

# (id, solution, ground truth, expected correctness, expected format); hand-computed from ToolRL's rule:
# correctness = 6 * matched / (1 + sum(1 + n_params)) - 3, matched = name overlap + key overlap + equal values.
CASES = [
    ("exact_call", GT_TOOL, GT_TOOL, 3.0, 1.0),
    # 1 (name) + 1 (keys) + 1 (unit) of 4 -> 6 * 3/4 - 3
    ("wrong_value", tool_answer({**WEATHER, "parameters": {"city": "Shanghai", "unit": "celsius"}}), GT_TOOL, 1.5, 1.0),
    # 1 + 0.5 (keys {city} vs {city, unit}) + 1 (city) of 4 -> 6 * 2.5/4 - 3
    ("missing_parameter", tool_answer({**WEATHER, "parameters": {"city": "Beijing"}}), GT_TOOL, 0.75, 1.0),
    ("wrong_tool", tool_answer({**WEATHER, "name": "get_time"}), GT_TOOL, -3.0, 1.0),
    (
        "unparsable_json",
        '<think>x</think>\n<tool_call>\n{"name": "get_weather", "parameters": {\n</tool_call>',
        GT_TOOL,
        -3.0,
        1.0,
    ),
    ("answer_instead_of_call", "<think>x</think>\n<response>It is sunny.</response>", GT_TOOL, -3.0, 0.0),
    ("missing_think_block", tool_answer(WEATHER, think="").lstrip(), GT_TOOL, 3.0, 0.0),
    ("no_call_expected", "<think>Greeting.</think>\n<response>Hi there!</response>", GT_CHAT, 0.0, 1.0),
    ("call_when_none_expected", GT_TOOL, GT_CHAT, 0.0, 0.0),
]


@pytest.mark.parametrize("solution,ground_truth,correctness,fmt", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_toolrl_reward_hand_cases(solution, ground_truth, correctness, fmt):
    result = compute_score("toolrl_rlla", solution, ground_truth, extra_info={})
    assert set(result) == {"score", "correctness", "format"}
    assert result["correctness"] == pytest.approx(correctness)
    assert result["format"] == fmt
    assert result["score"] == pytest.approx(correctness + fmt)


@pytest.mark.parametrize("solution,ground_truth", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_toolrl_reward_equals_verls_rlla(solution, ground_truth):
    ours = compute_score("toolrl_rlla", solution, ground_truth)
    verls = rlla.compute_score("rlla", solution, ground_truth, {"experiment_name": "qwen-run"})
    assert (ours["correctness"], ours["format"]) == (verls["accuracy_reward"], verls["format_reward"])


@pytest.mark.parametrize(
    "wrapped",
    [
        f"<|im_start|>assistant\n{GT_TOOL}<|im_end|>\n<|endoftext|>",
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{GT_TOOL}<|eot_id|>",
        f"\n  {GT_TOOL}  \n",
    ],
    ids=["qwen_template", "llama3_template", "whitespace"],
)
def test_toolrl_reward_ignores_chat_template_and_experiment_name(wrapped):
    with pytest.raises(NotImplementedError):  # what verl's scorer does with a run not named qwen/llama
        rlla.compute_score("rlla", GT_TOOL, GT_TOOL, {"experiment_name": "saw_gdpo_run"})
    result = compute_score("toolrl_rlla", wrapped, GT_TOOL, extra_info={"experiment_name": "saw_gdpo_run"})
    assert (result["correctness"], result["format"]) == (3.0, 1.0)


def test_toolrl_reward_rejects_non_string_ground_truth():
    with pytest.raises(TypeError, match="prepare_toolrl.py"):
        compute_score("toolrl_rlla", GT_TOOL, {"calls": []})


# ----- data preparation -----


def toolrl_records(count):
    records = []
    for i in range(count):
        output = tool_answer({"name": f"tool_{i}", "parameters": {"x": i}}) if i % 3 else GT_CHAT
        records.append({"instruction": f"system prompt {i}", "input": f"user: question {i}", "output": output})
    return records


def test_prepare_toolrl_converts_and_splits_like_toolrl(tmp_path, capsys):
    records = toolrl_records(100)
    source = tmp_path / "rlla_rl.json"
    source.write_text(json.dumps(records))
    assert prepare_toolrl.main(["--input", str(source), "--out-dir", str(tmp_path / "out")]) == 0
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert (len(train), len(test)) == (98, 2)  # ToolRL holds out 2%
    by_input = {r["input"]: r for r in records}
    assert set(train["prompt"].map(lambda p: p[1]["content"])) | set(
        test["prompt"].map(lambda p: p[1]["content"])
    ) == set(by_input)
    row = train.iloc[0]
    system, user = row["prompt"]
    original = by_input[user["content"]]
    assert (system["role"], system["content"], user["role"]) == ("system", original["instruction"], "user")
    assert row["reward_model"]["ground_truth"] == original["output"]
    # The reference answer earns the top score of its own ground truth.
    best = compute_score(row["data_source"], original["output"], row["reward_model"]["ground_truth"])
    assert best["format"] == 1.0 and best["correctness"] == (3.0 if "<tool_call>" in original["output"] else 0.0)
    assert "100 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content,message",
    [
        (json.dumps({"instruction": "a", "input": "b", "output": "c"}), "top level is dict"),
        (json.dumps([{"instruction": "a", "input": "b"}]), "record 0 field 'output' is missing"),
        (json.dumps([{"instruction": "a", "input": 3, "output": "c"}]), "record 0 field 'input' is int"),
        (
            json.dumps(
                toolrl_records(2) + [{"instruction": "a", "input": "b", "output": "<tool_call>\n{oops\n</tool_call>"}]
            ),
            "record 2 'output'",
        ),
        (json.dumps([{"instruction": "a", "input": "b", "output": tool_answer({"name": "f"})}]), "record 0 'output'"),
        ('{"prompt": "SUBREDDIT: r/x", "label": "tl;dr"}\n{"prompt": "y", "label": "z"}\n', "is not JSON"),
    ],
    ids=[
        "object_not_list",
        "missing_output",
        "input_not_text",
        "bad_call_json",
        "call_without_parameters",
        "jsonl_file",
    ],
)
def test_prepare_toolrl_rejects_wrong_files(tmp_path, capsys, content, message):
    source = tmp_path / "wrong.json"
    source.write_text(content)
    with pytest.raises(prepare_toolrl.ToolRLFormatError, match=message):
        prepare_toolrl.load_records(str(source))
    assert prepare_toolrl.main(["--input", str(source), "--out-dir", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ----- BFCL checking -----

AREA_DOC = {
    "name": "calc_area",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer"},
            "height": {"type": "float"},
            "unit": {"type": "string"},
            "sides": {"type": "array", "items": {"type": "integer"}},
            "meta": {"type": "dict"},
        },
        "required": ["base", "height"],
    },
}
AREA_TRUTH = [
    {
        "calc_area": {
            "base": [10],
            "height": [5.0],
            "unit": ["square meters", ""],
            "sides": [[3, 4], ""],
            "meta": [{"tag": ["a"]}, ""],
        }
    }
]
PERIM_DOC = {
    "name": "calc_perimeter",
    "parameters": {"type": "dict", "properties": {"side": {"type": "integer"}}, "required": ["side"]},
}


def area(**params):
    return {"calc_area": {"base": 10, "height": 5.0, **params}}


@pytest.mark.parametrize(
    "calls,ok",
    [
        ([area()], True),
        ([area(unit="Square-Meters")], True),  # case, spaces and dashes are ignored
        ([area(height=5)], True),  # an int is fine for a float
        ([area(sides=[3, 4], meta={"tag": "A"})], True),
        ([area(base="10")], False),
        ([area(height=6.0)], False),
        ([area(sides=[3.0, 4.0])], False),  # array items are type-checked
        ([area(meta={"tag": "b"})], False),
        ([area(colour="red")], False),
        ([{"calc_area": {"base": 10}}], False),
        ([{"calc_volume": {"base": 10, "height": 5.0}}], False),
        ([area(), area()], False),
        ([], False),
        (None, False),
    ],
    ids=[
        "exact", "string_normalised", "int_for_float", "array_and_dict", "wrong_type", "wrong_value", "array_item_type",
        "dict_value", "unexpected_param", "missing_required", "wrong_function", "two_calls", "no_call", "undecodable",
    ],
)  # fmt: skip
def test_bfcl_simple_category(calls, ok):
    assert (bfcl_checker.entry_error("simple_python", [AREA_DOC], calls, AREA_TRUTH) is None) == ok


def test_bfcl_parallel_matches_in_any_order_once_each():
    truth = AREA_TRUTH + [{"calc_perimeter": {"side": [4]}}]
    docs = [AREA_DOC, PERIM_DOC]
    perimeter = {"calc_perimeter": {"side": 4}}
    assert bfcl_checker.entry_error("parallel_multiple", docs, [perimeter, area()], truth) is None
    assert bfcl_checker.entry_error("parallel_multiple", docs, [area(), area()], truth) is not None
    assert bfcl_checker.entry_error("live_parallel", docs, [area()], truth) is not None


def test_bfcl_relevance_categories_and_decoding():
    no_call = bfcl_checker.decode_toolrl_calls("<think>none fits</think>\n<response>I cannot.</response>")
    broken = bfcl_checker.decode_toolrl_calls("<think>x</think>\n<tool_call>\n{broken\n</tool_call>")
    one_call = bfcl_checker.decode_toolrl_calls(tool_answer({"name": "calc_area", "parameters": {"base": 1}}))
    assert (no_call, broken, one_call) == ([], None, [{"calc_area": {"base": 1}}])
    for category in bfcl_checker.NO_CALL_CATEGORIES:
        assert bfcl_checker.entry_error(category, [AREA_DOC], no_call, None) is None
        assert bfcl_checker.entry_error(category, [AREA_DOC], broken, None) is None  # BFCL: undecodable = no call
        assert bfcl_checker.entry_error(category, [AREA_DOC], one_call, None) is not None
    assert bfcl_checker.entry_error("live_relevance", [AREA_DOC], one_call, None) is None
    assert bfcl_checker.entry_error("live_relevance", [AREA_DOC], no_call, None) is not None
    with pytest.raises(ValueError, match="multi_turn_base"):
        bfcl_checker.entry_error("multi_turn_base", [AREA_DOC], one_call, None)


def test_evaluate_bfcl_prompts_and_score_on_a_small_data_dir(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "possible_answer").mkdir(parents=True)
    question = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Area of 10 by 5?"}]]
    entries = [{"id": f"simple_python_{i}", "question": question, "function": [AREA_DOC]} for i in range(3)]
    (data / "BFCL_v4_simple_python.json").write_text("\n".join(json.dumps(e) for e in entries))
    (data / "possible_answer" / "BFCL_v4_simple_python.json").write_text(
        "\n".join(json.dumps({"id": e["id"], "ground_truth": AREA_TRUTH}) for e in entries)
    )
    prompts = tmp_path / "prompts.jsonl"
    assert (
        evaluate_bfcl.main(["--data-dir", str(data), "prompts", "--out", str(prompts), "--categories", "simple_python"])
        == 0
    )
    first = json.loads(prompts.read_text().splitlines()[0])
    system, user = first["messages"]
    assert "1. Name: calc_area" in system["content"] and system["content"].endswith("Be brief.")
    assert user == {"role": "user", "content": "Area of 10 by 5?"}

    right = tool_answer({"name": "calc_area", "parameters": {"base": 10, "height": 5}})
    generations = [{"id": "simple_python_0", "generation": right}, {"id": "simple_python_1", "generation": "no idea"}]
    gen_file, report_file = tmp_path / "gen.jsonl", tmp_path / "report.json"
    gen_file.write_text("\n".join(json.dumps(g) for g in generations))
    assert (
        evaluate_bfcl.main(
            ["--data-dir", str(data), "score", "--generations", str(gen_file), "--report", str(report_file)]
        )
        == 0
    )
    report = json.loads(report_file.read_text())["categories"]["simple_python"]
    assert report == {"correct": 1, "total": 3, "missing": 1, "accuracy": pytest.approx(1 / 3)}
    assert "not BFCL's overall score" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a category this script does not score is refused before anything is written
        evaluate_bfcl.main(
            ["--data-dir", str(data), "prompts", "--out", str(tmp_path / "java.jsonl"), "--categories", "simple_java"]
        )
    assert not (tmp_path / "java.jsonl").exists()
    gen_file.write_text(json.dumps({"id": "simple_python_9", "generation": right}))
    with pytest.raises(ValueError, match="simple_python_9"):
        evaluate_bfcl.score(evaluate_bfcl._read_jsonl(str(gen_file)), str(data))


@pytest.mark.skipif(
    importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)"
)
def test_bfcl_checker_on_real_bfcl_data():
    """Answers built from BFCL's own ground truth pass; answers with no call fail every AST category.

    A few real entries cannot pass this way (e.g. ground truth that omits a required parameter or lists
    ints for a float array, which BFCL's own checker rejects too), hence >= 95% rather than 100%.
    """
    data_dir = evaluate_bfcl.bfcl_data_dir()
    for category in bfcl_checker.AST_CATEGORIES:
        entries = evaluate_bfcl.load_category(data_dir, category)
        passed = sum(
            bfcl_checker.entry_error(category, e["function"], _answer_from_truth(e["ground_truth"]), e["ground_truth"])
            is None
            for e in entries
        )
        assert passed >= 0.95 * len(entries), category
        assert all(bfcl_checker.entry_error(category, e["function"], [], e["ground_truth"]) for e in entries)


def _first(values):
    return next((v for v in values if v != ""), None)


def _answer_from_truth(ground_truth):
    def value(v):
        flat = lambda d: {k: _first(x) for k, x in d.items() if _first(x) is not None}  # noqa: E731
        if isinstance(v, dict):
            return flat(v)
        return [flat(d) for d in v] if isinstance(v, list) and v and all(isinstance(d, dict) for d in v) else v

    return [
        {name: {p: value(_first(v)) for p, v in allowed.items() if _first(v) is not None}}
        for call in ground_truth
        for name, allowed in call.items()
    ]
