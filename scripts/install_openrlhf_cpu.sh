#!/usr/bin/env bash
# Installs OpenRLHF into an existing venv without its CUDA-only dependencies, for the CPU tests of
# saw_verl.integrations.openrlhf (`pip install openrlhf` fails on a CPU machine: flash-attn needs nvcc).
# Usage: bash scripts/install_openrlhf_cpu.sh VENV   (idempotent; OPENRLHF_VERSION=0.10.2 for another release)
#   - openrlhf itself with --no-deps: its pins (transformers==5.15.0, ray[default]==2.55.0, flash-attn) would
#     replace verl's transformers and need CUDA. The venv's torch, transformers and ray stay.
#   - the light dependencies its trainer modules import, resolved with every package already in the venv pinned
#     (a constraints file of `pip list`): nothing installed changes, torch above all; a conflict fails loudly.
#   - flash_attn and vllm (CUDA-only) are not installed: the tests import OpenRLHF with stand-ins
#     (tests/openrlhf_standins), as OpenRLHF's own CPU tests do.
set -euo pipefail
VENV=${1:?usage: bash scripts/install_openrlhf_cpu.sh VENV}
VERSION=${OPENRLHF_VERSION:-0.11.2}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "install_openrlhf_cpu.sh: no python at $PY" >&2; exit 2; }

torch_version() { "$PY" -c "import torch; print(torch.__version__)"; }
torch_before=$(torch_version)
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
"$PY" -m pip list --format=freeze --exclude-editable 2>/dev/null | grep -v -i '^openrlhf==' > "$pins"

"$PY" -m pip install -q -c "$pins" \
    "deepspeed==0.19.6" accelerate aiohttp datasets einops grpcio huggingface-hub jsonlines loralib optree \
    packaging peft pylatexenc sympy tensorboard torchdata torchmetrics tqdm wandb
"$PY" -m pip install -q --no-deps "openrlhf==$VERSION"

torch_after=$(torch_version)
if [ "$torch_before" != "$torch_after" ]; then
    echo "install_openrlhf_cpu.sh: torch changed from $torch_before to $torch_after" >&2
    exit 1
fi
"$PY" -c "from importlib.metadata import version; print('openrlhf', version('openrlhf'), 'ready; torch', '$torch_after')"
