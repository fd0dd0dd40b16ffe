"""Stand-in: the names openrlhf.models.ring_attn_utils imports; none is usable."""


def _unavailable(*args, **kwargs):
    raise RuntimeError("flash_attn is a test stand-in (tests/openrlhf_standins): not available on this machine")


index_first_axis = pad_input = rearrange = unpad_input = _unavailable
