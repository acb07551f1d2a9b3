"""MLX layer: ``gradrev.mlx.GradientReversal``, an ``mlx.nn.Module``.

```python
from gradrev import schedules
from gradrev.mlx import GradientReversal

grl = GradientReversal(schedule=schedules.dann(total_steps=100))
grl.step()
assert round(grl.lambda_, 4) == 0.0500
```
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

try:
    import mlx.core as mx
    import mlx.nn as nn
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "mlx", e) from e

from gradrev import _lambda, _layer, schedules
from gradrev.backends import mlx as backend

__all__ = ["GradientReversal"]

_WHERE = "gradrev.mlx.GradientReversal"
_CONFIG_BYTES = 256  # room for any gradrev.schedules config as JSON
# The layer's state, each with the one dtype it is kept in (see __setitem__).
_STATE = {"lam": mx.uint32, "steps": mx.int32, "schedule_config": mx.uint8}


class GradientReversal(nn.Module):  # type: ignore[name-defined,misc]  # mlx.nn has no stubs
    """Identity forward, gradient times −λ backward, with λ held in the module's state.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype, whatever the model is cast to. λ (`lam`), the step count (`steps`) and the
    schedule's config (`schedule_config`) are frozen arrays of the module, so they are saved
    by `save_weights` (safetensors or npz), restored by `load_weights`, left alone by
    optimizers, and passed to `mx.compile(..., inputs=model.state)` as inputs: changing λ
    never recompiles. `lam` holds the two 32-bit halves of λ's float64 bits, which no
    `set_dtype` rounds and which safetensors (no float64) can store. A backward always uses
    the λ its forward saw.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on. Only `gradrev.schedules` objects
            are saved with the weights.
    """

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        super().__init__()
        value = _layer.initial_lambda(lambda_, schedule, _WHERE)
        self.lam = _bits(value)
        self.steps = mx.array(0, mx.int32)
        self._schedule: Any = None
        self.schedule = schedule
        self.freeze()  # λ, steps and the config are state, never trained

    def __call__(self, x: mx.array) -> mx.array:
        return backend.reverse(x, _value(self.lam))

    def __setattr__(self, key: str, value: Any) -> None:
        # mlx.nn.Module stores any array in its dict, which would bypass these properties.
        if key in ("lambda_", "schedule"):
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    def __setitem__(self, key: str, value: Any) -> None:
        # Every cast of the model reaches this layer's arrays here: set_dtype, apply and
        # update write them one by one. A cast of the current value is refused (kept as it
        # was), so no precision set-up rounds λ or the step count.
        dtype = _STATE.get(key)
        if dtype is not None and isinstance(value, mx.array) and value.dtype != dtype:
            current = self.get(key)
            if current is not None and _is_cast_of(value, current):
                value = current
            elif key == "lam":
                raise ValueError(
                    f"{_WHERE}: lam holds the bits of λ as {_STATE[key]} of shape (2,), got "
                    f"{_lambda.describe(value)}; set λ with layer.lambda_ = value"
                )
            else:
                value = value.astype(dtype)
        super().__setitem__(key, value)

    @property
    def lambda_(self) -> float:
        """The current λ, as a Python float."""
        return float(_value(self.lam))

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        if self.schedule is not None:
            raise _layer.refuse_manual_lambda(f"{_WHERE}.lambda_")
        self.lam = _bits(_layer.check_lambda(value, f"{_WHERE}.lambda_"))

    @property
    def schedule(self) -> Any:
        """The schedule: the one given, or the one saved with the weights this layer loaded."""
        if self._schedule is not None:
            return self._schedule
        return _decode(self["schedule_config"])

    @schedule.setter
    def schedule(self, schedule: Any) -> None:
        config = _encode(schedule)
        object.__setattr__(self, "_schedule", schedule)
        self.schedule_config = config

    def step(self) -> float:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Runs eagerly, between compiled steps: λ is an input of `mx.compile(...,
        inputs=model.state)`, so the next call sees it without recompiling. Atomic: if the
        schedule raises or gives a non-finite λ, nothing changes.
        """
        steps = int(self.steps) + 1
        schedule = self.schedule
        value = self.lambda_ if schedule is None else _layer.lambda_at(schedule, steps, _WHERE)
        self.lam = _bits(value)
        self.steps = mx.array(steps, mx.int32)
        return value

    def _extra_repr(self) -> str:
        try:
            schedule = repr(self.schedule)
        except TypeError:  # restored from a layer whose callable schedule was not saved
            schedule = "<not saved>"
        return f"lambda_={self.lambda_:.6g}, steps={int(self.steps)}, schedule={schedule}"


def _is_cast_of(value: mx.array, current: mx.array) -> bool:
    if value.shape != current.shape:
        return False
    return bool(mx.array_equal(current.astype(value.dtype), value))


def _bits(value: float) -> mx.array:
    """λ as the two 32-bit halves of its float64 bits (little-endian)."""
    return mx.array(list(struct.unpack("<2I", struct.pack("<d", value))), mx.uint32)


def _value(bits: mx.array) -> mx.array:
    # float64 exists on MLX's CPU stream only; gradrev.reverse rounds λ there as well.
    return bits.view(mx.float64, stream=mx.cpu).reshape((), stream=mx.cpu)


def _encode(schedule: Any) -> mx.array:
    """A gradrev schedule's config as zero-padded JSON bytes (all zeros: none).

    A callable that gradrev cannot save is recorded as such, so that a layer restored from
    it refuses to step instead of silently freezing λ.
    """
    try:
        saved = None if schedule is None else schedules.to_dict(schedule)
    except TypeError:  # a callable that gradrev cannot save
        saved = {"unsaved": repr(schedule)[:200]}
    data = b"" if saved is None else json.dumps(saved, sort_keys=True).encode()
    if len(data) > _CONFIG_BYTES:
        raise ValueError(f"{_WHERE}: the schedule's config is over {_CONFIG_BYTES} bytes: {data!r}")
    return mx.array(list(data.ljust(_CONFIG_BYTES, b"\0")), mx.uint8)


def _decode(config: mx.array) -> Any:
    data = bytes(config.tolist()).rstrip(b"\0")  # type: ignore[arg-type]
    if not data:
        return None
    saved = json.loads(data)
    if "unsaved" in saved:
        raise TypeError(
            f"{_WHERE}: this layer was restored from one whose schedule {saved['unsaved']} "
            "gradrev cannot save (only gradrev.schedules serialize); pass it again with "
            "layer.schedule = ..."
        )
    return schedules.from_dict(saved)
