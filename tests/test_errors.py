"""Inputs that used to fail deep inside a framework get gradrev's own error, at the call.

Each test names the input from issue 14 it covers. The message names what was given and
what is accepted; the error is raised by ``reverse`` itself, never later at backward.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import gradrev
from gradrev import _dispatch, _lambda


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.mark.parametrize("lam", [10**400, -(10**400)], ids=["+10**400", "-10**400"])
def test_int_too_large_for_a_float_is_a_value_error(backend: Any, lam: int) -> None:
    x = backend.tensor(np.ones(2, np.float32))
    with pytest.raises(
        ValueError, match=r"gradrev.reverse: lambda_ must be finite, got int -?1000"
    ):
        gradrev.reverse(x, lam)


def test_describe_shortens_huge_values() -> None:
    assert len(_lambda.describe(10**400)) < 80
    assert _lambda.describe(0.5) == "float 0.5"


def test_describe_is_safe_on_odd_objects() -> None:
    class NoShape:
        @property
        def shape(self) -> Any:
            raise ValueError("Cannot iterate over a shape with unknown rank")

    assert "NoShape" in _lambda.describe(NoShape())


# -- PyTorch ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_numpy_scalar_lambda_under_torch_compile_fullgraph() -> None:
    """Eagerly a NumPy scalar λ works; under torch.compile(fullgraph=True) it must too."""
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    step = torch.compile(lambda x, lam: gradrev.reverse(x, lam).sum(), fullgraph=True)
    for lam in (np.float32(0.5), np.float64(-0.25)):
        x = torch.ones(3, requires_grad=True)
        step(x, lam).backward()
        assert torch.equal(x.grad, torch.full((3,), -float(lam)))


@pytest.mark.parametrize(
    "case", ["sparse_coo", "sparse_csr", "nested_strided", "nested_jagged"], ids=str
)
def test_torch_sparse_and_nested_inputs_are_type_errors(case: str) -> None:
    torch = pytest.importorskip("torch")
    ones = [torch.ones(2), torch.ones(3)]
    x = {
        "sparse_coo": lambda: torch.eye(3).to_sparse(),
        "sparse_csr": lambda: torch.eye(3).to_sparse_csr(),
        "nested_strided": lambda: torch.nested.nested_tensor(ones),
        "nested_jagged": lambda: torch.nested.nested_tensor(ones, layout=torch.jagged),
    }[case]().requires_grad_(True)
    kind = "sparse" if case.startswith("sparse") else "nested"
    with pytest.raises(
        TypeError, match=rf"gradrev.reverse: x must be a dense .*torch.Tensor.*, got a {kind}"
    ):
        gradrev.reverse(x, 0.5)


def test_torch_lambda_on_another_device_is_refused_at_the_call() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"lambda_ is on device meta, .* x is on device cpu"):
        gradrev.reverse(x, torch.tensor(0.5, device="meta"))


def test_torch_cpu_lambda_is_accepted_with_x_on_any_device() -> None:
    """A 0-d CPU tensor multiplies a tensor on any device, as in PyTorch itself."""
    torch = pytest.importorskip("torch")
    x = torch.ones(3, device="meta", requires_grad=True)
    (g,) = torch.autograd.grad(gradrev.reverse(x, torch.tensor(0.5)).sum(), x)
    assert g.device.type == "meta"


# -- JAX and TensorFlow ----------------------------------------------------------------------


def test_jax_array_subclass_is_a_type_error() -> None:
    jax = pytest.importorskip("jax")

    class NotReallyAnArray(jax.Array):  # type: ignore[misc]
        pass

    with pytest.raises(TypeError, match=r"gradrev.reverse: x must be a jax.Array .*NotReally"):
        gradrev.reverse(NotReallyAnArray(), 0.5)


def test_tensorflow_lambda_of_unknown_rank() -> None:
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([2]), tf.TensorSpec(None)])
    def f(x: Any, lam: Any) -> Any:
        return gradrev.reverse(x, lam)

    with pytest.raises(
        ValueError,
        match=r"gradrev.reverse: lambda_ .*of unknown shape and dtype float32, whose rank is unknown.*TensorSpec",
    ):
        f(tf.ones(2), tf.constant(0.5))


# -- Dispatch beside a half-imported framework ----------------------------------------------

_HALF_IMPORTED = """
import sys, types
sys.modules[{name!r}] = types.ModuleType({name!r})  # a stub, or one still being imported
{setup}
import gradrev
y = gradrev.reverse(x, 0.5)
print(type(y).__name__)
"""

_SETUPS = {
    "jax": "import jax.numpy as jnp\nx = jnp.ones(3)",
    "torch": "import torch\nx = torch.ones(3)",
    "tensorflow": "import tensorflow as tf\nx = tf.ones(3)",
}


@pytest.mark.parametrize(
    ("stub", "real"),
    [("torch", "jax"), ("jax", "torch"), ("tensorflow", "torch"), ("torch", "tensorflow")],
)
def test_dispatch_survives_a_stub_or_half_imported_framework(stub: str, real: str) -> None:
    pytest.importorskip(real)
    proc = run_python(_HALF_IMPORTED.format(name=stub, setup=_SETUPS[real]))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_dispatch_while_another_thread_imports_torch() -> None:
    """The failure from the issue: 'partially initialized module torch' (3 of 3 runs)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    code = (
        "import sys, threading\n"
        "import jax.numpy as jnp\n"
        "import gradrev\n"
        "t = threading.Thread(target=lambda: __import__('torch'))\n"
        "t.start()\n"
        "errors = []\n"
        "while t.is_alive():\n"
        "    try:\n"
        "        gradrev.reverse(jnp.ones(3), 0.5)\n"
        "    except Exception as e:\n"
        "        errors.append(repr(e)); break\n"
        "t.join()\n"
        "print(errors)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_dispatch_cache_is_untouched_by_an_unknown_type() -> None:
    with pytest.raises(TypeError):
        gradrev.reverse(object(), 1.0)
    assert object not in _dispatch._BACKEND_FOR_TYPE
