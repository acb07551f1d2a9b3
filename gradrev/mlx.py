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

from collections.abc import Callable
from typing import Any

try:
    import mlx.core as mx
    import mlx.nn as nn
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "mlx", e) from e

from gradrev import _lambda, _layer
from gradrev.backends import mlx as backend

__all__ = ["GradientReversal"]

_WHERE = "gradrev.mlx.GradientReversal"
# The layer's state arrays (see __setitem__).
_STATE = ("lam", "steps", "schedule_config")
_LAM_BYTES = 8
# Each float dtype holds every whole number below this one exactly (and may round it).
_EXACT_INTEGERS = {mx.float16: 2048, mx.bfloat16: 256, mx.float32: 2**24}


class GradientReversal(_layer.LambdaState, nn.Module):  # type: ignore[name-defined,misc]
    """Identity forward, gradient times −λ backward, with λ held in the module's state.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype, whatever the model is cast to. λ (`lam`), the step count (`steps`) and the
    schedule's config (`schedule_config`) are frozen arrays of the module, so they are saved
    by `save_weights` (safetensors or npz), restored by `load_weights` (checked as the
    constructor checks them, a cast file included), left alone by optimizers, and passed to
    `mx.compile(..., inputs=model.state)` as inputs: changing λ never recompiles. `lam`
    holds the 8 bytes of λ's float64, which every float dtype holds exactly (so no cast of
    the model or of a file rounds λ) and which safetensors (no float64) can store. A
    backward always uses the λ its forward saw.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on. `save_weights` refuses a callable
            that gradrev cannot save.
    """

    _where = _WHERE

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        nn.Module.__init__(self)  # type: ignore[attr-defined]
        value = self._init_state(lambda_, schedule)
        object.__setattr__(self, "_journal", _layer.RestoreJournal(_STATE))
        self.lam = _bits(value)
        self.steps = mx.array(0, mx.int32)
        object.__setattr__(self, "_schedule", None)
        object.__setattr__(self, "_encoded", _layer.encode(None, _WHERE))
        self.schedule = schedule
        self.freeze()  # λ, steps and the config are state, never trained

    def __call__(self, x: mx.array) -> mx.array:
        self._journal.commit()
        return backend.reverse(x, _value(self.lam))

    def __setattr__(self, key: str, value: Any) -> None:
        # mlx.nn.Module stores any array in its dict, which would bypass these properties.
        if key in ("lambda_", "schedule"):
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    # private API [mlx-module-setitem]: docs/private-apis.md
    def __setitem__(self, key: str, value: Any) -> None:
        # Every write of the model's arrays reaches this layer's here: set_dtype, apply,
        # update and load_weights. λ is kept as its 8 bytes, which every float dtype holds
        # exactly, so a cast (of the model, or of a file) never changes it; each write is
        # checked as the constructor checks λ, and a step count that a cast rounded is refused.
        # A model's load_weights or update writes them one by one: the journal puts back the
        # ones already written when a later one is refused.
        if key in _STATE and isinstance(value, mx.array):
            value = self._journal.write(
                key, self._snapshot, lambda: _restored(key, value), self._put_back
            )
        super().__setitem__(key, value)

    def _snapshot(self) -> dict[str, Any]:
        return {k: dict.get(self, k) for k in _STATE}

    def _put_back(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            if v is not None:
                dict.__setitem__(self, k, v)

    # -- storage for the shared state machine -----------------------------------------------
    def _get_lambda(self) -> float:
        self._journal.commit()
        return float(_value(self.lam))

    def _put_lambda(self, value: float) -> None:
        self.lam = _bits(value)

    def _get_steps(self) -> int:
        self._journal.commit()
        try:
            return int(self.steps)
        except (ValueError, RuntimeError) as e:  # mx.compile: the step count has no value
            raise RuntimeError(
                f"{_WHERE}.step() runs eagerly, between compiled calls: λ and the step count "
                "are inputs of mx.compile(..., inputs=model.state), so the next call sees them"
            ) from e

    def _put_steps(self, steps: int) -> None:
        self.steps = mx.array(steps, mx.int32)

    def _get_schedule(self) -> Any:
        data = bytes(self["schedule_config"].tolist())
        if data == self._encoded:
            return self._schedule
        return _layer.decode(data, _WHERE)  # restored from another layer's weights

    def _put_schedule(self, schedule: Any) -> None:
        encoded = _layer.encode(schedule, _WHERE)
        object.__setattr__(self, "_schedule", schedule)
        object.__setattr__(self, "_encoded", encoded)
        self.schedule_config = mx.array(list(encoded), mx.uint8)

    def load_weights(self, file_or_weights: Any, strict: bool = True) -> Any:
        """`mlx.nn.Module.load_weights`, with λ, the step count and the schedule's config
        checked first: a refused file gets gradrev's error and changes nothing."""
        weights = file_or_weights
        if isinstance(weights, str):
            weights = list(mx.load(weights).items())  # type: ignore[union-attr]
        weights = [
            (k, _restored(k, v) if k in _STATE and isinstance(v, mx.array) else v)
            for k, v in weights
        ]
        return super().load_weights(weights, strict)

    def save_weights(self, file: str) -> None:
        """`mlx.nn.Module.save_weights`, refusing a schedule that gradrev cannot save."""
        _layer.check_saveable(self.schedule)
        super().save_weights(file)

    def __repr__(self) -> str:  # public, where mlx.nn.Module's _extra_repr hook is not
        try:
            schedule = repr(self.schedule)
        except TypeError:  # restored from a layer whose callable schedule was not saved
            schedule = "<not saved>"
        extra = f"lambda_={self.lambda_:.6g}, steps={int(self.steps)}, schedule={schedule}"
        return f"{type(self).__name__}({extra})"  # a leaf: no child modules to list


def _restored(key: str, value: mx.array) -> mx.array:
    """An array written into the layer, checked: λ's bytes must be a finite λ, the step count
    a whole number in range that no cast has rounded, the schedule's config bytes."""
    if mx.issubdtype(value.dtype, mx.complexfloating):  # a cast to a real dtype drops .imag
        raise ValueError(
            f"{_WHERE}: the restored {key} must be real, got {_lambda.describe(value)}"
        )
    if key == "lam":
        if value.dtype == mx.uint32 and value.shape == (2,):  # gradrev 0.3's layout
            value = value.view(mx.uint8, stream=mx.cpu)
        if value.shape != (_LAM_BYTES,) or not _holds_bytes(value):
            raise ValueError(
                f"{_WHERE}: lam holds the {_LAM_BYTES} bytes of λ's float64, got "
                f"{_lambda.describe(value)}; set λ with layer.lambda_ = value"
            )
        value = value.astype(mx.uint8)
        _layer.restored_lambda(_value(value).item(), "float64", _WHERE)
        return value
    if key == "steps":
        if value.size != 1:
            raise ValueError(
                f"{_WHERE}: the restored steps must hold one number, got {_lambda.describe(value)}"
            )
        number = value.astype(mx.float64, stream=mx.cpu).reshape(-1).item()
        exact = _EXACT_INTEGERS.get(value.dtype)
        if exact is not None and not abs(number) < exact:
            raise ValueError(
                f"{_WHERE}: the restored step count {number!r} was cast to {value.dtype}, which "
                f"holds whole numbers exactly only below {exact}; load it as an integer"
            )
        return mx.array(_layer.restored_steps(number, _WHERE), mx.int32)
    if value.shape != (_layer.CONFIG_BYTES,) or not _holds_bytes(value):
        raise ValueError(
            f"{_WHERE}: the restored schedule_config must be the {_layer.CONFIG_BYTES} bytes "
            f"that save_weights saves, got {_lambda.describe(value)}"
        )
    return value.astype(mx.uint8)


def _holds_bytes(value: mx.array) -> bool:
    wide = value.astype(mx.float64, stream=mx.cpu)
    whole = mx.all(wide == mx.floor(wide, stream=mx.cpu), stream=mx.cpu)
    inside = mx.all((wide >= 0) & (wide <= 255), stream=mx.cpu)
    return bool(whole.item()) and bool(inside.item())


def _bits(value: float) -> mx.array:
    """λ as the 8 bytes of its float64 (little-endian), which every float dtype holds exactly."""
    return mx.array(_layer.exact_bytes(value))


def _value(bits: mx.array) -> mx.array:
    # float64 exists on MLX's CPU stream only; gradrev.reverse rounds λ there as well.
    return bits.view(mx.float64, stream=mx.cpu).reshape((), stream=mx.cpu)
