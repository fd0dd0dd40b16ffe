"""Check tool calls against BFCL-v4 ground truth, for BFCL's single-turn Python categories.

Our own implementation of the rules of BFCL's AST checker (bfcl_eval/eval_checker/ast_eval), which
cannot be imported without BFCL's heavy API-client dependencies:
- a call is {function_name: {param: value}}; the ground truth gives, per expected call, the
  allowed values of each parameter ("" among them = the parameter may be omitted);
- the function name must match; required parameters must be present; every given parameter must
  be documented and appear in the ground truth; omitted ones must be optional;
- types follow the JSON schema (integer, float, string, boolean, array/tuple, dict, any); an int is
  accepted for a float; array items are type-checked one level deep; a ground truth whose type
  differs from the schema (a "variable") is compared as given;
- strings compare case-insensitively without spaces and ,./-_*^ (also inside lists and dicts);
- `simple`: exactly one call; `multiple`: one call, of the right function; `parallel*`: as many
  calls as expected, matched in any order; `irrelevance`: no call; `live_relevance`: any call.
Not covered: Java/JavaScript, multi-turn, memory, web search, format sensitivity, and BFCL's
overall score (a weighted mix of all of them).
"""

import json
import re

PYTHON_TYPES = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)  # fmt: skip
NO_CALL_CATEGORIES = ("irrelevance", "live_irrelevance")
ANY_CALL_CATEGORIES = ("live_relevance",)
SUPPORTED_CATEGORIES = AST_CATEGORIES + NO_CALL_CATEGORIES + ANY_CALL_CATEGORIES

_IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")


def standardize(text: str) -> str:
    return _IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _standardize_item(item):
    return standardize(item) if isinstance(item, str) else item


def decode_toolrl_calls(generation: str):
    """BFCL calls [{name: params}, ...] from a ToolRL-format answer's first <tool_call> block.

    [] when there is no block; None when the block does not parse (BFCL counts that as "no call").
    """
    if "<tool_call>" not in generation:
        return []
    block = generation.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0].strip()
    calls = []
    for line in filter(None, (line.strip() for line in block.split("\n"))):
        try:
            call = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not (
            isinstance(call, dict)
            and isinstance(call.get("name"), str)
            and isinstance(call.get("parameters", {}), dict)
        ):
            return None
        calls.append({call["name"]: call.get("parameters", {})})
    return calls


def _dict_matches(value: dict, allowed: dict) -> bool:
    for key, item in value.items():
        if key not in allowed or _standardize_item(item) not in [_standardize_item(a) for a in allowed[key]]:
            return False
    return all(key in value or "" in values for key, values in allowed.items())


def _value_error(param: str, value, schema: dict, allowed: list):
    """None if `value` is acceptable for `param`, else the reason."""
    declared = schema.get("type")
    if declared not in PYTHON_TYPES:
        raise ValueError(f"parameter {param!r} has non-Python type {declared!r}: category not supported")
    expected_type = PYTHON_TYPES[declared]
    answer_type = next((type(a) for a in allowed if a != ""), None)
    if declared == "float" and type(value) is int:
        value = float(value)
    if answer_type is not None and answer_type is not expected_type:  # a "variable": compare as given
        if type(value) not in (expected_type, answer_type) or value not in allowed:
            return f"{param}={value!r} not in {allowed}"
        return None
    if type(value) is not expected_type:
        return f"{param}={value!r} is {type(value).__name__}, schema says {declared}"
    item_type = PYTHON_TYPES.get(schema.get("items", {}).get("type")) if expected_type is list else None
    if item_type is not None and any(type(item) is not item_type for item in value):
        return f"{param}={value!r}: items must be {schema['items']['type']}"
    if expected_type is dict:
        ok = any(a != "" and _dict_matches(value, a) for a in allowed)
    elif expected_type is list and item_type is dict:
        ok = any(
            isinstance(a, list)
            and len(a) == len(value)
            and all(_dict_matches(v, d) for v, d in zip(value, a, strict=True))
            for a in allowed
        )
    elif expected_type is str:
        ok = standardize(value) in [standardize(a) for a in allowed if isinstance(a, str)]
    elif expected_type is list:
        # BFCL standardizes every allowed entry as a list; the optional marker "" becomes [].
        candidates = [[_standardize_item(x) for x in a] for a in allowed if isinstance(a, (list, str))]
        ok = [_standardize_item(x) for x in value] in candidates
    else:
        ok = value in allowed
    return None if ok else f"{param}={value!r} not in {allowed}"


def call_error(doc: dict, call: dict, expected: dict):
    """None if `call` ({name: params}) satisfies `expected` ({name: {param: allowed values}}), else why not."""
    ((name, allowed),) = expected.items()
    if list(call) != [name]:
        return f"called {list(call)}, expected {name!r}"
    params = call[name]
    schema = doc["parameters"]
    properties = schema.get("properties", {})
    missing = [p for p in schema.get("required", []) if p not in params]
    if missing:
        return f"{name}: missing required {missing}"
    for param, value in params.items():
        if param not in properties or param not in allowed:
            return f"{name}: unexpected parameter {param!r}"
        reason = _value_error(param, value, properties[param], allowed[param])
        if reason:
            return f"{name}: {reason}"
    omitted = [p for p, values in allowed.items() if p not in params and "" not in values]
    return f"{name}: omitted {omitted}, which the answer needs" if omitted else None


def entry_error(category: str, functions: list, calls, ground_truth):
    """None if the decoded `calls` (None = undecodable) are right for this BFCL entry, else why not."""
    if category not in SUPPORTED_CATEGORIES:
        raise ValueError(f"BFCL category {category!r} is not supported; supported: {SUPPORTED_CATEGORIES}")
    if category in NO_CALL_CATEGORIES:
        return f"made {len(calls)} call(s), expected none" if calls else None
    if category in ANY_CALL_CATEGORIES:
        return None if calls else "made no call, expected one"
    if not calls:
        return "no decodable tool call"
    if len(calls) != len(ground_truth):
        return f"made {len(calls)} call(s), expected {len(ground_truth)}"
    docs = {doc["name"]: doc for doc in functions}
    unmatched = list(range(len(calls)))
    for expected in ground_truth:
        (name,) = expected
        if name not in docs:
            raise ValueError(f"ground truth calls {name!r}, which the entry's functions do not document")
        reasons = [(i, call_error(docs[name], calls[i], expected)) for i in unmatched]
        match = next((i for i, reason in reasons if reason is None), None)
        if match is None:
            return "; ".join(reason for _, reason in reasons)
        unmatched.remove(match)
    return None
