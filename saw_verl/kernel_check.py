"""Whether the installed Triton kernels are the ones that passed the GPU check, and the fingerprint that says so.

CUDA tensors take the Triton path by default only when the sha256 of the kernel sources (`kernels/*.py`, shipped
as `saw_verl.kernels`) equals the one `scripts/gpu_check.sh` recorded in `saw_verl/verified_kernels.py` on its
pass; any other state runs the torch path and says once why. Reads files only: imports neither triton nor the
kernels.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)
RECORD = Path(__file__).with_name("verified_kernels.py")


def kernel_sources() -> Path:
    """The folder of saw_verl.kernels (kernels/ in a checkout, saw_verl/kernels in the wheel)."""
    return Path(importlib.util.find_spec("saw_verl.kernels").submodule_search_locations[0])


def kernel_fingerprint(folder: Optional[Path] = None) -> str:
    """sha256 over the names and bytes of the kernel sources (*.py, sorted by name)."""
    digest = hashlib.sha256()
    for source in sorted((folder or kernel_sources()).glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def unverified_reason(recorded: Optional[dict], fingerprint: str) -> Optional[str]:
    """None when `recorded` (VERIFIED_KERNELS: sha256, gpu, date) is a GPU check pass of these kernel sources;
    else why the Triton path is not the default."""
    if not recorded:
        return "no GPU check pass is recorded for the Triton kernels (saw_verl/verified_kernels.py)"
    if recorded.get("sha256") != fingerprint:
        return (f"the Triton kernels changed since the GPU check passed on {recorded.get('gpu')} on "
                f"{recorded.get('date')} (kernel sources sha256 {fingerprint[:12]}, "
                f"verified {str(recorded.get('sha256'))[:12]})")
    return None


@functools.lru_cache(maxsize=1)
def kernels_verified() -> bool:
    """True when the installed kernels passed the GPU check; else False, with one WARNING saying why."""
    from saw_verl.verified_kernels import VERIFIED_KERNELS

    reason = unverified_reason(VERIFIED_KERNELS, kernel_fingerprint())
    if reason is not None:
        logger.warning("saw_verl: CUDA tensors take the torch path: %s. SAW_VERL_BACKEND=triton forces the kernels; "
                       "bash scripts/gpu_check.sh on a GPU verifies them.", reason)
    return reason is None


def record_pass(gpu: str, date: str, record: Path = RECORD) -> dict:
    """Write these kernel sources' fingerprint as verified (the GPU check's pass) -> the record written."""
    verified = {"sha256": kernel_fingerprint(), "gpu": gpu, "date": date}
    text = RECORD.read_text()
    head = text[:text.index("VERIFIED_KERNELS = ")]
    record.write_text(f"{head}VERIFIED_KERNELS = {verified!r}\n")
    return verified
