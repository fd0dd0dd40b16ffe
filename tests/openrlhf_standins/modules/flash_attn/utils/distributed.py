"""Stand-in: the name openrlhf.models.ring_attn_utils imports; not usable."""

from flash_attn.bert_padding import _unavailable as all_gather  # noqa: F401
