"""Validation of ``lambda_`` shared by every backend. Imports no framework."""

from __future__ import annotations

import math
import numbers
from typing import Any

ACCEPTED = "a real Python number or a 0-d floating {framework} tensor"


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages, e.g. 'a torch.Tensor of shape (3,)'."""
    cls = type(value)
    shape = getattr(value, "shape", None)
    name = f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"
    if cls.__module__ == "builtins":
        return f"{cls.__qualname__} {value!r}"
    if shape is not None:
        return f"a {name} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    return f"a {name}"


def as_float(lambda_: Any, where: str, framework: str) -> float:
    """Validate a Python-number λ and return it as a finite float."""
    if isinstance(lambda_, bool) or not isinstance(lambda_, numbers.Real):
        raise TypeError(
            f"{where}: lambda_ must be {ACCEPTED.format(framework=framework)}, "
            f"got {describe(lambda_)}"
        )
    value = float(lambda_)
    # Comparisons, not math.isfinite: torch.compile turns a Python float that changes
    # between calls into a symbolic float, which compares (as a guard) but has no isfinite.
    if not -math.inf < value < math.inf:
        raise ValueError(
            f"{where}: lambda_ must be finite, got {value!r}; "
            "a NaN or infinite λ would silently poison every gradient"
        )
    return value


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
