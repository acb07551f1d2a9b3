"""The arithmetic of [gradrev.schedules][]: in Python floats for an int step, in 0-d float32
tensors of the step's framework for a tensor step (the backend's ``schedule_math()``)."""

from __future__ import annotations

import functools
import math
from typing import Any

from gradrev import _registry
from gradrev.backends import ScheduleMath


@functools.cache
def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def exp(x: float) -> float:
    """exp in float64 as the reference implementations compute it: with NumPy.

    NumPy's exp and math.exp differ by 1 ulp for some inputs on CPUs where NumPy uses its
    own SIMD exp, and tllib computes its coefficient with NumPy. Where NumPy is not
    installed, math.exp. Overflow gives inf, which the ramps turn into their limits.
    """
    np = _numpy()
    if np is None:
        try:
            return math.exp(x)
        except OverflowError:
            return math.inf
    with np.errstate(over="ignore"):
        return float(np.exp(x))


def ramp(gamma: float) -> float:
    """The DANN ramp's end value, r(1) = 2/(1+exp(−gamma)) − 1 (adapt divides by it)."""
    return 2.0 / (1.0 + exp(-gamma)) - 1.0


def _to_float(step: int) -> float:
    try:
        return float(step)
    except OverflowError:
        raise ValueError(f"gradrev.schedules: step {step} is too large for a float") from None


class PythonMath:
    @staticmethod
    def progress(step: int, total: int) -> float:
        # int / int is correctly rounded for any size, so a huge step cannot overflow.
        return min(max(step, 0), total) / total

    @staticmethod
    def clamped(step: Any, total: float) -> float:
        return _to_float(min(max(step, 0), total))

    @staticmethod
    def nonnegative(step: Any) -> float:
        return _to_float(max(step, 0))

    @staticmethod
    def scale(x: float, c: float) -> float:
        return x * c

    exp = staticmethod(exp)

    @staticmethod
    def full(step: Any, value: float) -> float:
        return value


# float32 cannot hold |c| > 3.4e38, and inf·0 is NaN at step 0; past 1e30 every nonzero
# float32 progress already saturates exp, so clipping c changes no other value.
_F32_SCALE_LIMIT = 1e30


class TensorMath:
    """The few ops a schedule needs, on 0-d float32 tensors of one framework."""

    def __init__(self, ops: ScheduleMath) -> None:
        self.to_float, self.clip, self.exp, self.floor = ops

    def progress(self, step: Any, total: int) -> Any:
        return self.clip(self.to_float(step) / float(total))

    def clamped(self, step: Any, total: float) -> Any:
        return self.clip(self.to_float(step) / float(total)) * float(total)

    def nonnegative(self, step: Any) -> Any:
        return self.floor(self.to_float(step))

    def scale(self, x: Any, c: float) -> Any:
        return x * min(max(c, -_F32_SCALE_LIMIT), _F32_SCALE_LIMIT)

    def full(self, step: Any, value: float) -> Any:
        return self.to_float(step) * 0.0 + value


def for_step(step: Any) -> Any:
    if isinstance(step, bool):
        raise TypeError("gradrev.schedules: step must be an int or a 0-d integer tensor, got bool")
    if isinstance(step, int):
        return PythonMath
    # The step's framework is already imported: its tensor is here. A plug-in steps a
    # schedule if its backend defines schedule_math().
    backend = _registry.backend_of(step) or _registry.plugin_backend_of(step)
    ops = getattr(backend, "schedule_math", None)
    if ops is not None:
        return TensorMath(ops())
    raise TypeError(
        f"gradrev.schedules: step must be an int or a 0-d integer tensor, got {type(step).__name__}"
    )
