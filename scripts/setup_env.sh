#!/usr/bin/env bash
# Creates ./.venv with a CPU build of torch, verl 0.9.1 and saw-verl (editable) + test extras.
# Usage: bash scripts/setup_env.sh   (idempotent; VENV=path to choose another location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned to the CPU build: otherwise verl's dependencies resolve to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==${SAW_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip install -q -e ".[test]"
# BFCL-v4 questions/answers for the tool-calling evaluation; its pinned dependencies are heavy and unneeded.
"$VENV/bin/python" -m pip install -q --no-deps bfcl-eval
"$VENV/bin/python" - <<'PY'
import torch, verl, triton, saw_verl
assert not torch.version.cuda or torch.cuda.is_available(), f"a CUDA torch build was installed: {torch.__version__}"
print(f"ready: torch {torch.__version__}, verl {verl.__version__}, triton {triton.__version__}, saw_verl {saw_verl.__file__}")
PY
