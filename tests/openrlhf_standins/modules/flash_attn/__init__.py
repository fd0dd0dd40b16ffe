"""Import stand-in for flash-attn (CUDA-only) so OpenRLHF's modules import on a CPU test machine.

Only the names OpenRLHF imports at module level exist; calling any of them fails loudly.
"""
