"""The built wheel, installed without -e into a fresh venv, registers both estimators through verl's entry point.

The fresh venv gets the wheel alone (--no-deps); its dependencies come from this venv's site-packages through a
.pth line, which Python adds to sys.path after the fresh venv's own site-packages and without running that
directory's .pth files (so the editable install of this checkout stays out of sight).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib.metadata as md, sys
import verl
from verl.trainer.ppo import core_algos
import saw_verl
assert saw_verl.__file__.startswith(sys.prefix), f"saw_verl imported from {saw_verl.__file__}, not the wheel"
ours = {"saw_grpo", "saw_gdpo", "saw_verl_gdpo", "mo_grpo", "corr_grpo", "gd2po"}
found = {name for name in ours if name in core_algos.ADV_ESTIMATOR_REGISTRY}
assert found == ours, f"registered through the entry point: {sorted(found)}"
(entry,) = [e for e in md.entry_points(group="verl.plugins") if e.name == "saw_verl"]
import saw_verl.kernels, saw_verl.integrations.verl.shim
print("ok", entry.value, md.version("saw-verl"))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = out.glob("saw_verl-*.whl")
    return built


def test_wheel_ships_the_package_only_with_a_light_core(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"saw_verl"}, f"top-level entries in the wheel: {sorted(top_level)}"
    for module in ("saw_verl/kernels/__init__.py", "saw_verl/integrations/verl/plugin.py",
                   "saw_verl/integrations/trl/__init__.py", "saw_verl/integrations/openrlhf/__init__.py",
                   "saw_verl/registry.py", "saw_verl/rivals/gdpo.py", "saw_verl/rivals/gd2po.py"):
        assert module in names, f"{module} missing from {wheel.name}"
    assert not [n for n in names if "cpu_harness" in n], "the CPU harness is repository-only"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE missing from the wheel"
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    base = sorted(r for r in requires if "extra ==" not in r)
    assert [r.split(">")[0] for r in base] == ["numpy", "torch"], f"base dependencies: {base}"
    extras = {line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Provides-Extra: ")}
    assert extras == {"verl", "trl", "openrlhf", "triton", "plot", "test", "gpu"}, sorted(extras)


@pytest.mark.parametrize("trainer", ["verl", "trl", "openrlhf"])
def test_integration_without_its_trainer_names_the_extra(trainer):
    code = (
        f"import sys; sys.modules[{trainer!r}] = None\n"  # importlib.util.find_spec now reports it missing
        f"try:\n    import saw_verl.integrations.{trainer}\n"
        "except ImportError as error:\n    print(error)\nelse:\n    raise SystemExit('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert f"pip install 'saw-verl[{trainer}]'" in result.stdout, result.stdout


def test_fresh_venv_registers_estimators_through_entry_point(wheel, tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(fresh_site, "dependencies_from_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.startswith("ok saw_verl.integrations.verl.plugin"), result.stdout


def assert_import_loads_none_of(statement: str, forbidden: set[str]) -> None:
    """Run `statement` in a fresh interpreter; fail naming any top-level package of `forbidden` it loaded."""
    code = "\n".join([
        "import sys",
        statement,
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r})",
        f"assert not loaded, {statement + ' loaded '!r} + str(loaded)",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_core_imports_no_trainer():
    assert_import_loads_none_of("import saw_verl, saw_verl.integrations", {"verl", "trl", "openrlhf", "ray", "transformers"})


def test_openrlhf_setup_hook_imports_only_the_standard_library(tmp_path):
    """The hook runs in every Ray worker (vLLM engines too): no torch, numpy or trainer on import. An empty
    `openrlhf` package stands in where OpenRLHF is not installed: the integration only looks it up."""
    (tmp_path / "openrlhf").mkdir()
    (tmp_path / "openrlhf" / "__init__.py").write_text("raise ImportError('the hook must not import openrlhf')\n")
    statement = f"sys.path.append({str(tmp_path)!r}); import saw_verl.integrations.openrlhf.hook"
    assert_import_loads_none_of(statement, {"torch", "numpy", "openrlhf", "ray", "vllm"})


def test_the_checkouts_kernels_folder_imports_without_triton():
    """With the checkout on the path, the kernels folder is also a top-level `kernels`, a name transformers imports
    to read its version when it finds one: importing it must not need triton (nor pass for a kernels release)."""
    probe = ("import sys; sys.modules['triton'] = None\n"  # as if triton were not installed
             "import kernels\n"
             "assert not hasattr(kernels, '__version__') and 'triton' not in [m for m in sys.modules if sys.modules[m]]\n"
             "print(sorted(kernels.__all__))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "grpo_advantages" in done.stdout


def extra_requirements(*extras: str) -> list[str]:
    """pyproject.toml's base dependencies plus those of `extras`, as requirement strings."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(req for extra in extras for req in project["optional-dependencies"][extra])]


def verl_pins(extra: str) -> dict[str, str]:
    """The `==` pins of the installed verl's own `extra` (its metadata): canonical name -> version."""
    pins = {}
    for line in importlib.metadata.requires("verl"):
        requirement = Requirement(line)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}) and exact:
            pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def test_gpu_extra_resolves_to_the_stack_verl_tested(tmp_path):
    """`.[verl,gpu]` resolved by pip without installing anything (--dry-run: no CUDA torch lands anywhere): every
    pin of verl 0.9.1's own `vllm` extra (vllm, torch, transformers, ...) is what it resolves to; flash-attn is the
    separate --no-build-isolation step, so it is not in the set."""
    report = tmp_path / "report.json"
    requirements = extra_requirements("verl", "gpu")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
         *requirements], capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    resolved = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    pins = verl_pins("vllm")
    assert {"vllm", "torch", "transformers"} <= set(pins), pins
    assert {name: resolved.get(name) for name in pins} == pins
    assert resolved["verl"] == importlib.metadata.version("verl")
    assert "flash-attn" not in resolved

