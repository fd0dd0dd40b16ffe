"""ToolRL reward for verl's `reward.custom_reward_function`: two dimensions, the same keys for every sample.

Scoring is verl's own ToolRL scorer (`verl.utils.reward_score.rlla`), called on its two component
functions, so the numbers are exactly ToolRL's:
- format in {0, 1}: the <think>/<tool_call>/<response> layout that the ground truth asks for;
- correctness in [-3, 3]: tool names, parameter names and parameter values against the ground truth
  (-3 when a tool call is expected but missing or unparsable; 0 when none is expected).

What this wrapper changes: `rlla.compute_score` picks its chat-template split from the experiment
name and raises unless it contains "qwen" or "llama"; here the assistant text is cut out of any
Qwen (ChatML) or Llama-3 template, whatever the run is called. It also prints nothing.
"""

from verl.utils.reward_score import rlla

FORMAT_RANGE = (0.0, 1.0)
CORRECTNESS_RANGE = (-3.0, 3.0)
REWARD_KEYS = ("correctness", "format")

# (start of the assistant turn, end of a turn) for the chat templates we know.
_TEMPLATE_MARKERS = (
    ("<|im_start|>assistant", ("<|im_end|>", "<|endoftext|>")),
    ("<|start_header_id|>assistant<|end_header_id|>", ("<|eot_id|>", "<|end_of_text|>")),
)


def assistant_text(solution_str: str) -> str:
    """The assistant's answer: text after the last assistant header, up to the end-of-turn marker, stripped.

    verl decodes responses with skip_special_tokens=True, so usually there is no marker and this
    only strips whitespace (which matters: ToolRL's format check anchors on a leading <think>).
    """
    text = solution_str
    for start, ends in _TEMPLATE_MARKERS:
        if start in text:
            text = text.rsplit(start, 1)[1]
        for end in ends:
            text = text.split(end, 1)[0]
    return text.strip()


def toolrl_scores(answer: str, ground_truth: str) -> dict:
    """{"correctness", "format"} of one assistant answer against ToolRL's ground-truth output."""
    completions = [[{"role": "assistant", "content": answer}]]
    fmt = rlla.customize_format_reward_func(
        completions, [ground_truth], 0, FORMAT_RANGE[1], FORMAT_RANGE[0], do_print=False
    )[0]
    correctness = rlla.customize_correctness_reward_tool(
        completions, [ground_truth], 0, CORRECTNESS_RANGE[1], CORRECTNESS_RANGE[0], do_print=False
    )[0]
    return {"correctness": float(correctness), "format": float(fmt)}


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_reward_loop_kwargs) -> dict:
    """verl custom reward: {"score": correctness + format, "correctness", "format"} for every sample.

    `score` (the sum, as ToolRL trains with) is what plain `grpo` optimises; `gdpo` and the SAW
    estimators read the two keys listed in `algorithm.gdpo_reward_keys`. verl's reward loop may pass
    extra keyword arguments (e.g. a reward-router address); they do not affect the score.
    """
    if not isinstance(ground_truth, str):
        raise TypeError(
            f"ToolRL ground truth must be the reference output string, got {type(ground_truth).__name__} "
            f"(data_source={data_source!r}); rebuild the parquet with recipes/tool_calling/prepare_toolrl.py"
        )
    scores = toolrl_scores(assistant_text(solution_str), ground_truth)
    return {"score": scores["correctness"] + scores["format"], **scores}
