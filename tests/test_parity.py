"""Bitwise parity: every backend's reversed gradient equals PyTorch's ``grad * -lam``.

The expected bits come from ``gradrev._reference``, which ``test_reference_is_torch`` pins to
PyTorch itself. Backends whose CPU flushes subnormals (XLA, TensorFlow) are compared with the
flushed reference, which differs from PyTorch only where an operand or result is subnormal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gradrev import _reference, testing
from gradrev._adapters import on_device

DTYPES = ("float16", "bfloat16", "float32", "float64")
LAMBDAS = (1.0, 0.0, -0.0, -0.7, 0.3, 2.5, 1e-3)
SPECIAL = (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 65504.0, 3.0e38)


def random_grad(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3).astype(_reference.dtype(dtype))


def subnormals(dtype: str) -> np.ndarray:
    dt = _reference.dtype(dtype)
    tiny = _reference.finfo(dt).tiny
    smallest = _reference.finfo(dt).smallest_subnormal
    values = [smallest, -smallest, tiny / 2, -tiny / 3, tiny * 0.999, tiny, 1e-30, -1e-38]
    return np.array(values, dtype=np.float64).astype(dt)


# The parity check of gradrev.testing, on the suite's devices: one implementation.
def expected(backend: Any, g: np.ndarray, lam: float, device: str = "cpu") -> np.ndarray:
    return testing._want(g, lam, on_device(backend, device))


def reversed_grad(
    backend: Any, g: np.ndarray, lam: Any, device: str = "cpu", compiled: bool = False
) -> np.ndarray:
    return testing._reversed(on_device(backend, device), g, lam, compiled)


def assert_same_bits(actual: np.ndarray, want: np.ndarray) -> None:
    testing._assert_same(actual, want, "gradient")


def test_reference_is_torch() -> None:
    """The NumPy reference is PyTorch's own ``grad * -lam`` (the canonical definition)."""
    torch = pytest.importorskip("torch")
    from gradrev._adapters import TorchAdapter

    adapter = TorchAdapter()
    for dtype in DTYPES:
        g = np.concatenate([random_grad(dtype, (4096,)), subnormals(dtype)])
        for lam in LAMBDAS:
            canonical = adapter.numpy(adapter.tensor(g) * -lam)
            assert_same_bits(_reference.reverse_grad(g, lam), canonical)
    assert torch.zeros(1).dtype == torch.float32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_parity_number_lambda(backend: Any, device: str, dtype: str, lam: float) -> None:
    g = random_grad(dtype, (64, 33))
    assert_same_bits(reversed_grad(backend, g, lam, device), expected(backend, g, lam, device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam_dtype", ["float32", "float64", "bfloat16"])
def test_parity_tensor_lambda(backend: Any, device: str, dtype: str, lam_dtype: str) -> None:
    """A λ tensor counts for the value it holds, whatever its dtype."""
    g = random_grad(dtype, (257,))
    for lam in (0.3, -0.7, 0.0):
        held = float(np.asarray(lam, _reference.dtype(lam_dtype)))
        got = reversed_grad(backend, g, backend.scalar(lam, lam_dtype, device), device)
        assert_same_bits(got, expected(backend, g, held, device))


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(backend: Any, device: str, dtype: str) -> None:
    dt = _reference.dtype(dtype)
    with np.errstate(over="ignore"):
        g = np.concatenate([np.array(SPECIAL).astype(dt), subnormals(dtype)])
    for lam in (0.3, -2.0, 0.0, 1.0):
        assert_same_bits(reversed_grad(backend, g, lam, device), expected(backend, g, lam, device))


def test_subnormals_bitwise_where_the_backend_keeps_them(backend: Any, device: str) -> None:
    """Where a backend keeps subnormals, they match PyTorch exactly; where its CPU flushes
    them (XLA, TensorFlow), they become zeros of the right sign, and nothing else changes."""
    g = subnormals("float32")
    g = g[np.abs(g) < _reference.finfo(g.dtype).tiny]
    got = reversed_grad(backend, g, 0.5, device)
    if backend.flushes_subnormals(device):
        assert (got == 0).all() and (np.signbit(got) == ~np.signbit(g)).all()
    else:
        assert_same_bits(got, _reference.reverse_grad(g, 0.5))
        assert (got != 0).any()


@pytest.mark.parametrize(
    "shape", [(), (0,), (3, 0, 2), (1,), (7, 1, 5), (1 << 20,)], ids=lambda s: f"shape{s}"
)
def test_shapes(backend: Any, shape: tuple[int, ...]) -> None:
    g = random_grad("float32", shape)
    assert_same_bits(reversed_grad(backend, g, 0.3), expected(backend, g, 0.3))


def test_strided_view(backend: Any, device: str) -> None:
    """Reversing a transposed, step-sliced view sends −λ·g to exactly the viewed elements."""
    g = random_grad("float32", (5, 4))
    x = backend.tensor(np.zeros((4, 5), np.float32), device)
    got = backend.vjp(
        lambda a: backend.ops.reverse(backend.strided(a), 0.3), x, backend.tensor(g[::2])
    )
    want = np.zeros((4, 5), np.float32)
    want.T[::2] = expected(backend, g[::2], 0.3, device)
    assert_same_bits(got, want)


def test_strided_view_keeps_the_sign_of_zero(backend: Any) -> None:
    """Zero gradients through a strided view get the sign −λ·g gives them (jax >= 0.9.1)."""
    g = np.array([[0.0, -0.0, 0.0, -0.0]] * 3, np.float32)
    x = backend.tensor(np.zeros((4, 5), np.float32))
    got = backend.vjp(lambda a: backend.ops.reverse(backend.strided(a), 0.3), x, backend.tensor(g))
    want = np.zeros((4, 5), np.float32)
    want.T[::2] = expected(backend, g, 0.3)
    assert_same_bits(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_matches_eager(backend: Any, dtype: str, compiled: bool) -> None:
    """torch.compile(fullgraph=True), jax.jit and tf.function(jit_compile=True) give the eager bits."""
    with np.errstate(over="ignore"):
        g = np.concatenate(
            [random_grad(dtype, (300,)), np.array(SPECIAL).astype(_reference.dtype(dtype))]
        )
    for lam in (0.3, -0.7):
        number = reversed_grad(backend, g, lam, compiled=compiled)
        tensor = reversed_grad(backend, g, backend.scalar(lam, "float32"), compiled=compiled)
        want = expected(backend, g, lam)
        assert_same_bits(number, want)
        assert_same_bits(tensor, expected(backend, g, float(np.float32(lam))))
