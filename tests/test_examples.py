"""Each standalone example in examples/ runs briefly and reports sensible accuracies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUNS = [
    ("torch_dann.py", "torch", "torch"),
    ("flax_nnx_dann.py", "flax", "jax"),
    ("keras_dann.py", "keras", "tensorflow"),
    ("keras_dann.py", "keras", "jax"),
    ("keras_dann.py", "keras", "torch"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "needs", "keras_backend"), RUNS, ids=lambda v: str(v))
def test_example_runs(script: str, needs: str, keras_backend: str) -> None:
    pytest.importorskip(needs)
    pytest.importorskip(keras_backend)
    env = {**os.environ, "KERAS_BACKEND": keras_backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--steps", "200"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(
        r"λ = ([\d.]+), source accuracy ([\d.]+), target accuracy ([\d.]+)", proc.stdout
    )
    assert match, proc.stdout
    lam, source, target = map(float, match.groups())
    assert lam == pytest.approx(1.0, abs=1e-3)  # the DANN ramp reached its end
    assert source >= 0.8 and target >= 0.5  # 200 steps: a smoke run, not the full result


def test_examples_do_not_import_the_demo() -> None:
    for path in EXAMPLES.glob("*.py"):
        assert "gradrev.tools.demo" not in path.read_text(), path.name
