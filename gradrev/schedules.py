"""λ schedules: small, frozen, serializable objects mapping a step to λ.

A schedule is called with a Python int (gives a float) or with a 0-d integer tensor of
any framework (gives a 0-d float32 tensor of that framework, traceable inside jit).
``to_dict``/``from_dict`` round-trip it through plain JSON-able dicts.

Example:
    ```python
    from gradrev import schedules

    s = schedules.dann(total_steps=1000)
    assert round(s(500), 4) == 0.9866
    assert schedules.from_dict(s.to_dict()) == s
    ```
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DANN",
    "Constant",
    "Linear",
    "Schedule",
    "WarmStart",
    "constant",
    "dann",
    "from_dict",
    "linear",
    "warm_start",
]


@runtime_checkable
class Schedule(Protocol):
    """Anything that maps a step to λ. gradrev's own schedules also serialize."""

    def __call__(self, step: Any) -> Any: ...


@dataclass(frozen=True)
class Constant:
    """λ = value at every step."""

    value: float

    def __post_init__(self) -> None:
        _finite(self, "value", self.value)

    def __call__(self, step: Any) -> Any:
        return _math(step).full(step, self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "constant", **asdict(self)}


@dataclass(frozen=True)
class Linear:
    """λ goes linearly from ``start`` to ``end`` over ``total_steps``, then stays at ``end``."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        _finite(self, "start", self.start)
        _finite(self, "end", self.end)
        _positive_int(self, "total_steps", self.total_steps)

    def __call__(self, step: Any) -> Any:
        m = _math(step)
        p = m.progress(step, self.total_steps)
        return self.start + (self.end - self.start) * p

    def to_dict(self) -> dict[str, Any]:
        return {"name": "linear", **asdict(self)}


@dataclass(frozen=True)
class DANN:
    """Ganin et al.: λ = lambda_max · (2 / (1 + exp(−gamma · p)) − 1), p = min(step / total_steps, 1)."""

    total_steps: int
    gamma: float = 10.0
    lambda_max: float = 1.0

    def __post_init__(self) -> None:
        _positive_int(self, "total_steps", self.total_steps)
        _finite(self, "gamma", self.gamma)
        _finite(self, "lambda_max", self.lambda_max)

    def __call__(self, step: Any) -> Any:
        m = _math(step)
        p = m.progress(step, self.total_steps)
        return self.lambda_max * (2.0 / (1.0 + m.exp(-self.gamma * p)) - 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "dann", **asdict(self)}


@dataclass(frozen=True)
class WarmStart:
    """Transfer-Learning-Library's ``WarmStartGradientReverseLayer`` coefficient, clamped:

    λ = 2 (hi − lo) / (1 + exp(−alpha · i / max_iters)) − (hi − lo) + lo, i = min(step, max_iters).
    """

    lo: float = 0.0
    hi: float = 1.0
    alpha: float = 1.0
    max_iters: int = 1000

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "alpha"):
            _finite(self, name, getattr(self, name))
        _positive_int(self, "max_iters", self.max_iters)

    def __call__(self, step: Any) -> Any:
        m = _math(step)
        i = m.clamped(step, self.max_iters)
        span = self.hi - self.lo
        return 2.0 * span / (1.0 + m.exp(-self.alpha * i / self.max_iters)) - span + self.lo

    def to_dict(self) -> dict[str, Any]:
        return {"name": "warm_start", **asdict(self)}


def constant(value: float) -> Constant:
    """λ = value."""
    return Constant(float(value))


def linear(start: float, end: float, total_steps: int) -> Linear:
    """λ from ``start`` to ``end`` over ``total_steps`` steps."""
    return Linear(float(start), float(end), total_steps)


def dann(total_steps: int, gamma: float = 10.0, lambda_max: float = 1.0) -> DANN:
    """The DANN ramp 2/(1+exp(−γp))−1 from 0 to ``lambda_max`` (Ganin et al., 2016)."""
    return DANN(total_steps, float(gamma), float(lambda_max))


def warm_start(lo: float, hi: float, alpha: float, max_iters: int) -> WarmStart:
    """Transfer-Learning-Library's warm-start ramp from ``lo`` to (almost) ``hi``."""
    return WarmStart(float(lo), float(hi), float(alpha), max_iters)


_BY_NAME: dict[str, Any] = {
    "constant": Constant,
    "linear": Linear,
    "dann": DANN,
    "warm_start": WarmStart,
}


def from_dict(config: dict[str, Any]) -> Constant | Linear | DANN | WarmStart:
    """Rebuild a schedule from ``schedule.to_dict()``."""
    if not isinstance(config, dict) or config.get("name") not in _BY_NAME:
        raise ValueError(
            f"gradrev.schedules.from_dict: expected a dict with 'name' in {sorted(_BY_NAME)}, "
            f"got {config!r}"
        )
    fields = {k: v for k, v in config.items() if k != "name"}
    return _BY_NAME[config["name"]](**fields)  # type: ignore[no-any-return]


def to_dict(schedule: Any) -> dict[str, Any]:
    """``schedule.to_dict()``, or a clear error for a schedule that cannot be saved."""
    if not isinstance(schedule, (Constant, Linear, DANN, WarmStart)):
        raise TypeError(
            f"gradrev: cannot save the schedule {schedule!r}: only gradrev.schedules "
            "(constant, linear, dann, warm_start) serialize. Use one of them, or save λ and "
            "the step yourself and pass the callable again after loading."
        )
    return schedule.to_dict()


def _finite(obj: Any, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{type(obj).__name__}: {name} must be a finite number, got {value!r}")


def _positive_int(obj: Any, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{type(obj).__name__}: {name} must be a positive int, got {value!r}")


class _PythonMath:
    @staticmethod
    def progress(step: Any, total: int) -> float:
        return min(max(float(step) / total, 0.0), 1.0)

    @staticmethod
    def clamped(step: Any, total: int) -> float:
        return float(min(max(step, 0), total))

    exp = staticmethod(math.exp)

    @staticmethod
    def full(step: Any, value: float) -> float:
        return value


class _TensorMath:
    """The few ops a schedule needs, on 0-d float32 tensors of one framework."""

    def __init__(self, to_float: Any, clip: Any, exp: Any) -> None:
        self.to_float, self.clip, self.exp = to_float, clip, exp

    def progress(self, step: Any, total: int) -> Any:
        return self.clip(self.to_float(step) / float(total))

    def clamped(self, step: Any, total: int) -> Any:
        return self.clip(self.to_float(step) / float(total)) * float(total)

    def full(self, step: Any, value: float) -> Any:
        return self.to_float(step) * 0.0 + value


def _math(step: Any) -> Any:
    if isinstance(step, bool):
        raise TypeError("gradrev.schedules: step must be an int or a 0-d integer tensor, got bool")
    if isinstance(step, int):
        return _PythonMath
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(step, torch.Tensor):
        return _TensorMath(lambda s: s.to(torch.float32), lambda p: p.clamp(0.0, 1.0), torch.exp)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(step, jax.Array):
        jnp = jax.numpy
        return _TensorMath(
            lambda s: s.astype(jnp.float32), lambda p: jnp.clip(p, 0.0, 1.0), jnp.exp
        )
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(step, (tf.Tensor, tf.Variable)):
        return _TensorMath(
            lambda s: tf.cast(s, tf.float32), lambda p: tf.clip_by_value(p, 0.0, 1.0), tf.exp
        )
    raise TypeError(
        f"gradrev.schedules: step must be an int or a 0-d integer tensor, got {type(step).__name__}"
    )
