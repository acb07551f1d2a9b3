"""Validation of ``lambda_`` shared by every backend. Imports no framework."""

from __future__ import annotations

import math
import numbers
from typing import Any

ACCEPTED = "a real Python number or a 0-d floating {framework} tensor"


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages, e.g. 'a torch.Tensor of shape (3,)'.

    Never raises: it runs on error paths, for objects whose ``shape`` may itself fail (a
    TensorFlow shape of unknown rank, a nested torch tensor, an abstract ``jax.Array``).
    """
    cls = type(value)
    if cls.__module__ == "builtins":
        return f"{cls.__qualname__} {_short_repr(value)}"
    name = f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"
    try:
        shape = getattr(value, "shape", None)
        where = None if shape is None else f"of shape {tuple(shape)}"
    except Exception:  # any framework's error: describe what can be described
        where = "of unknown shape"
    if where is None:
        return f"a {name}"
    try:
        dtype = getattr(value, "dtype", "?")
        dtype = getattr(dtype, "name", dtype)  # TensorFlow's repr is "<dtype: 'float32'>"
    except Exception:
        dtype = "?"
    return f"a {name} {where} and dtype {dtype}"


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"of {value.bit_length()} bits"
    if len(text) <= 40:
        return text
    return f"{text[:12]}…{text[-4:]} ({len(text)} characters)"


def as_float(lambda_: Any, where: str, framework: str) -> float:
    """Validate a Python-number λ and return it as a finite float.

    The sign rule (docs/semantics.md): any finite λ is accepted. λ > 0 reverses and scales,
    λ = 0 blocks (the gradient is g · −0.0), λ < 0 scales by |λ| without reversing.
    """
    if type(lambda_) is float and -math.inf < lambda_ < math.inf:
        return lambda_  # the common case, without the numbers.Real ABC check (1 µs)
    if isinstance(lambda_, bool) or not isinstance(lambda_, numbers.Real):
        raise TypeError(
            f"{where}: lambda_ must be {ACCEPTED.format(framework=framework)}, "
            f"got {describe(lambda_)}"
        )
    return finite(lambda_, where)


def finite(value: Any, where: str, name: str = "lambda_", symbol: str = "λ") -> float:
    """A real number as a finite float, or gradrev's ValueError: the one finiteness check that
    the backends, the layers (every entry path of their λ state), restores and the drop-ins'
    α (``name="alpha"``) share."""
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        raise ValueError(
            f"{where}: {name} must be finite, got {describe(value)}, which overflows a float64"
        ) from None
    # Comparisons, not math.isfinite: torch.compile turns a Python float that changes
    # between calls into a symbolic float, which compares (as a guard) but has no isfinite.
    if not -math.inf < result < math.inf:
        raise ValueError(
            f"{where}: {name} must be finite, got {result!r}; "
            f"a NaN or infinite {symbol} would silently poison every gradient"
        )
    return result


def real(value: Any, where: str, name: str) -> float:
    """A real Python number (not a bool) as a finite float: the drop-ins' hyperparameters."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {describe(value)}")
    return finite(value, where, name, name)


def not_scalar(lambda_: Any, where: str, framework: str) -> ValueError:
    """λ with dimensions. One element is refused too, not broadcast: see docs/migration.md."""
    if _one_element(lambda_):
        fix = "tf.reshape(lambda_, [])" if framework == "tensorflow" else "lambda_.reshape(())"
        hint = f"gradrev does not broadcast a one-element λ: pass {fix} or a Python float"
    else:
        hint = "gradrev takes one λ for the whole gradient"
    return ValueError(
        f"{where}: lambda_ must be a scalar ({ACCEPTED.format(framework=framework)}), "
        f"got {describe(lambda_)}; {hint}"
    )


def unknown_rank(lambda_: Any, where: str, framework: str) -> ValueError:
    return ValueError(
        f"{where}: lambda_ must be a scalar ({ACCEPTED.format(framework=framework)}), "
        f"got {describe(lambda_)}, whose rank is unknown in this trace; give it a known rank, "
        "e.g. tf.TensorSpec([]) in the tf.function's input_signature"
    )


def _one_element(value: Any) -> bool:
    try:
        dims = tuple(value.shape)
    except (TypeError, ValueError):  # e.g. a TensorFlow shape of unknown rank
        return False
    return all(isinstance(d, int) and d == 1 for d in dims)


def not_floating(lambda_: Any, where: str, framework: str) -> TypeError:
    return TypeError(
        f"{where}: lambda_ must be {ACCEPTED.format(framework=framework)}, got {describe(lambda_)}"
    )


def wrong_input(x: Any, where: str, accepted: str) -> TypeError:
    return TypeError(f"{where}: x must be {accepted}, got {describe(x)}")


OPMATH_DTYPES = "float16, bfloat16, float32, float64, complex64 or complex128"


def unsupported_dtype(dtype: str, where: str) -> TypeError:
    """x of a floating dtype that PyTorch computes ``grad * -λ`` in no way for (float8...)."""
    return TypeError(
        f"{where}: x has dtype {dtype}, for which PyTorch defines no arithmetic, so there are "
        f"no canonical bits to reproduce; accepted: {OPMATH_DTYPES} (integers and bools pass "
        "through). Cast x first, e.g. to bfloat16 or float32, and the gradient back after"
    )
