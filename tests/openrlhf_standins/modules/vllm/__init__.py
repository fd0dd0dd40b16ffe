"""Import stand-in for vLLM (CUDA-only wheel) so OpenRLHF's modules import on a CPU test machine.

Only the names OpenRLHF imports at module level exist; using any of them fails loudly.
"""


class SamplingParams:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("vllm is a test stand-in (tests/openrlhf_standins): not available on this machine")
