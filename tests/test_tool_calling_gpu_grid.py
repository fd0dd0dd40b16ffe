"""recipes/tool_calling GPU grid: the bundle (model parts, wheels checked against their RECORD, the import check),
the step-count policy, the SVG figures, and the grid itself end to end on CPU with a random tiny GGUF model."""

import base64
import hashlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tool_calling"
sys.path.insert(0, str(RECIPE))

import gpu_bundle  # noqa: E402
import gpu_grid  # noqa: E402

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed")
needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed")
needs_bfcl = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed")


def _bundle_with_model(tmp_path: Path, payload: bytes, extra: int) -> tuple[Path, Path]:
    """part1/part2 holding `payload` xz-compressed and cut as prepare() cuts it, with their manifest."""
    import lzma

    part1, part2 = tmp_path / "part1", tmp_path / "part2"
    part1.mkdir()
    (part1 / "filler.bin").write_bytes(b"x" * extra)
    stream = tmp_path / "model.gguf.xz"
    stream.write_bytes(lzma.compress(payload))
    first, second = gpu_bundle.split_sizes(stream.stat().st_size, extra)
    parts = gpu_bundle.write_parts(stream, (part1, part2), first)
    model = {"gguf_bytes": len(payload), "gguf_sha256": hashlib.sha256(payload).hexdigest(),
             "xz_bytes": stream.stat().st_size, "xz_sha256": gpu_bundle.sha256_file(stream), "parts": parts}
    for folder in (part1, part2):
        (folder / gpu_bundle.MANIFEST).write_text(json.dumps({"model": model, "wheels": [], "bfcl": []}))
    return part1, part2


def test_split_sizes_balance_the_two_commands():
    first, second = gpu_bundle.split_sizes(90_000_000, 30_000_000)
    assert first + second == 90_000_000 and first + 30_000_000 == second
    assert gpu_bundle.split_sizes(10, 1_000) == (1, 9)  # part1 full of wheels still gets a byte of the model
    with pytest.raises(ValueError):
        gpu_bundle.split_sizes(1, 0)


def test_model_parts_reassemble_to_the_same_bytes(tmp_path):
    payload = bytes(range(256)) * 4000 + b"the end"
    part1, part2 = _bundle_with_model(tmp_path, payload, extra=300_000)
    assert (part1 / "model.gguf.xz.part1").stat().st_size >= 1 and (part2 / "model.gguf.xz.part2").stat().st_size >= 1
    gguf = tmp_path / "out" / "model.gguf"
    gpu_bundle.assemble([part1, part2], gguf)
    assert gguf.read_bytes() == payload


def test_a_damaged_or_missing_part_is_refused(tmp_path):
    part1, part2 = _bundle_with_model(tmp_path, b"model bytes " * 5000, extra=10)
    path = part2 / "model.gguf.xz.part2"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="damaged in transit"):
        gpu_bundle.assemble([part1, part2], tmp_path / "model.gguf")
    with pytest.raises(SystemExit, match="not found"):
        gpu_bundle.assemble([part1], tmp_path / "model.gguf")


def _wheel(tmp_path: Path, files: dict[str, bytes], tamper: str | None = None) -> Path:
    """A wheel of `files` with its RECORD; `tamper`: that file's content changes after RECORD was written."""
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    path = tmp_path / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data + (b"#" if name == tamper else b""))
        archive.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.mark.parametrize("tamper", [None, "tinypkg/__init__.py"])
def test_install_checks_every_file_against_the_record(tmp_path, tamper):
    files = {"tinypkg/__init__.py": b"VALUE = 42\n", "tinypkg-1.0.dist-info/METADATA": b"Name: tinypkg\nVersion: 1.0\n"}
    wheel = _wheel(tmp_path, files, tamper)
    part = tmp_path / "part1"
    part.mkdir()
    (part / wheel.name).write_bytes(wheel.read_bytes())
    entry = {"dist": "tinypkg", "version": "1.0", "file": wheel.name, "sha256": gpu_bundle.sha256_file(wheel)}
    (part / gpu_bundle.MANIFEST).write_text(json.dumps({"model": {}, "wheels": [entry], "bfcl": []}))
    site = tmp_path / "site"
    if tamper:
        with pytest.raises(SystemExit, match="RECORD"):
            gpu_bundle.install([part], site)
        return
    assert gpu_bundle.install([part], site) == [{"dist": "tinypkg", "version": "1.0"}]
    assert (site / "tinypkg" / "__init__.py").read_bytes() == b"VALUE = 42\n"


def test_pyarrow_pruning_keeps_what_datasets_imports():
    so = "cpython-312-x86_64-linux-gnu.so"
    for omitted in ("pyarrow/include/arrow/api.h", "pyarrow/tests/test_io.py", f"pyarrow/_flight.{so}",
                    "pyarrow/libarrow_flight.so.2600", "pyarrow/lib.pyx", "pyarrow/src/arrow/python/api.h",
                    "pyarrow/libarrow_s3.so.2600", f"pyarrow/_s3fs.{so}"):
        assert gpu_bundle.pyarrow_omitted(omitted), omitted
    for kept in (f"pyarrow/lib.{so}", "pyarrow/libarrow.so.2600", f"pyarrow/_fs.{so}", "pyarrow/fs.py",
                 "pyarrow/libparquet.so.2600", "pyarrow-26.0.1.dist-info/RECORD"):
        assert not gpu_bundle.pyarrow_omitted(kept), kept


@needs_trl
def test_check_names_what_is_missing(monkeypatch):
    rows, problems, notes = gpu_bundle.check(None)
    assert problems == [], problems
    assert {r["module"] for r in rows} >= {"trl", "datasets", "pyarrow", "torch", "transformers"}
    assert "MISSING: nothing" in gpu_bundle.check_report(rows, problems, notes)
    monkeypatch.setitem(gpu_bundle.BUNDLE_MODULES, "no_such_module_xyz", "no-such-module-xyz")
    rows, problems, notes = gpu_bundle.check(None)
    report = gpu_bundle.check_report(rows, problems, notes)
    assert "MISSING: no_such_module_xyz" in report
    assert any("no_such_module_xyz does not import" in p for p in problems)


@needs_trl
def test_check_tells_a_too_old_version_from_one_above_a_cap(monkeypatch):
    """trl's transformers>=4.56.2 against a reported 4.50.0 is a problem; datasets' fsspec<=cap against a newer
    fsspec only a note."""
    import importlib.metadata as metadata

    real = metadata.version
    fake = {"transformers": "4.50.0", "fsspec": "2999.1.0"}
    monkeypatch.setattr(metadata, "version", lambda dist: fake.get(dist, real(dist)))
    requires = {"trl": ["transformers>=4.56.2"], "datasets": ["fsspec[http]<=2026.2.0,>=2023.1.0"]}
    monkeypatch.setattr(metadata, "requires", lambda dist: requires[dist])
    rows, problems, notes = gpu_bundle.check(None)
    assert any("needs transformers>=4.56.2; transformers 4.50.0" in p for p in problems), problems
    assert any("fsspec 2999.1.0" in n for n in notes) and not any("fsspec" in p for p in problems)


def test_steps_from_calibration():
    runs = {
        "a": {"step_times": [9.0, 2.0, 2.2, 2.4], "train_wall_s": 20.6, "wall_s": 30.6},
        "b": {"step_times": [5.0, 3.0, 3.0], "train_wall_s": 14.0, "wall_s": 26.0},
    }
    summary = gpu_grid.calibration_summary(runs)
    assert summary["step_s"] == 3.0  # the slowest run's median, its first step left out
    assert summary["startup_s"] == 5.0 and summary["eval_s"] == 12.0
    assert gpu_grid.choose_steps(3.0, 420, 1000, 1000) == 127  # floor(420 / 3.3)
    assert gpu_grid.choose_steps(3.0, 420, 34, 1000) == 10  # the time left binds
    assert gpu_grid.choose_steps(3.0, 420, 1000, 50) == 50
    assert gpu_grid.choose_steps(3.0, 420, -5, 1000) == 1


def test_svg_figures_draw_every_method_and_key(tmp_path):
    import pandas as pd

    rows = [{"method": m, "seed": s, "step": t, "format_reward": t / 10, "correct_reward": 0.0,
             "weight/format_reward": 1.0, "weight/correct_reward": 1.0 + (m == "saw_gdpo")}
            for m in ("gdpo", "saw_gdpo") for s in (0, 1) for t in range(1, 6)]  # fmt: skip
    written = gpu_grid.svg_figures(pd.DataFrame(rows), ["format_reward", "correct_reward"], tmp_path, "t")
    assert [p.name for p in written] == ["curves.svg", "weights.svg"]
    for path in written:
        text = path.read_text()
        assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
        assert text.count("<polyline") == 2 * 2 + 2  # 2 keys x 2 methods, and each panel's axes
        assert "saw_gdpo" in text and "gdpo" in text


@pytest.mark.e2e
@needs_gguf
@needs_trl
@needs_bfcl
def test_grid_end_to_end_on_a_tiny_model(tmp_path):
    """The GPU grid's own code on CPU: tiny GGUF -> model folder, calibration, the step count, both arms at once,
    held-out evaluation, at most 8 files in --out."""
    import time

    import pandas as pd

    gguf = tmp_path / "tiny.gguf"
    gpu_bundle.write_tiny_gguf(gguf, context_length=4096)
    data_dir = gpu_bundle.bfcl_source(None)
    out = tmp_path / "out"
    code = gpu_grid.main(["grid", "--gguf", str(gguf), "--model", str(tmp_path / "model"), "--data-dir", str(data_dir),
                          "--workdir", str(tmp_path / "work"), "--out", str(out), "--end-unix", str(time.time() + 600),
                          "--device", "cpu", "--seeds", "0", "--prompts-per-step", "2", "--generations", "2",
                          "--calibration-steps", "2", "--train-s", "1", "--max-steps", "2"])  # fmt: skip
    assert code == 0
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"metrics.csv", "runs.csv", "summary.md", "heldout.md", "grid.json"} <= set(files)
    summary = json.loads((out / "grid.json").read_text())
    steps = summary["steps"]
    assert steps == 1  # --train-s 1 is shorter than a step: the count is clamped to 1
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["method"]) == ["gdpo", "saw_gdpo"] and (runs["steps"] == steps).all()
    assert (runs["steps_done"] == steps).all() and not runs["stopped_at_deadline"].any()
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 2 * steps and {"weight/format_reward", "weight/correct_reward"} <= set(metrics.columns)
    assert len(summary["calibration"]["runs"]) == 2 and summary["untrained_heldout"]["n"] == 80
    assert "saw_gdpo - gdpo" in (out / "summary.md").read_text()
