"""The CUDA default backend (saw_verl.kernel_check): the Triton path only for kernel sources that passed the GPU
check (scripts/gpu_check.sh), recorded in saw_verl/verified_kernels.py; the device decision is faked on CPU."""

from __future__ import annotations

import importlib.util
import logging
import shutil

import pytest
import torch

from saw_verl import kernel_check, verified_kernels
from saw_verl.advantages import resolve_backend


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="the choice needs triton installed")
def test_cuda_default_is_triton_only_for_kernel_sources_that_passed_the_gpu_check(monkeypatch, caplog):
    """The device decision faked (a cuda device object): no record or a record of other kernel sources -> torch and
    one WARNING saying why; a record of these sources -> triton; SAW_VERL_BACKEND=triton forces the kernels."""
    monkeypatch.delenv("SAW_VERL_BACKEND", raising=False)
    cuda = torch.device("cuda")
    passed = {"sha256": kernel_check.kernel_fingerprint(), "gpu": "NVIDIA H200", "date": "2026-12-04"}
    records = [(None, "torch", "no GPU check pass is recorded"),
               ({**passed, "sha256": "0" * 64}, "torch", "the Triton kernels changed since the GPU check passed on "
                                                          "NVIDIA H200 on 2026-12-04"),
               (passed, "triton", None)]
    for record, expected, why in records:
        monkeypatch.setattr(verified_kernels, "VERIFIED_KERNELS", record)
        kernel_check.kernels_verified.cache_clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="saw_verl.kernel_check"):
            assert [resolve_backend(cuda) for _ in range(3)] == [expected] * 3
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == (0 if why is None else 1), said
        if why:
            assert why in said[0] and "SAW_VERL_BACKEND=triton forces the kernels" in said[0]
        monkeypatch.setenv("SAW_VERL_BACKEND", "triton")
        assert resolve_backend(cuda) == "triton"
        monkeypatch.delenv("SAW_VERL_BACKEND")
    kernel_check.kernels_verified.cache_clear()


def test_the_gpu_check_pass_records_the_kernel_fingerprint_and_any_change_breaks_it(tmp_path):
    record = tmp_path / "verified_kernels.py"
    written = kernel_check.record_pass("NVIDIA H100", "2026-12-07", record)
    namespace = {}
    exec(record.read_text(), namespace)
    assert namespace["VERIFIED_KERNELS"] == written
    assert kernel_check.unverified_reason(written, written["sha256"]) is None
    sources = tmp_path / "kernels"
    shutil.copytree(kernel_check.kernel_sources(), sources, ignore=shutil.ignore_patterns("__pycache__"))
    assert kernel_check.kernel_fingerprint(sources) == written["sha256"]
    (sources / "statistics.py").write_text((sources / "statistics.py").read_text() + "\n")
    assert kernel_check.unverified_reason(written, kernel_check.kernel_fingerprint(sources)).startswith(
        "the Triton kernels changed since the GPU check passed on NVIDIA H100 on 2026-12-07")
