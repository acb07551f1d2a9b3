"""λ schedules: small, frozen, serializable objects mapping a step to λ.

A schedule is called with a Python int (gives a float) or with a 0-d integer tensor of
any framework (gives a 0-d float32 tensor of that framework, traceable inside jit).
``to_dict``/``from_dict`` round-trip it through plain JSON-able dicts. With an int step, exp
is NumPy's float64 exp, as the reference implementations compute it: ``warm_start`` gives
tllib's coefficients bit for bit.

Example:
    ```python
    from gradrev import schedules

    s = schedules.dann(total_steps=1000)
    assert round(s(500), 4) == 0.9866
    assert schedules.from_dict(s.to_dict()) == s
    ```
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from gradrev import _lambda, _schedule_math

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
        return _schedule_math.for_step(step).full(step, self.value)

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
        m = _schedule_math.for_step(step)
        p = m.progress(step, self.total_steps)
        return self.start + (self.end - self.start) * p

    def to_dict(self) -> dict[str, Any]:
        return {"name": "linear", **asdict(self)}


_MIN_NORMALIZED_GAMMA = 1e-3


@dataclass(frozen=True)
class DANN:
    """The DANN ramp of Ganin et al. (JMLR 2016), or adapt's normalised ``UpdateLambda`` ramp.

    r(p) = 2 / (1 + exp(−gamma · p)) − 1, with p = min(step / total_steps, 1), and
    λ = lambda_init + (lambda_max − lambda_init) · r(p). With ``normalize=True``, r(p) is
    divided by r(1), so λ ends exactly at lambda_max: adapt's ``adapt.utils.UpdateLambda``
    (``max_steps`` is ``total_steps``; adapt's defaults are gamma=1, lambda_max=1).
    Any finite gamma works: where exp overflows, λ is the ramp's limit.
    """

    total_steps: int
    gamma: float = 10.0
    lambda_max: float = 1.0
    lambda_init: float = 0.0
    normalize: bool = False

    def __post_init__(self) -> None:
        _positive_int(self, "total_steps", self.total_steps)
        for name in ("gamma", "lambda_max", "lambda_init"):
            _finite(self, name, getattr(self, name))
        _bool(self, "normalize", self.normalize)
        if self.normalize and abs(self.gamma) < _MIN_NORMALIZED_GAMMA:
            # Near 0 the normalised ramp is a straight line that float32 steps cannot resolve.
            raise ValueError(
                f"DANN: normalize=True needs |gamma| ≥ {_MIN_NORMALIZED_GAMMA}, got "
                f"{self.gamma!r}: it divides by the ramp's end value 2/(1+exp(−gamma))−1, which "
                "is 0 at gamma=0 (adapt's default is 1.0; for a straight ramp use schedules.linear)"
            )

    def __call__(self, step: Any) -> Any:
        m = _schedule_math.for_step(step)
        p = m.progress(step, self.total_steps)
        r = 2.0 / (1.0 + m.exp(m.scale(p, -self.gamma))) - 1.0
        if self.normalize:
            r = r / _schedule_math.ramp(self.gamma)
        return r * (self.lambda_max - self.lambda_init) + self.lambda_init

    def to_dict(self) -> dict[str, Any]:
        return {"name": "dann", **asdict(self)}


@dataclass(frozen=True)
class WarmStart:
    """Transfer-Learning-Library's ``WarmStartGradientReverseLayer`` coefficient (tllib.modules.grl).

    λ = 2 (hi − lo) / (1 + exp(−alpha · i / max_iters)) − (hi − lo) + lo: from lo towards hi.
    By default i = min(step, max_iters), so λ stops rising at max_iters. With ``clamp=False``,
    i = step, as tllib computes it: λ keeps rising towards hi (0.7616 at step 2000 of 1000).
    """

    lo: float = 0.0
    hi: float = 1.0
    alpha: float = 1.0
    max_iters: float = 1000
    clamp: bool = True

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "alpha"):
            _finite(self, name, getattr(self, name))
        if self.alpha < 0:
            # λ would move away from hi, past lo; the mirrored ramp is alpha > 0, hi = 2·lo − hi.
            raise ValueError(
                f"WarmStart: alpha must be a finite number ≥ 0, got {self.alpha!r}: a negative "
                "alpha moves λ away from hi; for a ramp that falls from lo, pass hi below lo"
            )
        _positive(self, "max_iters", self.max_iters)
        _bool(self, "clamp", self.clamp)

    def __call__(self, step: Any) -> Any:
        m = _schedule_math.for_step(step)
        i = m.clamped(step, self.max_iters) if self.clamp else m.nonnegative(step)
        span = self.hi - self.lo
        exponent = m.scale(i, -self.alpha) / self.max_iters
        return 2.0 * span / (1.0 + m.exp(exponent)) - span + self.lo

    def to_dict(self) -> dict[str, Any]:
        return {"name": "warm_start", **asdict(self)}


def constant(value: float) -> Constant:
    """λ = value."""
    return Constant(float(value))


def linear(start: float, end: float, total_steps: int) -> Linear:
    """λ from ``start`` to ``end`` over ``total_steps`` steps."""
    return Linear(float(start), float(end), total_steps)


def dann(
    total_steps: int,
    gamma: float = 10.0,
    lambda_max: float = 1.0,
    *,
    lambda_init: float = 0.0,
    normalize: bool = False,
) -> DANN:
    """The DANN ramp 2/(1+exp(−γp))−1 from ``lambda_init`` to ``lambda_max`` (Ganin et al., 2016).

    ``normalize=True`` divides by the ramp's end value, so λ reaches ``lambda_max`` exactly at
    ``total_steps``: adapt's ``UpdateLambda``, e.g. ``dann(1000, gamma=1.0, normalize=True)``.
    """
    return DANN(total_steps, float(gamma), float(lambda_max), float(lambda_init), normalize)


def warm_start(
    lo: float = 0.0,
    hi: float = 1.0,
    alpha: float = 1.0,
    max_iters: float = 1000,
    *,
    clamp: bool = True,
) -> WarmStart:
    """Transfer-Learning-Library's warm-start ramp from ``lo`` towards ``hi`` (tllib's defaults).

    ``clamp=False`` gives tllib's own sequence, which keeps rising past ``max_iters``.
    """
    iters = max_iters if isinstance(max_iters, int) else float(max_iters)
    return WarmStart(float(lo), float(hi), float(alpha), iters, clamp)


_BY_NAME: dict[str, Any] = {
    "constant": Constant,
    "linear": Linear,
    "dann": DANN,
    "warm_start": WarmStart,
}


def from_dict(config: dict[str, Any]) -> Constant | Linear | DANN | WarmStart:
    """Rebuild a schedule from ``schedule.to_dict()``.

    A config from elsewhere (a checkpoint, a file) is only read, never executed: anything
    but a dict of a known name and its fields, each of the right type and range, is
    gradrev's ``ValueError``.
    """
    where = "gradrev.schedules.from_dict"
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"{where}: expected a dict with 'name' in {sorted(_BY_NAME)}, "
            f"got {_lambda.describe(config)}"
        )
    cls = _BY_NAME[name]
    accepted = [f.name for f in dataclasses.fields(cls)]
    fields = {k: v for k, v in config.items() if k != "name"}
    unknown = sorted(repr(k) for k in fields if k not in accepted)
    if unknown:
        raise ValueError(
            f"{where}: unknown fields [{', '.join(unknown)}] for {name!r}; accepted: {accepted}"
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in fields]
    if missing:
        raise ValueError(f"{where}: {name!r} needs the fields {missing}; got {sorted(fields)}")
    return cls(**fields)  # type: ignore[no-any-return]


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
    """A Python number (not a bool), finite: the one finiteness check (`_lambda.finite`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{type(obj).__name__}: {name} must be a finite number, got {_lambda._short_repr(value)}"
        )
    _lambda.finite(value, type(obj).__name__, name, name)


def _positive(obj: Any, name: str, value: Any) -> None:
    _finite(obj, name, value)
    if value <= 0:
        raise ValueError(
            f"{type(obj).__name__}: {name} must be a finite number > 0, got {_lambda._short_repr(value)}"
        )


_MAX_INT = 2**53  # every step count up to here is exact as a float64


def _positive_int(obj: Any, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_INT:
        raise ValueError(
            f"{type(obj).__name__}: {name} must be a positive int, got "
            f"{_lambda._short_repr(value)}; accepted: 1 to 2**53"
        )


def _bool(obj: Any, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(
            f"{type(obj).__name__}: {name} must be True or False, got {_lambda._short_repr(value)}"
        )
