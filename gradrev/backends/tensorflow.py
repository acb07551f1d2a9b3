"""TensorFlow backend: a ``tf.custom_gradient`` that reproduces the PyTorch arithmetic bit for bit."""

from __future__ import annotations

import functools
import math
from typing import Any

try:
    import numpy as np
    import tensorflow as tf

    # private API [tf-eager-record]: docs/private-apis.md
    from tensorflow.python.eager import record as _record
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "tensorflow", e) from e

from gradrev import _lambda
from gradrev.backends import ScheduleMath

__all__ = ["is_tensor", "reverse"]

_FRAMEWORK = "tensorflow"
_REDUCED = (tf.float16, tf.bfloat16)
# The dtypes PyTorch computes grad * -λ in; float8 has no PyTorch arithmetic.
_DTYPES = frozenset((tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.complex64, tf.complex128))


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of this backend's framework (eager, symbolic or a Variable)."""
    return isinstance(x, (tf.Tensor, tf.Variable))


def reverse(x: tf.Tensor, lambda_: float | tf.Tensor = 1.0) -> tf.Tensor:
    """Identity forward, gradient times ``-lambda_`` backward.

    Contract: returns an alias of ``x`` (a Variable is read); only ``lambda_`` is kept for backward.

    Example:
        ```python
        import tensorflow as tf
        from gradrev.backends.tensorflow import reverse

        y = reverse(tf.ones(3), 0.5)
        ```
    """
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        raise _lambda.wrong_input(x, "gradrev.reverse", "a tf.Tensor or tf.Variable")
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating or x.dtype.is_complex):
        _neg_lambda(lambda_, tf.float32)  # still reject a bad λ
        return x  # integers and bools carry no gradient: pass through untouched
    if x.dtype not in _DTYPES:
        raise _lambda.unsupported_dtype(x.dtype.name, "gradrev.reverse")
    neg_lambda = _neg_lambda(lambda_, _opmath(x.dtype))
    if tf.executing_eagerly():
        # Eagerly, only tapes and accumulators can take the gradient, and they read the
        # record alone: the custom_gradient serves symbolic gradients of traced functions.
        # private API [tf-eager-record]: docs/private-apis.md
        if not _record.could_possibly_record():
            return x  # nothing records: the identity
        return _record_for_tapes(x, x, neg_lambda)
    return _record_for_tapes(_reverse(x, neg_lambda), x, neg_lambda)


@tf.custom_gradient  # type: ignore[untyped-decorator]
def _reverse(x: tf.Tensor, neg_lambda: tf.Tensor) -> Any:
    def grad(g: tf.Tensor) -> tuple[tf.Tensor, None]:
        return _scale(g, neg_lambda), None

    return tf.identity(x), grad


def _record_for_tapes(y: tf.Tensor, x: tf.Tensor, neg_lambda: tf.Tensor) -> tf.Tensor:
    """Re-record ``y = R(x)`` for GradientTapes and ForwardAccumulators.

    This is gradrev's one use of a private TensorFlow API (``tensorflow.python.eager.record``).
    ``tf.custom_gradient`` alone serves backprop, but a ForwardAccumulator takes the tangent
    of the identity inside it (+t) and silently ignores the custom gradient. Here the output
    is a fresh alias recorded with the reversed backward function, from which tapes get
    -λ·g and accumulators derive -λ·t (by transposing it), eagerly and in tf.function.
    ``_reverse`` still carries the graph-level gradient override that symbolic gradients of
    a traced function use.
    """
    # private API [tf-eager-record]: docs/private-apis.md
    with _record.stop_recording():
        out = tf.identity(y)
    _record.record_operation("GradReverse", [out], [x], lambda g: [_scale(g, neg_lambda)])
    return out


def _scale(g: tf.Tensor, neg_lambda: tf.Tensor) -> tf.Tensor:
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
        if lambda_.shape.rank is None:  # traced without a known shape
            raise _lambda.unknown_rank(lambda_, "gradrev.reverse", _FRAMEWORK)
        if lambda_.shape.rank != 0:
            raise _lambda.not_scalar(lambda_, "gradrev.reverse", _FRAMEWORK)
        if not lambda_.dtype.is_floating:
            raise _lambda.not_floating(lambda_, "gradrev.reverse", _FRAMEWORK)
        return tf.cast(-tf.stop_gradient(tf.convert_to_tensor(lambda_)), dtype)
    value = -_lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK)
    if tf.executing_eagerly():
        return _constant(value, math.copysign(1.0, value), dtype)
    return _make_constant(value, dtype)


@functools.lru_cache(maxsize=256)
def _constant(value: float, sign: float, dtype: tf.DType) -> tf.Tensor:
    """−λ as an eager constant, made once per value (the sign is in the key: 0.0 == -0.0)."""
    return _make_constant(value, dtype)


def _make_constant(value: float, dtype: tf.DType) -> tf.Tensor:
    # Via NumPy: TensorFlow's eager cache of scalar constants keys on the Python value, and
    # 0.0 == -0.0, so tf.constant(-0.0) can return a cached +0.0 and flip the zeros' signs.
    return tf.constant(np.asarray(value, dtype.as_numpy_dtype))


# -- What the tools and schedules read (gradrev/_registry.py): devices, schedule math --


def devices() -> list[str]:
    """The logical devices TensorFlow sees, CPU first."""
    return [d.name for d in tf.config.list_logical_devices()]


def schedule_math() -> ScheduleMath:
    return ScheduleMath(
        lambda s: tf.cast(s, tf.float32),
        lambda p: tf.clip_by_value(p, 0.0, 1.0),
        tf.exp,
        lambda s: tf.maximum(s, 0.0),
    )
