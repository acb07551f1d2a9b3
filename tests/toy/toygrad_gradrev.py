"""The gradrev backend for toygrad, as a third-party package would ship it.

Registered through the entry point group ``gradrev.backends`` (name ``toygrad``, value
``toygrad_gradrev``); ``Adapter`` is what gradrev.testing.certify and ``gradrev check`` need,
``schedule_math`` what gradrev.schedules needs to step with a toygrad tensor.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import toygrad

from gradrev.backends import ScheduleMath, as_float, not_floating, not_scalar, wrong_input

_REDUCED = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def is_tensor(x: Any) -> bool:
    return isinstance(x, toygrad.Tensor)


def reverse(x: toygrad.Tensor, lambda_: Any = 1.0) -> toygrad.Tensor:
    if not isinstance(x, toygrad.Tensor):
        raise wrong_input(x, "gradrev.reverse", "a toygrad.Tensor")
    floating = x.dtype in _REDUCED or np.issubdtype(x.dtype, np.inexact)
    opmath = np.dtype(np.float32) if x.dtype in _REDUCED or not floating else x.dtype
    neg = _neg_lambda(lambda_, opmath)
    if not floating:
        return x

    def vjp(g: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return (g.astype(opmath) * neg).astype(g.dtype)

    return toygrad.Tensor(x.value, ((x, vjp),))


def _neg_lambda(lambda_: Any, dtype: np.dtype) -> np.ndarray:
    if isinstance(lambda_, toygrad.Tensor):
        if lambda_.ndim != 0:
            raise not_scalar(lambda_, "gradrev.reverse", "toygrad")
        if not (lambda_.dtype in _REDUCED or np.issubdtype(lambda_.dtype, np.floating)):
            raise not_floating(lambda_, "gradrev.reverse", "toygrad")
        return -lambda_.value.astype(dtype)
    return np.asarray(-as_float(lambda_, "gradrev.reverse", "toygrad"), dtype)


def schedule_math() -> ScheduleMath:
    return ScheduleMath(
        lambda s: toygrad.Tensor(s.value.astype(np.float32)),
        lambda p: toygrad.Tensor(np.clip(p.value, np.float32(0), np.float32(1))),
        lambda x: toygrad.Tensor(np.exp(x.value)),
        lambda s: toygrad.Tensor(np.maximum(s.value, np.float32(0))),
    )


class Adapter:
    name = "toygrad"

    def __init__(self, ops: Any = None) -> None:
        import toygrad_gradrev

        self.ops = ops or toygrad_gradrev

    def tensor(self, a: np.ndarray) -> toygrad.Tensor:
        return toygrad.Tensor(np.array(a))

    def scalar(self, value: float, dtype: str) -> toygrad.Tensor:
        dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
        return toygrad.Tensor(np.asarray(value, dt))

    def numpy(self, t: toygrad.Tensor) -> np.ndarray:
        return t.value

    def vjp(self, fn: Any, x: toygrad.Tensor, g: toygrad.Tensor, compiled: bool = False) -> Any:
        return toygrad.grad(fn, x, g.value)

    def shares_memory(self, y: toygrad.Tensor, x: toygrad.Tensor) -> bool:
        return bool(np.shares_memory(y.value, x.value))

    def saved_for_backward(self, fn: Any, x: toygrad.Tensor) -> list[int]:
        """The sizes of the arrays that the graph's vector-Jacobian products hold on to."""
        sizes = []
        for _, vjp in fn(x).parents:
            for cell in vjp.__closure__ or ():
                value = cell.cell_contents
                if isinstance(value, toygrad.Tensor):
                    value = value.value
                if isinstance(value, np.ndarray):
                    sizes.append(value.size)
        return sizes
