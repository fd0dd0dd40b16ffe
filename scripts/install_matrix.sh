#!/usr/bin/env bash
# The install matrix: the built wheel (never -e) in fresh venvs next to each trainer's own release.
#   bare      torch + numpy only (no verl, ray, transformers, trl, openrlhf): the dry runs of the GPU check and of
#             the kernel performance command with the project NOT installed, as on a bare GPU machine (triton 3.6.0
#             under the interpreter), then the wheel + [plot]: the core tests, the tensor API, python -m
#             saw_verl.plot, the README's and docs/backends.md's tensor API snippets, and every integration refusing
#             to import with the extra to install
#   trl       [trl] into a venv that already has trl 1.16.0 + transformers 5.23.0 (+ gguf): nothing changes version,
#             no verl or ray appears; the TRL tests (real GRPOTrainer runs), the README's and docs/trl.md's snippets
#             and the tool-calling recipe's GGUF conversion round trip pass
#   openrlhf  the wheel next to OpenRLHF 0.11.2 with its own pins (scripts/install_openrlhf_cpu.sh): nothing changes
#             version; the OpenRLHF tests (launcher, Ray hook, the real compute_advantages_and_returns, the history
#             pool through the real checkpoint save and load) and the README's and docs/openrlhf.md's snippets
#             (through the real train_ppo_ray parsing) pass
# The [verl] cell is scripts/setup_env.sh + the README's test command (.ci/run runs both).
# Tests run from a copy of tests/, cpu_harness/, recipes/ and the docs outside the checkout, so `import saw_verl` finds
# the wheel.
# Usage: bash scripts/install_matrix.sh [CELL...]   (default: all three; MATRIX_DIR to keep the venvs elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
MATRIX_DIR=${MATRIX_DIR:-$(mktemp -d /tmp/saw_matrix.XXXXXX)}
TORCH="torch==${SAW_TORCH_VERSION:-2.13.0}"
TRL_PINS=(trl==1.16.0 transformers==5.23.0 gguf==0.19.0)
TRITON_PIN=${SAW_MATRIX_TRITON:-triton==3.6.0}  # the GPU machine's triton, here under the interpreter
CELLS=("$@")
[ ${#CELLS[@]} -gt 0 ] || CELLS=(bare trl openrlhf)
SUMMARY="$MATRIX_DIR/summary.txt"
mkdir -p "$MATRIX_DIR/dist"
: > "$SUMMARY"

note() { echo "[matrix] $*"; }
pip_in() { "$1/bin/python" -m pip "${@:2}"; }
new_venv() {  # new_venv DIR: a fresh venv with the CPU torch
    rm -rf "$1"
    "$PYTHON" -m venv "$1"
    pip_in "$1" install -q --upgrade pip
    pip_in "$1" install -q ${SAW_TORCH_INDEX_URL:+--index-url "$SAW_TORCH_INDEX_URL"} "$TORCH"
}
frozen() { pip_in "$1" list --format=freeze --exclude-editable 2>/dev/null | sort; }
unchanged_but_saw() {  # unchanged_but_saw BEFORE AFTER: fail unless the only change is saw-verl added
    local changes
    changes=$(diff "$1" "$2" | grep '^[<>]' || true)
    if [ "$changes" != "> saw-verl==$(wheel_version)" ]; then
        echo "installing the wheel changed the environment:" >&2
        echo "$changes" >&2
        exit 1
    fi
}
absent() {  # absent VENV DIST...: fail if any distribution is installed
    local venv=$1; shift
    for dist in "$@"; do
        if pip_in "$venv" show -q "$dist" >/dev/null 2>&1; then echo "$dist is installed in $venv" >&2; exit 1; fi
    done
}
test_tree() {  # test_tree DIR: tests/, cpu_harness/, recipes/, the pytest settings and the docs' snippets, without saw_verl/
    rm -rf "$1"
    mkdir -p "$1"
    cp -r "$ROOT/tests" "$ROOT/cpu_harness" "$ROOT/recipes" "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/docs" "$1/"
    find "$1" -name __pycache__ -prune -exec rm -rf {} +
}
run_tests() {  # run_tests VENV TREE TEST...: pytest against the installed wheel; a skipped test fails the cell
    local venv=$1 tree=$2 log
    shift 2
    log=$(mktemp)
    (cd "$tree" && "$venv/bin/python" -c "import saw_verl, sys; assert saw_verl.__file__.startswith(sys.prefix), saw_verl.__file__" \
        && CI=true "$venv/bin/python" -m pytest -q -ra -p no:cacheprovider "$@") 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then exit "$status"; fi
    if grep -Eq '[0-9]+ skipped' "$log"; then echo "tests were skipped in this cell: each must run here" >&2; exit 1; fi
}
versions() { pip_in "$1" list --format=freeze 2>/dev/null | grep -iE "^($2)==" | tr '\n' ' '; }
wheel_version() { basename "$WHEEL" | cut -d- -f2; }

note "building the wheel"
rm -f "$MATRIX_DIR"/dist/saw_verl-*.whl
rm -rf build  # setuptools packs whatever an earlier build left in build/lib into the wheel
"$PYTHON" -m pip wheel -q --no-deps -w "$MATRIX_DIR/dist" "$ROOT"
WHEEL=$(ls "$MATRIX_DIR"/dist/saw_verl-*.whl)

cell_bare() {
    local venv="$MATRIX_DIR/bare" tree="$MATRIX_DIR/bare-tree" work
    new_venv "$venv"
    pip_in "$venv" install -q numpy pytest hypothesis "$TRITON_PIN"
    note "bare: the GPU check's dry run from the checkout, the project not installed"
    if (cd /tmp && "$venv/bin/python" -c "import saw_verl" 2>/dev/null); then echo "saw_verl is importable" >&2; exit 1; fi
    TRITON_INTERPRET=1 PYTHON="$venv/bin/python" bash scripts/gpu_check.sh --dry-run --out "$MATRIX_DIR/gpu_check_dry_run"
    TRITON_INTERPRET=1 "$venv/bin/python" -m benchmarks.gpu_perf --dry-run --out "$MATRIX_DIR/gpu_perf_dry_run"
    pip_in "$venv" install -q "$WHEEL[plot]"
    absent "$venv" verl ray transformers trl openrlhf
    test_tree "$tree"
    run_tests "$venv" "$tree" tests/test_math.py tests/test_weights.py tests/test_errors.py tests/test_history.py \
        tests/test_doc_snippets.py::test_readme_tensor_api_prints_what_it_says tests/test_doc_snippets.py::test_backends_snippet
    work=$(mktemp -d)
    (cd "$work" && "$venv/bin/python" - <<'PY'
import json, torch
from saw_verl import saw_gdpo_advantages, saw_grpo_advantages
from saw_verl.reference import reference_saw_advantages
from saw_verl import SawConfig

rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.5], [1.0, 0.25]], dtype=torch.float64)
groups, mask = torch.tensor([0, 0, 0, 1, 1, 1]), torch.ones(6, 3, dtype=torch.bool)
for mode, call in (("grpo", saw_grpo_advantages), ("gdpo", saw_gdpo_advantages)):
    got = call(rewards, groups, mask, reward_keys=("format", "correct"))
    want = reference_saw_advantages(rewards, groups, mask, SawConfig(("format", "correct"), mode=mode))
    assert torch.allclose(got.advantages.double(), want.advantages.double(), atol=1e-6), mode
for trainer in ("verl", "trl", "openrlhf"):
    try:
        __import__(f"saw_verl.integrations.{trainer}")
    except ImportError as error:
        assert f"pip install 'saw-verl[{trainer}]'" in str(error), error
    else:
        raise AssertionError(f"saw_verl.integrations.{trainer} imported without {trainer}")
with open("run.jsonl", "w") as out:
    for step in (1, 2, 3):
        data = {f"saw/{k}/{s}": step / 10 + i for i, k in enumerate(("format", "correct")) for s in ("weight", "mean")}
        out.write(json.dumps({"step": step, "data": data}) + "\n")
print("bare: tensor API matches the reference; integrations name their extras")
PY
    "$venv/bin/python" -m saw_verl.plot run.jsonl -o weights.png && test -s weights.png)
    echo "bare: $(versions "$venv" 'saw-verl|torch|numpy|triton|matplotlib')" >> "$SUMMARY"
}

cell_trl() {
    local venv="$MATRIX_DIR/trl" tree="$MATRIX_DIR/trl-tree"
    new_venv "$venv"
    pip_in "$venv" install -q "${TRL_PINS[@]}" pytest hypothesis
    frozen "$venv" > "$MATRIX_DIR/trl-before.txt"
    pip_in "$venv" install -q "$WHEEL[trl]"
    frozen "$venv" > "$MATRIX_DIR/trl-after.txt"
    unchanged_but_saw "$MATRIX_DIR/trl-before.txt" "$MATRIX_DIR/trl-after.txt"
    absent "$venv" verl ray
    test_tree "$tree"
    run_tests "$venv" "$tree" tests/test_trl_config.py tests/test_trl_trainer.py tests/test_prepare_smollm2.py \
        tests/test_doc_snippets.py::test_trl_snippet_trains_on_cpu \
        tests/test_doc_snippets.py::test_trl_shaping_snippet_configures_what_it_says
    echo "trl: $(versions "$venv" 'saw-verl|torch|trl|transformers|accelerate|datasets')" >> "$SUMMARY"
}

cell_openrlhf() {
    local venv="$MATRIX_DIR/openrlhf" tree="$MATRIX_DIR/openrlhf-tree"
    new_venv "$venv"
    bash scripts/install_openrlhf_cpu.sh "$venv"
    pip_in "$venv" install -q pytest hypothesis
    frozen "$venv" > "$MATRIX_DIR/openrlhf-before.txt"
    pip_in "$venv" install -q "$WHEEL"
    frozen "$venv" > "$MATRIX_DIR/openrlhf-after.txt"
    unchanged_but_saw "$MATRIX_DIR/openrlhf-before.txt" "$MATRIX_DIR/openrlhf-after.txt"
    absent "$venv" verl
    test_tree "$tree"
    run_tests "$venv" "$tree" tests/test_openrlhf_advantages.py tests/test_openrlhf_checkpoints.py \
        tests/test_openrlhf_launcher.py tests/test_openrlhf_ray.py \
        tests/test_doc_snippets.py::test_openrlhf_command_reaches_train_ppo_ray \
        tests/test_doc_snippets.py::test_openrlhf_reward_function_returns_the_launchers_keys \
        tests/test_doc_snippets.py::test_openrlhf_shaping_flags_configure_what_they_say
    echo "openrlhf: $(versions "$venv" 'saw-verl|torch|openrlhf|transformers|ray|deepspeed')" >> "$SUMMARY"
}

for cell in "${CELLS[@]}"; do
    start=$(date +%s)
    note "cell $cell: start"
    "cell_$cell"
    echo "  $cell: passed in $(( $(date +%s) - start )) s" >> "$SUMMARY"
    note "cell $cell: passed in $(( $(date +%s) - start )) s"
done
note "summary"
cat "$SUMMARY"
