"""MLX backend: an ``mx.custom_function`` that reproduces the PyTorch arithmetic bit for bit."""

from __future__ import annotations

import functools
import math
from typing import Any, cast

try:
    import mlx.core as mx
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "mlx", e) from e

from gradrev import _lambda
from gradrev.backends import ScheduleMath

__all__ = ["is_tensor", "reverse"]

_FRAMEWORK = "mlx"
_REDUCED = (mx.float16, mx.bfloat16)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of this backend's framework (inside ``mx.compile``/``vmap`` too)."""
    return isinstance(x, mx.array)


def reverse(x: mx.array, lambda_: float | mx.array = 1.0) -> mx.array:
    """Identity forward, gradient times ``-lambda_`` backward.

    Contract: returns an array sharing ``x``'s buffer; only ``lambda_`` is kept for backward.

    Example:
        ```python
        import mlx.core as mx
        from gradrev.backends.mlx import reverse

        y = reverse(mx.ones(3), 0.5)
        ```
    """
    if not isinstance(x, mx.array):
        raise _lambda.wrong_input(x, "gradrev.reverse", "an mlx.core.array")
    if not mx.issubdtype(x.dtype, mx.inexact):
        _neg_lambda(lambda_, mx.float32)  # still reject a bad λ
        return x  # integers and bools carry no gradient: pass through untouched
    if isinstance(lambda_, mx.array):
        return _apply(x, _neg_lambda(lambda_, _opmath(x.dtype)))
    value = -_lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK)
    return cast(mx.array, _reverse_by(value, math.copysign(1.0, value), x.dtype)(x))


@mx.custom_function
def _reverse(x: mx.array, neg_lambda: mx.array) -> mx.array:
    return x


@_reverse.vjp
def _reverse_vjp(primals: Any, cotangent: mx.array, output: Any) -> tuple[mx.array, mx.array]:
    neg_lambda = primals[1]
    return _scale(cotangent, neg_lambda), mx.zeros_like(neg_lambda)


@_reverse.jvp
def _reverse_jvp(primals: Any, tangents: Any) -> mx.array:
    # Forward mode (mx.jvp): the tangent is -λ·t, with the same rounding as the backward.
    return _scale(tangents[0], primals[1])


@_reverse.vmap
def _reverse_vmap(inputs: Any, axes: Any) -> tuple[mx.array, int | None]:
    # Without this rule, mx.vmap replaces the function by its body (an identity) and drops
    # the custom VJP: grad of a vmapped reversal would silently be +g.
    x, neg_lambda = inputs
    x_axis, lambda_axis = axes
    if lambda_axis is None:
        return _apply(x, neg_lambda), x_axis
    # A batch of λ (vmap over λ): batch axis first for both, λ broadcast against x.
    neg_lambda = mx.moveaxis(neg_lambda, lambda_axis, 0)
    batch = neg_lambda.shape[0]
    x = mx.broadcast_to(x, (batch, *x.shape)) if x_axis is None else mx.moveaxis(x, x_axis, 0)
    return _apply(x, neg_lambda.reshape(batch, *([1] * (x.ndim - 1)))), 0


def _apply(x: mx.array, neg_lambda: mx.array) -> mx.array:
    return cast(mx.array, _reverse(x, neg_lambda))  # a custom_function is typed as -> object


def _scale(g: mx.array, neg_lambda: mx.array) -> mx.array:
    """``g * neg_lambda`` computed in PyTorch's opmath (float32 for float16 and bfloat16)."""
    if g.dtype in _REDUCED:
        return (g.astype(mx.float32) * neg_lambda).astype(g.dtype)
    if g.dtype == mx.complex64:
        return _complex_scale(g, neg_lambda)
    return g * neg_lambda


def _complex_scale(g: mx.array, c: mx.array) -> mx.array:
    """PyTorch's complex ``g * c``, with c real taken as the complex c + 0j: (a + bi)(c + 0i) is
    (ac - b·0) + (a·0 + bc)i. MLX scales each component alone, which differs where a or b
    is infinite or NaN ((inf+infj)·-0.3 is nan+nanj in PyTorch) and in some signs of zero."""
    a, b = mx.real(g), mx.imag(g)
    parts = mx.stack([a * c - b * 0.0, a * 0.0 + b * c], axis=-1)
    return parts.view(mx.complex64).squeeze(-1)


def _opmath(dtype: mx.Dtype) -> mx.Dtype:
    """The real dtype λ is rounded to before the multiply, as PyTorch's opmath does."""
    if dtype in _REDUCED or dtype == mx.complex64:
        return mx.float32
    return dtype


@functools.lru_cache(maxsize=256)
def _reverse_by(value: float, sign: float, dtype: mx.Dtype) -> Any:
    """The reversal of an x of ``dtype`` by the constant λ = -value, made once per value (the
    sign is in the key: 0.0 == -0.0). With λ closed over, x is the only primal, which makes
    mx.grad through it about a third cheaper than through ``_reverse(x, neg_lambda)``."""
    # mx.array rounds a Python float to float32 to nearest even, as PyTorch and NumPy do.
    neg_lambda = mx.array(value, _opmath(dtype))

    @mx.custom_function
    def reverse_by(x: mx.array) -> mx.array:
        return x

    # With one primal, MLX hands each rule bare arrays and axes, not sequences of them.
    @reverse_by.vjp
    def _vjp(primal: mx.array, cotangent: mx.array, output: Any) -> mx.array:
        return _scale(cotangent, neg_lambda)

    @reverse_by.jvp
    def _jvp(primal: mx.array, tangent: mx.array) -> mx.array:
        return _scale(tangent, neg_lambda)

    @reverse_by.vmap
    def _vmap(x: mx.array, axis: int | None) -> tuple[mx.array, int | None]:
        # Without this rule, mx.vmap would replace the function by its body (see below).
        return cast(mx.array, reverse_by(x)), axis

    return reverse_by


def _neg_lambda(lambda_: Any, dtype: mx.Dtype) -> mx.array:
    if isinstance(lambda_, mx.array):
        if lambda_.ndim != 0:
            raise _lambda.not_scalar(lambda_, "gradrev.reverse", _FRAMEWORK)
        if not mx.issubdtype(lambda_.dtype, mx.floating):
            raise _lambda.not_floating(lambda_, "gradrev.reverse", _FRAMEWORK)
        # Rounding commutes with negation, so this is PyTorch's opmath(-λ) for any λ dtype.
        # A float64 λ is rounded on the CPU stream, the only one with float64 (MLX's GPU
        # streams refuse it), so that a float32 x on the GPU can take a float64 λ.
        stream = mx.cpu if lambda_.dtype == mx.float64 else None
        return -mx.stop_gradient(lambda_).astype(dtype, stream=stream)
    # mx.array rounds a Python float to float32 to nearest even, as PyTorch and NumPy do.
    return mx.array(-_lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK), dtype)


# -- What the tools and schedules read (gradrev/_registry.py): devices, schedule math --


def devices() -> list[str]:
    """The devices MLX sees, CPU first."""
    return ["cpu", *(["gpu"] if mx.is_available(mx.gpu) else [])]


def schedule_math() -> ScheduleMath:
    return ScheduleMath(
        lambda s: s.astype(mx.float32),
        lambda p: mx.clip(p, 0.0, 1.0),
        mx.exp,
        lambda s: mx.maximum(s, 0.0),
    )
