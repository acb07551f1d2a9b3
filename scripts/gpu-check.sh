#!/usr/bin/env bash
# GPU conformance on a CUDA machine that already has torch and jax (with CUDA) and pytest,
# and possibly no network: install gradrev without dependencies, then run the GPU tests
# and the parity self-test on every visible device. TensorFlow is not assumed.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install --no-deps --no-build-isolation --quiet . 2>/dev/null \
  || { echo "gradrev: pip install failed (no hatchling offline?); using the source tree"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; }
python - <<'PY'
import torch, jax
print("torch", torch.__version__, "cuda:", torch.cuda.is_available(), torch.cuda.device_count())
print("jax", jax.__version__, jax.devices())
PY
status=0
# The property tests need hypothesis, which GPU machines may lack; they are CPU tests.
GRADREV_TEST_BACKENDS=torch,jax python -m pytest tests -m gpu -q -rs -p no:cacheprovider \
  --ignore=tests/test_properties.py || status=1
python -m gradrev check --backends torch,jax --json gpu-check.json || status=1
exit $status
