"""Stand-in: the name openrlhf.trainer.ray.vllm_engine imports."""

from vllm import SamplingParams as TokensPrompt  # noqa: F401  (raises when used)
