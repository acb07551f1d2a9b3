"""The public contract of ``gradrev.reverse``: dispatch, identity forward, λ handling, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import BACKENDS, installed, requested_backends

import gradrev
from gradrev import _adapters, _dispatch, _registry

# Every framework and the layer libraries, and NumPy: importing gradrev loads none of them.
FRAMEWORKS = (
    *(fw.module for fw in _registry.BUILTINS),
    *(m for fw in _registry.BUILTINS for m in fw.layer_modules),
    *(fw.name for fw in _registry.BUILTINS),
    "numpy",
    "ml_dtypes",
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        timeout=300,
    )


def test_requested_backends_are_installed() -> None:
    """GRADREV_TEST_BACKENDS names backends that must be present: a missing one fails."""
    missing = [name for name in requested_backends() or () if not installed(name)]
    assert not missing, f"GRADREV_TEST_BACKENDS selects {missing}, which are not installed"


def test_import_loads_no_framework() -> None:
    code = "import sys, gradrev; print(sorted(m for m in {} if m in sys.modules))"
    proc = run_python(code.format(FRAMEWORKS))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_framework_names_the_extra() -> None:
    names = [fw.name for fw in _registry.BUILTINS]
    code = (
        "import sys\n"
        f"for name in {names!r}: sys.modules[name] = None\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        __import__('gradrev.backends.' + name)\n"
        "    except ImportError as e:\n"
        "        print(e)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(names)
    for name, line in zip(names, lines):
        hint = line.split("pip install ", 1)[1]  # the packages themselves: gradrev is on no index
        assert name in hint and "gradrev[" not in line, line


def test_reverse_is_identity_and_zero_copy(backend: Any) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = backend.tensor(a)
    y = gradrev.reverse(x, 0.3)
    assert type(y) is type(x)
    assert np.array_equal(backend.numpy(y), a)
    assert backend.shares_memory(y, x)


def test_dispatch_is_cached_per_type(backend: Any) -> None:
    x = backend.tensor(np.ones(3, np.float32))
    _dispatch._BACKEND_FOR_TYPE.pop(type(x), None)
    gradrev.reverse(x)
    assert _dispatch._BACKEND_FOR_TYPE[type(x)] is backend.ops.reverse


def test_default_lambda_is_one(backend: Any) -> None:
    g = np.array([1.5, -2.0], np.float32)
    x = backend.tensor(np.zeros(2, np.float32))
    got = backend.vjp(gradrev.reverse, x, backend.tensor(g))
    assert np.array_equal(got, -g)


def test_lambda_gets_no_gradient(backend: Any) -> None:
    x = backend.tensor(np.ones(3, np.float32))
    grad = backend.lambda_grad(backend.ops.reverse, x, backend.scalar(0.5, "float32"))
    assert grad is None or np.array_equal(backend.numpy(grad), 0.0)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_and_bool_pass_through(backend: Any, dtype: str) -> None:
    a = np.array([0, 1, 1], dtype)
    y = gradrev.reverse(backend.tensor(a), 0.3)
    assert np.array_equal(backend.numpy(y), a)
    assert backend.numpy(y).dtype == a.dtype


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_number_lambda_is_a_value_error(backend: Any, lam: float) -> None:
    with pytest.raises(ValueError, match=r"gradrev.reverse: lambda_ must be finite, got"):
        gradrev.reverse(backend.tensor(np.ones(2, np.float32)), lam)


def test_non_scalar_lambda_is_a_value_error(backend: Any) -> None:
    lam = backend.tensor(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"lambda_ must be a scalar .* got .* shape \(3,\)"):
        gradrev.reverse(backend.tensor(np.ones(2, np.float32)), lam)


@pytest.mark.parametrize(
    "lam", ["0.5", 0.5 + 1j, None, True, [0.5], np.ones(()), "int tensor"], ids=repr
)
def test_bad_lambda_type_is_a_type_error(backend: Any, lam: Any) -> None:
    if lam == "int tensor":
        lam = backend.tensor(np.array(2, np.int32))
    with pytest.raises(
        TypeError, match=rf"gradrev.reverse: lambda_ must be .*{backend.name}.*, got"
    ):
        gradrev.reverse(backend.tensor(np.ones(2, np.float32)), lam)


@pytest.mark.parametrize("other", [n for n in BACKENDS if installed(n)])
def test_foreign_tensors_are_type_errors(backend: Any, other: str) -> None:
    """A backend's own reverse has no dispatch: another framework's tensor (or λ) is refused."""
    if other == backend.name:
        pytest.skip("same framework")
    foreign = _adapters.adapter(other).tensor(np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"gradrev.reverse: x must be"):
        backend.ops.reverse(foreign, 1.0)
    lam = _adapters.adapter(other).scalar(0.5, "float32")
    with pytest.raises(TypeError, match=r"lambda_ must be"):
        backend.ops.reverse(backend.tensor(np.ones(2, np.float32)), lam)


@pytest.mark.parametrize(
    "x", [np.ones(3, np.float32), [1.0, 2.0], 3.0, None], ids=["ndarray", "list", "float", "None"]
)
def test_unsupported_input_is_a_type_error(x: Any) -> None:
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, a jax.Array, a tf.Tensor"):
        gradrev.reverse(x, 1.0)
