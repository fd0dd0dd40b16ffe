"""tools/offline_bundle: the large file in checksummed parts, wheels checked against their RECORD and pruned by
rule, the module check, and both commands (stage, run) end to end with a wheel built here (no network)."""

import base64
import hashlib
import json
import lzma
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "offline_bundle"))

import bundle  # noqa: E402


def _parts_with(tmp_path: Path, payload: bytes, extra: int) -> tuple[Path, Path]:
    """part1/part2 holding `payload` xz-compressed and cut as prepare() cuts it, with their manifest."""
    part1, part2 = tmp_path / "part1", tmp_path / "part2"
    part1.mkdir()
    (part1 / "filler.bin").write_bytes(b"x" * extra)
    stream = tmp_path / "model.gguf.xz"
    stream.write_bytes(lzma.compress(payload))
    first, _ = bundle.split_sizes(stream.stat().st_size, extra)
    parts = bundle.write_parts(stream, (part1, part2), first)
    model = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
             "xz_bytes": stream.stat().st_size, "xz_sha256": bundle.sha256_file(stream), "parts": parts}  # fmt: skip
    for folder in (part1, part2):
        (folder / bundle.MANIFEST).write_text(json.dumps({"model": model, "wheels": [], "files": [], "spec": {}}))
    return part1, part2


def test_split_sizes_balance_the_two_commands():
    first, second = bundle.split_sizes(90_000_000, 30_000_000)
    assert first + second == 90_000_000 and first + 30_000_000 == second
    assert bundle.split_sizes(10, 1_000) == (1, 9)  # part1 full of wheels still gets a byte of the file
    with pytest.raises(ValueError):
        bundle.split_sizes(1, 0)


def test_parts_reassemble_to_the_same_bytes_and_a_damaged_one_is_refused(tmp_path):
    payload = bytes(range(256)) * 4000 + b"the end"
    part1, part2 = _parts_with(tmp_path, payload, extra=300_000)
    bundle.assemble([part1, part2], tmp_path / "out" / "model.gguf")
    assert (tmp_path / "out" / "model.gguf").read_bytes() == payload
    path = part2 / "model.gguf.xz.part2"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="damaged in transit"):
        bundle.assemble([part1, part2], tmp_path / "model.gguf")
    with pytest.raises(SystemExit, match="not found"):
        bundle.assemble([part1], tmp_path / "model.gguf")


def _wheel(folder: Path, files: dict[str, bytes], name: str = "tinypkg", tamper: str | None = None) -> Path:
    """A wheel of `files` with its RECORD; `tamper`: that file's content changes after RECORD was written."""
    record = [f"{n},sha256={bundle.record_hash(d)},{len(d)}" for n, d in files.items()]
    record.append(f"{name}-1.0.dist-info/RECORD,,")
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for file, data in files.items():
            archive.writestr(file, data + (b"#" if file == tamper else b""))
        archive.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def _tinypkg_files(name: str = "tinypkg") -> dict[str, bytes]:
    return {f"{name}/__init__.py": b"VALUE = 42\n",
            f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
            f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}


@pytest.mark.parametrize("tamper", [None, "tinypkg/__init__.py"])
def test_install_checks_every_file_against_the_record(tmp_path, tamper):
    wheel = _wheel(tmp_path, _tinypkg_files(), tamper=tamper)
    part = tmp_path / "part1"
    part.mkdir()
    (part / wheel.name).write_bytes(wheel.read_bytes())
    entry = {"dist": "tinypkg", "version": "1.0", "file": wheel.name, "sha256": bundle.sha256_file(wheel)}
    (part / bundle.MANIFEST).write_text(json.dumps({"model": {}, "wheels": [entry], "files": [], "spec": {}}))
    site = tmp_path / "site"
    if tamper:
        with pytest.raises(SystemExit, match="RECORD"):
            bundle.install([part], site)
        return
    assert bundle.install([part], site) == [{"dist": "tinypkg", "version": "1.0", "machine_has": None}]
    assert (site / "tinypkg" / "__init__.py").read_bytes() == b"VALUE = 42\n"


def test_a_distribution_the_machine_has_is_not_unpacked(tmp_path):
    entry = {"dist": "pytest", "version": "0.0", "file": "absent.whl", "sha256": "0"}
    (tmp_path / bundle.MANIFEST).write_text(json.dumps({"model": {}, "wheels": [entry], "files": [], "spec": {}}))
    (row,) = bundle.install([tmp_path], tmp_path / "site")
    assert row["machine_has"] == pytest.__version__ and not any((tmp_path / "site").iterdir())


def test_prune_rules_keep_what_datasets_imports_from_pyarrow():
    rule = json.loads((REPO / "tools" / "offline_bundle" / "tool_calling_grid.json").read_text())["prune"]["pyarrow"]
    so = "cpython-312-x86_64-linux-gnu.so"
    for omitted in ("pyarrow/include/arrow/api.h", "pyarrow/tests/test_io.py", f"pyarrow/_flight.{so}",
                    "pyarrow/libarrow_flight.so.2600", "pyarrow/lib.pyx", "pyarrow/src/arrow/python/api.h",
                    "pyarrow/libarrow_s3.so.2600", f"pyarrow/_s3fs.{so}"):
        assert bundle.pruned(omitted, rule), omitted
    for kept in (f"pyarrow/lib.{so}", "pyarrow/libarrow.so.2600", f"pyarrow/_fs.{so}", "pyarrow/fs.py",
                 "pyarrow/libparquet.so.2600", "pyarrow-26.0.1.dist-info/RECORD"):
        assert not bundle.pruned(kept, rule), kept


def test_the_check_names_what_is_missing_and_tells_too_old_from_above_a_cap(monkeypatch):
    import importlib.metadata as metadata

    spec = {"modules": {"image": {"json": "json", "pytest": "pytest"}, "bundle": {"no_such_module_xyz": "xyz"},
                        "optional": {"another_missing_xyz": "nothing"}},
            "requirements_checked": ["pytest"], "joint_check": "import json"}  # fmt: skip
    monkeypatch.setattr(metadata, "requires", lambda dist: ["json>=2.0", "pytest<1"] if dist == "pytest" else [])
    monkeypatch.setattr(bundle, "installed_version", lambda dist: {"pytest": "8.0", "json": "1.0"}.get(dist))
    rows, problems, notes = bundle.check(spec, None)
    report = bundle.check_report(rows, problems, notes)
    assert "MISSING: no_such_module_xyz" in report and "absent (optional)" in report
    assert any("no_such_module_xyz does not import" in p for p in problems)
    assert any("needs json>=2.0; json 1.0" in p for p in problems)  # below the floor: a problem
    assert any("needs pytest<1; pytest 8.0" in n for n in notes)  # above a cap only: a note


def test_both_commands_carry_a_wheel_a_file_and_a_large_file_and_run_the_command(tmp_path):
    """prepare (from a folder of wheels, no index), stage, run: the command sees the unpacked wheel, the data file
    and the joined large file, and its exit code comes back."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, _tinypkg_files("offlinetinypkg"), name="offlinetinypkg")
    data = tmp_path / "questions.json"
    data.write_text('{"q": 1}')
    large = tmp_path / "large.bin"
    large.write_bytes(bytes(range(256)) * 2000)
    probe = ("import json, os, sys, offlinetinypkg; "
             "assert open(os.environ['LARGE'], 'rb').read() == bytes(range(256)) * 2000; "
             "assert json.load(open(os.environ['DATA']))['q'] == 1; sys.exit(offlinetinypkg.VALUE)")  # fmt: skip
    spec = {"python": "3.12", "abi": "cp312", "platforms": [], "wheels": [["offlinetinypkg", "1.0"]],
            "files": [{"path": str(data), "to": "data/questions.json"}], "model": {"to": "large.bin"},
            "modules": {"bundle": {"offlinetinypkg": "offlinetinypkg"}},
            "run": {"command": [sys.executable, "-c", probe],
                    "env": {"LARGE": "{stage}/large.bin", "DATA": "{stage}/data/questions.json"}}}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    tool = [sys.executable, str(REPO / "tools" / "offline_bundle" / "bundle.py")]
    out, stage, site = tmp_path / "bundle", tmp_path / "stage", tmp_path / "site"
    subprocess.run([*tool, "prepare", "--spec", str(tmp_path / "spec.json"), "--out", str(out), "--here",
                    "--model-file", str(large), "--find-links", str(wheels)], check=True)  # fmt: skip
    assert (out / "part2" / "large.bin.xz.part2").exists()
    staged = subprocess.run([*tool, "stage", "--part", str(out / "part1"), "--stage", str(stage), "--site", str(site)],
                            capture_output=True, text=True)  # fmt: skip
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert "offlinetinypkg 1.0 unpacked" in staged.stdout and "MISSING: nothing" in staged.stdout
    ran = subprocess.run([*tool, "run", "--part", str(out / "part2"), "--stage", str(stage), "--site", str(site)],
                         capture_output=True, text=True)  # fmt: skip
    assert ran.returncode == 42, ran.stdout + ran.stderr
    gone = subprocess.run([*tool, "run", "--part", str(out / "part2"), "--stage", str(tmp_path / "no_stage"),
                           "--site", str(site)], capture_output=True, text=True)  # fmt: skip
    assert gone.returncode != 0 and "run the first command (stage)" in gone.stderr
