#!/usr/bin/env bash
# Installs OpenRLHF into an existing venv on a CPU-only machine, with OpenRLHF's own pins (0.11.2: transformers
# 5.15.0, ray[default] 2.55.0, deepspeed 0.19.6, ...) but without flash-attn, which needs nvcc to build (`pip install
# openrlhf` fails on a CPU machine). vllm is an OpenRLHF extra and is not installed either. OpenRLHF imports both at
# module level: the tests import it with stand-ins for them (tests/openrlhf_standins), as OpenRLHF's own CPU tests do.
# Usage: bash scripts/install_openrlhf_cpu.sh VENV   (OPENRLHF_VERSION=0.10.2 for another release)
#   The venv's torch stays (install a CPU torch first); the script fails if anything would change it.
set -euo pipefail
VENV=${1:?usage: bash scripts/install_openrlhf_cpu.sh VENV}
VERSION=${OPENRLHF_VERSION:-0.11.2}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "install_openrlhf_cpu.sh: no python at $PY" >&2; exit 2; }

torch_version() { "$PY" -c "import torch; print(torch.__version__)"; }
torch_before=$(torch_version)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps -d "$work" "openrlhf==$VERSION"
# OpenRLHF's base requirements (no extras), less the CUDA-only build, torch pinned to the installed one.
"$PY" - "$work"/openrlhf-*.whl "$torch_before" > "$work/requirements.txt" <<'PY'
import re, sys, zipfile
wheel, torch_version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
CUDA_ONLY = {"flash-attn", "flash_attn"}
for line in metadata.splitlines():
    if not line.startswith("Requires-Dist: ") or "extra ==" in line:
        continue
    requirement = line.split(": ", 1)[1].strip()
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    if name.lower() in CUDA_ONLY:
        continue
    print(f"torch=={torch_version}" if name.lower() == "torch" else requirement)
PY
"$PY" -m pip install -q -r "$work/requirements.txt"
"$PY" -m pip install -q --no-deps "$work"/openrlhf-*.whl

torch_after=$(torch_version)
if [ "$torch_before" != "$torch_after" ]; then
    echo "install_openrlhf_cpu.sh: torch changed from $torch_before to $torch_after" >&2
    exit 1
fi
"$PY" -c "from importlib.metadata import version as v; print('openrlhf', v('openrlhf'), 'ready; torch', v('torch'), 'transformers', v('transformers'), 'ray', v('ray'), 'deepspeed', v('deepspeed'))"
