"""The autodiff matrix of docs/autodiff.md: one test per column, run against every backend.

R_λ behaves as a function whose Jacobian is -λ·I, on every path, or the path is refused
with an error; it never gives a silently different number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ad_paths import PATHS

from gradrev import _reference

LAM = 0.75
X = np.array([0.3, -1.2, 2.0, 0.0], np.float64)
T = np.array([1.0, -2.0, 0.5, 4.0], np.float64)


@pytest.fixture
def paths(backend: Any) -> Any:
    return PATHS[backend.name]()


def rtol(paths: Any) -> float:
    """MLX's float64 sin and cos are only float32-accurate (about 1e-8 relative error)."""
    return 1e-6 if paths.name == "mlx" else 1e-12


def jax_refuses_forward_mode(paths: Any) -> Any:
    """JAX's custom_vjp has no forward mode: JAX itself refuses, as documented."""
    if paths.name == "jax":
        return pytest.raises(TypeError, match="can't apply forward-mode autodiff")
    return None


def test_grad_of_grad(paths: Any) -> None:
    np.testing.assert_allclose(paths.grad_of_grad(X, LAM), -(LAM**2) * np.sin(X), rtol=rtol(paths))


def test_hessian_vector_product(paths: Any) -> None:
    np.testing.assert_allclose(paths.hvp(X, T, LAM), -(LAM**2) * np.sin(X) * T, rtol=rtol(paths))


def test_hessian(paths: Any) -> None:
    np.testing.assert_allclose(
        paths.hessian(X, LAM), np.diag(-(LAM**2) * np.sin(X)), atol=1e-15, rtol=rtol(paths)
    )


@pytest.mark.parametrize("path", ["jvp", "forward_accumulator"])
def test_forward_mode_tangent_is_minus_lambda_t(paths: Any, path: str) -> None:
    refusal = jax_refuses_forward_mode(paths)
    if refusal is not None:
        with refusal:
            getattr(paths, path)(X, T, LAM)
        return
    np.testing.assert_array_equal(getattr(paths, path)(X, T, LAM), -LAM * T)


def test_jacfwd(paths: Any) -> None:
    refusal = jax_refuses_forward_mode(paths)
    if refusal is not None:
        with refusal:
            paths.jacfwd(X, LAM)
        return
    np.testing.assert_array_equal(paths.jacfwd(X, LAM), -LAM * np.eye(len(X)))


def test_jacrev(paths: Any) -> None:
    np.testing.assert_array_equal(paths.jacrev(X, LAM), -LAM * np.eye(len(X)))


def test_per_example_grads_under_vmap(paths: Any) -> None:
    xb = np.stack([X, 2 * X, -X])
    np.testing.assert_allclose(
        paths.per_example_grads(xb, LAM), -LAM * np.cos(xb), rtol=rtol(paths)
    )


def test_checkpoint_and_remat(paths: Any) -> None:
    np.testing.assert_allclose(paths.checkpointed_grad(X, LAM), -LAM * np.cos(X), rtol=rtol(paths))


def test_loops_and_chains_multiply_lambdas(paths: Any) -> None:
    np.testing.assert_array_equal(paths.loop_grad(X, LAM, 3), np.full(4, (-LAM) ** 3))


def test_two_chained_reversals_give_lambda1_lambda2(backend: Any) -> None:
    g = np.array([1.0, -3.0, 0.5], np.float32)
    x = backend.tensor(np.zeros(3, np.float32))
    fn = lambda a: backend.ops.reverse(backend.ops.reverse(a, 0.5), -4.0)
    got = backend.vjp(fn, x, backend.tensor(g))
    np.testing.assert_array_equal(got, g * np.float32(0.5 * -4.0))  # (-λ1)(-λ2) = λ1·λ2


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_gradient_is_minus_lambda_g(paths: Any, dtype: str) -> None:
    if dtype not in getattr(paths, "complex_dtypes", (dtype,)):
        pytest.skip(f"{paths.name} has no {dtype}")
    rng = np.random.default_rng(1)
    z = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(dtype)
    g = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(dtype)
    got = paths.complex_vjp(z, g, 0.3)
    assert got.dtype == np.dtype(dtype)
    assert _reference.same_bits(got, _reference.reverse_grad(g, 0.3)).all()


def test_inplace_after_reversal_is_torchs_error_never_a_wrong_gradient() -> None:
    torch = pytest.importorskip("torch")
    import gradrev

    w = torch.ones(3, requires_grad=True)
    y = gradrev.reverse(w * 1.0, 0.5)
    with pytest.raises(RuntimeError, match="view"):
        y.mul_(2.0)
    leaf = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"view|leaf"):
        gradrev.reverse(leaf, 0.5).add_(1.0)


# Forward mode and torch.func transforms inside torch.compile: refused with fullgraph=True,
# right (eager fallback) without it; see tests/test_errors.py.


def test_jax_hessian_is_forward_over_reverse_and_refused() -> None:
    jax = pytest.importorskip("jax")
    from gradrev.backends.jax import reverse

    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.hessian(lambda a: jax.numpy.sum(jax.numpy.sin(reverse(a, LAM))))(X)
