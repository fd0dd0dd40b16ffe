"""Stand-in: the name openrlhf.trainer.ray.vllm_engine imports."""


def random_uuid() -> str:
    raise RuntimeError("vllm is a test stand-in (tests/openrlhf_standins): not available on this machine")
