"""Flax NNX layer: ``gradrev.flax.nnx.GradientReversal``.

```python
from gradrev.flax.nnx import GradientReversal

grl = GradientReversal(0.5)
assert grl.lambda_ == 0.5
```
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "jax", e) from e

from gradrev import _layer, schedules
from gradrev.backends import jax as backend

__all__ = ["GradientReversal", "ReversalState"]

_WHERE = "gradrev.flax.nnx.GradientReversal"
_CONFIG_BYTES = 256  # room for any gradrev.schedules config as JSON


class ReversalState(nnx.Variable[jax.Array]):
    """λ, the step count and the schedule: state that optimizers (which take `nnx.Param`) leave alone."""


class GradientReversal(nnx.Module):
    """Identity forward, gradient times −λ backward, with λ held in NNX state.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype: λ is float64 (float32 without `jax_enable_x64`, when no input can be float64).
    `lam`, `steps` and the schedule's config are `ReversalState` variables, so they travel
    through `nnx.split`/`nnx.merge`, `nnx.state`/`nnx.update` and checkpoints; a layer
    restored from a scheduled one continues its schedule. Changing λ or calling `step()`,
    eagerly or inside `nnx.jit`, never retraces.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on. Only `gradrev.schedules` objects
            are saved in the state; another callable stays a Python attribute.
    """

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        value = _layer.initial_lambda(lambda_, schedule, _WHERE)
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        value = _layer.fit_storage(value, str(dtype), _WHERE)
        self.lam = ReversalState(jnp.asarray(value, dtype))
        self.steps = ReversalState(jnp.asarray(0, jnp.int32))
        self.schedule_config = ReversalState(jnp.asarray(_encode(None)))
        self._schedule = None
        # NNX records every attribute name assigned on a module in its graphdef. Assigning the
        # two properties once here means that a later `layer.lambda_ = v` changes no graphdef
        # and retraces nothing.
        self.lambda_ = value
        self.schedule = schedule

    def __call__(self, x: jax.Array) -> jax.Array:
        return backend.reverse(x, self.lam[...])

    @property
    def schedule(self) -> Any:
        """The schedule: the one given, or the one saved in the restored state."""
        if self._schedule is not None or isinstance(self.schedule_config[...], jax.core.Tracer):
            return self._schedule
        return _decode(self.schedule_config[...])

    @schedule.setter
    def schedule(self, schedule: Any) -> None:
        self._schedule = schedule
        self.schedule_config[...] = jnp.asarray(_encode(schedule))

    @property
    def lambda_(self) -> float:
        """The current λ, as a Python float (outside `jax.jit`)."""
        return float(self.lam[...])

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        where = f"{_WHERE}.lambda_"
        if self.schedule is not None:
            raise _layer.refuse_manual_lambda(where)
        dtype = self.lam[...].dtype
        value = _layer.fit_storage(_layer.check_lambda(value, where), str(dtype), where)
        self.lam[...] = jnp.asarray(value, dtype)

    def step(self) -> Any:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Works eagerly (returns a float) and inside `nnx.jit` (returns a 0-d array, computed
        on the host with the same Python float arithmetic). Atomic: if the schedule raises or
        gives a non-finite λ, nothing changes.
        """
        lam, steps, config = self.lam[...], self.steps[...] + 1, self.schedule_config[...]
        if isinstance(steps, jax.core.Tracer):
            # Inside jit the step is abstract; the schedule is plain Python, so it runs as a
            # host callback, and λ has the same bits as an eager step() would give.
            spec = jax.ShapeDtypeStruct((), lam.dtype)  # type: ignore[no-untyped-call]
            value = jax.pure_callback(self._next_lambda, spec, steps, config, lam)
        else:
            value = self._next_lambda(steps, config, lam)
        self.lam[...] = jnp.asarray(value, lam.dtype)
        self.steps[...] = steps
        return float(value) if isinstance(value, np.ndarray) else value

    def _next_lambda(self, steps: Any, config: Any, lam: Any) -> np.ndarray:
        schedule = self._schedule if self._schedule is not None else _decode(config)
        if schedule is None:
            return np.asarray(lam)
        value = _layer.lambda_at(schedule, int(steps), _WHERE)
        dtype = np.dtype(lam.dtype)
        return np.asarray(_layer.fit_storage(value, dtype.name, _WHERE), dtype)


def _encode(schedule: Any) -> np.ndarray:
    """A gradrev schedule's config as zero-padded JSON bytes (all zeros: none, or a callable)."""
    try:
        data = json.dumps(schedules.to_dict(schedule), sort_keys=True).encode()
    except TypeError:  # None, or a callable that does not serialize
        return np.zeros(_CONFIG_BYTES, np.uint8)
    if len(data) > _CONFIG_BYTES:
        raise ValueError(f"{_WHERE}: the schedule's config is over {_CONFIG_BYTES} bytes: {data!r}")
    return np.frombuffer(data.ljust(_CONFIG_BYTES, b"\0"), np.uint8)


def _decode(config: Any) -> Any:
    data = np.asarray(config, np.uint8).tobytes().rstrip(b"\0")
    return schedules.from_dict(json.loads(data)) if data else None
