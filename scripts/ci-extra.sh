#!/usr/bin/env bash
# CI for one extra: scripts/ci-extra.sh torch|jax|tensorflow|mlx
#
# A user who installs a single extra must get a working CLI. In a fresh venv with nothing
# but `pip install ".[EXTRA]"`, this runs gradrev --help, info, check (no mismatch, bfloat16
# included) and a tiny demo; then it adds the test extra and runs the suite on that backend
# alone. Each step fails the script on the first error.
set -euo pipefail
extra="${1:?usage: scripts/ci-extra.sh torch|jax|tensorflow|mlx}"
case "$extra" in torch | jax | tensorflow | mlx) ;; *) echo "unknown extra: $extra" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
root="$PWD"
work="$(mktemp -d "/tmp/gradrev-ci-$extra.XXXXXX")" # the venv and the outputs; removed at exit
venv="$work/venv"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 # torch's intra-op threads only fight over a shared CI machine's cores
start=$SECONDS
step() { echo "== [$extra, $((SECONDS - start)) s] $*"; }

step "fresh venv, pip install -c constraints.txt \".[$extra]\""
python -m venv "$venv"
"$venv/bin/python" -m pip install -q -c constraints.txt ".[$extra]"
gradrev="$venv/bin/gradrev"
py="$venv/bin/python"
mkdir "$work/run" && cd "$work/run" # the installed package, not the source tree

step "gradrev --help, --version"
"$gradrev" --help >/dev/null
"$gradrev" --version | grep -qx "gradrev $("$py" -c 'import gradrev; print(gradrev.__version__)')"
"$gradrev" bench --help | grep -q -- "--quick"

step "gradrev info"
"$gradrev" info 2>"$work/info.err" | tee "$work/info.txt"
grep -q "^$extra .*devices: " "$work/info.txt"
test ! -s "$work/info.err" || { echo "info wrote to stderr:"; cat "$work/info.err"; exit 1; }

step "gradrev check"
"$gradrev" check --json "$work/check.json"
"$py" - "$work/check.json" "$extra" <<'EOF'
import json, sys
report, extra = json.load(open(sys.argv[1])), sys.argv[2]
assert report["ok"], "check reported a mismatch"
assert not any(r["mismatches"] for r in report["results"])
assert {r["backend"] for r in report["results"]} == {extra}, report["frameworks"]
dtypes = {r["dtype"] for r in report["results"]}
assert dtypes == {"float16", "bfloat16", "float32", "float64"}, dtypes
assert report["frameworks"][extra]["version"] and report["python"] and report["platform"]
EOF

step "gradrev demo (tiny)"
"$gradrev" demo --seeds 1 --steps 20 --out "$work/demo" --json "$work/demo.json"
"$py" -c "import json, sys; r = json.load(open(sys.argv[1])); assert list(r['results']) == [sys.argv[2]], r" \
    "$work/demo.json" "$extra"

if [ "$extra" = torch ]; then
    # JAX and TensorFlow need ml_dtypes themselves; the torch extra can lose it. check must
    # then skip bfloat16 visibly and still report no mismatch (it used to report a false one).
    step "gradrev check without ml_dtypes"
    "$py" -m pip uninstall -q -y ml_dtypes
    "$gradrev" check | tee "$work/check-no-ml-dtypes.txt"
    grep -q "bfloat16 .*skipped: ml_dtypes is not installed" "$work/check-no-ml-dtypes.txt"
fi

cd "$root"
# The tests marked slow (compilers, subprocesses) run in the main CI job on every backend;
# here they would take the three extras past 10 minutes on a 2-core machine.
step "pip install -c constraints.txt \".[$extra,test]\"; GRADREV_TEST_BACKENDS=$extra pytest -q -m 'not slow'"
"$py" -m pip install -q -c constraints.txt ".[$extra,test]"
GRADREV_TEST_BACKENDS="$extra" "$venv/bin/pytest" -q -p no:cacheprovider -m "not slow"
step "done"
