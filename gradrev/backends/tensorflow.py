"""TensorFlow backend: a ``tf.custom_gradient`` that reproduces the PyTorch arithmetic bit for bit."""

from __future__ import annotations

from typing import Any

try:
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'gradrev.backends.tensorflow needs TensorFlow: pip install "gradrev[tensorflow]"'
    ) from e

from gradrev import _lambda

__all__ = ["is_tensor", "reverse"]

_FRAMEWORK = "tensorflow"
_REDUCED = (tf.float16, tf.bfloat16)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of this backend's framework (eager, symbolic or a Variable)."""
    return isinstance(x, (tf.Tensor, tf.Variable))


def reverse(x: tf.Tensor, lambda_: float | tf.Tensor = 1.0) -> tf.Tensor:
    """Identity forward, gradient times ``-lambda_`` backward.

    Contract: returns an alias of ``x`` (a Variable is read); only ``lambda_`` is kept for backward.

    >>> y = reverse(tf.ones(3), 0.5)
    """
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        raise _lambda.wrong_input(x, "gradrev.reverse", "a tf.Tensor or tf.Variable")
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating or x.dtype.is_complex):
        _neg_lambda(lambda_, tf.float32)  # still reject a bad λ
        return x  # integers and bools carry no gradient: pass through untouched
    return _reverse(x, _neg_lambda(lambda_, _opmath(x.dtype)))


@tf.custom_gradient  # type: ignore[untyped-decorator]
def _reverse(x: tf.Tensor, neg_lambda: tf.Tensor) -> Any:
    def grad(g: tf.Tensor) -> tuple[tf.Tensor, None]:
        return scale(g, neg_lambda), None

    return tf.identity(x), grad


def scale(g: tf.Tensor, neg_lambda: tf.Tensor) -> tf.Tensor:
    """``g * neg_lambda`` computed in PyTorch's opmath (float32 for float16 and bfloat16)."""
    if g.dtype in _REDUCED:
        return tf.cast(tf.cast(g, tf.float32) * neg_lambda, g.dtype)
    if g.dtype.is_complex:
        return g * tf.cast(neg_lambda, g.dtype)
    return g * neg_lambda


def _opmath(dtype: tf.DType) -> tf.DType:
    """The real dtype λ is rounded to before the multiply, as PyTorch's opmath does."""
    if dtype in _REDUCED:
        return tf.float32
    return dtype.real_dtype


def _neg_lambda(lambda_: Any, dtype: tf.DType) -> tf.Tensor:
    if isinstance(lambda_, (tf.Tensor, tf.Variable)):
        if lambda_.shape.rank != 0:
            raise _lambda.not_scalar(lambda_, "gradrev.reverse", _FRAMEWORK)
        if not lambda_.dtype.is_floating:
            raise _lambda.not_floating(lambda_, "gradrev.reverse", _FRAMEWORK)
        return tf.cast(-tf.stop_gradient(tf.convert_to_tensor(lambda_)), dtype)
    return tf.constant(-_lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK), dtype)
