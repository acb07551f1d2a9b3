"""toygrad: a toy reverse-mode autodiff framework on NumPy, standing in for a third-party
framework that gradrev does not ship (tests/test_testing.py registers its backend)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class Tensor:
    """A NumPy array with the vector-Jacobian products that lead back to its inputs."""

    def __init__(self, value: np.ndarray, parents: tuple[tuple[Tensor, Callable], ...] = ()):
        self.value, self.parents = value, parents

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    # Forward-only arithmetic with Python numbers: enough for gradrev.schedules to step. A
    # Python number takes the tensor's float dtype (a "weak" scalar, as in torch, JAX and
    # NumPy 2), so NumPy 1's promotion of float32 by a Python float to float64 never happens.
    def _weak(self, other: float) -> Any:
        floating = np.issubdtype(self.value.dtype, np.floating)
        return np.asarray(other, self.value.dtype) if floating else other

    def __add__(self, other: float) -> Tensor:
        return Tensor(self.value + self._weak(other))

    def __sub__(self, other: float) -> Tensor:
        return Tensor(self.value - self._weak(other))

    def __mul__(self, other: float) -> Tensor:
        return Tensor(self.value * self._weak(other))

    def __truediv__(self, other: float) -> Tensor:
        return Tensor(self.value / self._weak(other))

    def __rtruediv__(self, other: float) -> Tensor:
        return Tensor(self._weak(other) / self.value)

    __radd__, __rmul__ = __add__, __mul__


def grad(fn: Callable[[Tensor], Tensor], x: Tensor, g: np.ndarray) -> np.ndarray:
    """The gradient of ``fn`` at ``x`` for the cotangent ``g``."""
    leaf = Tensor(x.value)
    order: list[Tensor] = []
    seen: set[int] = set()

    def visit(t: Tensor) -> None:  # topological order, outputs last
        if id(t) not in seen:
            seen.add(id(t))
            for parent, _ in t.parents:
                visit(parent)
            order.append(t)

    y = fn(leaf)
    visit(y)
    grads: dict[int, Any] = {id(y): g}
    for t in reversed(order):
        for parent, vjp in t.parents:
            contribution = vjp(grads[id(t)])
            total = grads.get(id(parent))
            grads[id(parent)] = contribution if total is None else total + contribution
    return grads.get(id(leaf), np.zeros_like(x.value))
