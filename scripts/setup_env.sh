#!/usr/bin/env bash
# Creates ./.venv, the [verl] cell of the install matrix: a CPU build of torch, then the built saw-verl wheel (not -e)
# with its verl, trl, triton, plot and test extras (verl 0.9.1, TRL 1.12.0), and BFCL's data for the tool-calling
# recipe. Tests and recipes run from the checkout. The other cells (bare, TRL 1.16, OpenRLHF 0.11):
# scripts/install_matrix.sh.
# Usage: bash scripts/setup_env.sh   (idempotent; SAW_EDITABLE=1 installs the checkout with -e instead)
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
EXTRAS="[verl,trl,triton,plot,test]"
if [ "${SAW_EDITABLE:-0}" = 1 ]; then
    "$VENV/bin/python" -m pip install -q -e ".$EXTRAS" "trl==${SAW_TRL_VERSION:-1.12.0}"
else
    dist=$(mktemp -d)
    rm -rf build  # setuptools packs whatever an earlier build left in build/lib into the wheel
    "$VENV/bin/python" -m pip wheel -q --no-deps -w "$dist" .
    "$VENV/bin/python" -m pip uninstall -q -y saw-verl 2>/dev/null || true
    "$VENV/bin/python" -m pip install -q "$(ls "$dist"/saw_verl-*.whl)$EXTRAS" "trl==${SAW_TRL_VERSION:-1.12.0}"
    rm -rf "$dist"
fi
# BFCL-v4 questions/answers for the tool-calling evaluation; its pinned dependencies are heavy and unneeded.
"$VENV/bin/python" -m pip install -q --no-deps bfcl-eval
"$VENV/bin/python" - <<'PY'
import torch, verl, triton, trl, saw_verl
from importlib.metadata import version
assert not torch.version.cuda or torch.cuda.is_available(), (
    f"a CUDA torch build was installed on a machine without a GPU: {torch.__version__}; "
    "rerun with SAW_TORCH_INDEX_URL set to a CPU wheel index"
)
print(f"ready: torch {torch.__version__}, verl {verl.__version__}, trl {trl.__version__}, triton {triton.__version__}, "
      f"transformers {version('transformers')}, saw-verl {version('saw-verl')}")
PY
