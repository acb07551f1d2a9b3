"""What every framework's GradientReversal layer shares. Imports no framework.

The layer contract (docs/semantics.md, "Layers"): a layer holding λ = v gives the bits of
``reverse(x, v)`` for v a Python float, in every input dtype and under every precision
set-up; the backward of a forward uses that forward's λ; ``step()`` is atomic; a layer with
a schedule takes λ only from it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from gradrev import _lambda, schedules

FLOAT32_MAX = 3.4028234663852886e38


def initial_lambda(lambda_: Any, schedule: Any, where: str) -> float:
    """λ at step 0: ``schedule(0)`` with a schedule, else ``lambda_`` (1.0 when not given)."""
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"{where}: schedule must be a gradrev.schedules object or a callable step -> λ, "
            f"got {_lambda.describe(schedule)}"
        )
    if schedule is not None and lambda_ is not None:
        raise ValueError(
            f"{where}: got both lambda_={lambda_!r} and a schedule; with a schedule, λ is "
            "schedule(step) (λ at step 0 is schedule(0)), so pass one or the other"
        )
    if schedule is not None:
        return lambda_at(schedule, 0, where)
    return check_lambda(1.0 if lambda_ is None else lambda_, where)


def check_lambda(value: Any, where: str) -> float:
    """A λ given to a layer: a finite real Python number, returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}: lambda_ must be a real Python number, got {_lambda.describe(value)}"
        )
    return _finite(value, where)


def lambda_at(schedule: Any, step: int, where: str) -> float:
    """``schedule(step)`` as a float, checked: a finite real number or a 0-d real tensor."""
    value = schedule(step)
    if not isinstance(value, numbers.Real) and _is_real_scalar_tensor(value):
        value = float(value)  # e.g. a schedule written with torch ops for an int step
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}: schedule({step}) must return a real number (a Python float or a 0-d "
            f"floating tensor), got {_lambda.describe(value)}"
        )
    return _finite(value, f"{where}: schedule({step})")


def fit_storage(value: float, dtype: str, where: str) -> float:
    """Refuse a λ that the layer's storage would round to ±inf (float32 storage only)."""
    if dtype == "float32" and abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"{where}: λ = {value!r} does not fit this layer's float32 storage (largest "
            f"{FLOAT32_MAX:.7g}); float32 storage is used only where the framework has no "
            "float64 (JAX without jax_enable_x64), so no input could use a larger λ anyway"
        )
    return value


def refuse_manual_lambda(where: str) -> ValueError:
    return ValueError(
        f"{where}: this layer's λ follows its schedule, so setting it by hand would be undone "
        "by the next step(). Set layer.schedule = None first to take λ over by hand."
    )


def schedule_config(schedule: Any) -> dict[str, Any] | None:
    return None if schedule is None else schedules.to_dict(schedule)


def schedule_from_config(config: dict[str, Any] | None) -> Any:
    return None if config is None else schedules.from_dict(config)


def _finite(value: numbers.Real, where: str) -> float:
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        raise ValueError(
            f"{where}: lambda_ must be finite, got {_lambda.describe(value)}, "
            "which overflows a float64"
        ) from None
    if not math.isfinite(result):
        raise ValueError(
            f"{where}: lambda_ must be finite, got {result!r}; "
            "a NaN or infinite λ would silently poison every gradient"
        )
    return result


def _is_real_scalar_tensor(value: Any) -> bool:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None or tuple(shape) != ():
        return False
    name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]  # torch: "torch.float32"
    return str(name).startswith(("float", "bfloat"))
