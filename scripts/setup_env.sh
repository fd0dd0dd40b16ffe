#!/usr/bin/env bash
# Creates ./.venv with a CPU build of torch, verl 0.9.1, TRL, OpenRLHF (without its CUDA-only dependencies)
# and saw-verl (editable) + test extras.
# Usage: bash scripts/setup_env.sh   (idempotent)
#   VENV=path              another location
#   SAW_TORCH_VERSION=x.y  another torch (default 2.13.0); SAW_TRL_VERSION likewise (default 1.12.0)
#   SAW_TORCH_INDEX_URL=u  the index torch comes from. On a CPU-only Linux machine whose pip reaches the default
#                          index, PyPI's torch is a CUDA build: point this at PyTorch's CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: otherwise verl's dependencies resolve to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q ${SAW_TORCH_INDEX_URL:+--index-url "$SAW_TORCH_INDEX_URL"} "torch==${SAW_TORCH_VERSION:-2.13.0}"
# trl 1.12.0: the newest TRL with which verl 0.9.1 still trains. verl imports trl's AutoModelForCausalLMWithValueHead
# whenever trl is importable (verl/models/transformers/monkey_patch.py:352), and trl 1.13 removed it. The TRL tests
# pass on 1.12.0 and 1.16.0.
"$VENV/bin/python" -m pip install -q -e ".[test,cpu,trl]" "trl==${SAW_TRL_VERSION:-1.12.0}"
# OpenRLHF without its CUDA-only dependencies (flash-attn, vllm): the CPU tests use import stand-ins for those.
bash scripts/install_openrlhf_cpu.sh "$VENV"
# BFCL-v4 questions/answers for the tool-calling evaluation; its pinned dependencies are heavy and unneeded.
"$VENV/bin/python" -m pip install -q --no-deps bfcl-eval
"$VENV/bin/python" - <<'PY'
import torch, verl, triton, trl, openrlhf, saw_verl
from importlib.metadata import version
assert not torch.version.cuda or torch.cuda.is_available(), (
    f"a CUDA torch build was installed on a machine without a GPU: {torch.__version__}; "
    "rerun with SAW_TORCH_INDEX_URL set to a CPU wheel index"
)
print(f"ready: torch {torch.__version__}, verl {verl.__version__}, trl {trl.__version__}, openrlhf {version('openrlhf')}, triton {triton.__version__}, "
      f"saw_verl {saw_verl.__file__}")
PY
