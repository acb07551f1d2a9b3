"""Flax NNX layer: ``gradrev.flax.nnx.GradientReversal``.

```python
from gradrev.flax.nnx import GradientReversal

grl = GradientReversal(0.5)
assert grl.lambda_ == 0.5
```
"""

from __future__ import annotations

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

from gradrev import _lambda, _layer
from gradrev.backends import jax as backend

__all__ = ["GradientReversal", "ReversalState"]

_WHERE = "gradrev.flax.nnx.GradientReversal"


# Flax 0.12 reads and writes a Variable's value through get_raw_value/set_raw_value (and
# routes writes of `.value` through the latter); older Flax (0.10, the floor) keeps it in the `raw_value`
# slot. These two functions are the only place that knows which.
_NEW_VARIABLE_API = hasattr(nnx.Variable, "get_raw_value")


def _raw(variable: nnx.Variable[Any]) -> Any:
    # private API [flax-raw-value-slot]: docs/private-apis.md
    return variable.get_raw_value() if _NEW_VARIABLE_API else variable.raw_value


def _put_raw(variable: nnx.Variable[Any], value: Any) -> None:
    if _NEW_VARIABLE_API:
        # private API [flax-unsafe-bypass-check]: docs/private-apis.md
        nnx.Variable.set_raw_value(variable, value, _unsafe_bypass_check=True)
    else:
        # private API [flax-raw-value-slot]: docs/private-apis.md
        object.__setattr__(variable, "raw_value", value)


class ReversalState(nnx.Variable[jax.Array]):
    """λ, the step count and the schedule: state that optimizers (which take `nnx.Param`) leave alone.

    A restore (`nnx.update`, `nnx.merge`, orbax) writes it through the layer's checks: λ must
    be finite and keeps the layer's dtype, the step count must be a whole number in
    [0, 2**31 - 1].
    """

    # private API [flax-variable-restore-hooks]: docs/private-apis.md
    def update_from_state(self, variable_state: Any) -> None:
        current = _raw(self)
        super().update_from_state(variable_state)
        self._check(current)

    # private API [flax-variable-restore-hooks]: docs/private-apis.md
    def set_raw_value(self, value: Any, **kwargs: Any) -> None:  # only newer Flax has it
        current = _raw(self)
        super().set_raw_value(value, **kwargs)
        self._check(current)

    def _check(self, current: Any) -> None:
        new = _raw(self)
        # private API [jax-core-tracer]: docs/private-apis.md
        if isinstance(new, jax.core.Tracer) or not hasattr(current, "dtype"):
            return  # inside a transform, or being built: nothing concrete to check
        dtype = np.dtype(current.dtype)
        bits = dtype.kind == "u" and np.shape(current)[-1:] == (8,)  # λ's exact bytes
        try:
            array = np.asarray(new)  # a stack of layers (nnx.vmap) is checked element-wise
            if array.shape != np.shape(current) or array.dtype.kind == "c":
                what = {"f": "λ", "i": "step count"}.get(dtype.kind, "schedule_config")
                what = "lambda_bits" if bits else what
                raise ValueError(
                    f"{_WHERE}: the restored {what} must have shape "
                    f"{np.shape(current)} and real values, got {_lambda.describe(array)}"
                )
            if dtype.kind == "f":
                values = [_layer.restored_lambda(v, dtype.name, _WHERE) for v in array.flat]
                checked = jnp.asarray(np.asarray(values, dtype).reshape(array.shape))
            elif dtype.kind == "i":
                values = [_layer.restored_steps(v, _WHERE) for v in array.flat]
                checked = jnp.asarray(np.asarray(values, dtype).reshape(array.shape))
            elif bits:
                for row in array.reshape(-1, 8):
                    _layer.restored_exact(row, _WHERE)
                checked = jnp.asarray(array.astype(dtype))
            else:  # the schedule's config bytes: a float cast keeps them exact
                wide = array.astype(np.float64)
                if not (np.all(wide == np.floor(wide)) and np.all((wide >= 0) & (wide <= 255))):
                    raise ValueError(
                        f"{_WHERE}: the restored schedule_config must hold bytes (whole numbers "
                        f"in [0, 255]), got {_lambda.describe(array)}"
                    )
                checked = jnp.asarray(array.astype(dtype))
        except (TypeError, ValueError):
            _put_raw(self, current)  # refused: unchanged
            raise
        _put_raw(self, checked)


class GradientReversal(_layer.LambdaState, nnx.Module):
    """Identity forward, gradient times −λ backward, with λ held in NNX state.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype: λ is float64 (float32 without `jax_enable_x64`, when no input can be float64).
    `lam` (with `lam_bits`, its exact float64 bytes, so that x64 turned on later gives the
    float64 λ), `steps` and the schedule's config are `ReversalState` variables, so they
    travel through `nnx.split`/`nnx.merge`, `nnx.state`/`nnx.update` and checkpoints; a restore
    brings back λ, the step count and the schedule, and the layer continues the saved run.
    Changing λ or calling `step()`, eagerly or inside `nnx.jit`, never retraces.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on. A callable that gradrev cannot
            save is recorded as unsaved: a layer restored from it refuses to step until the
            callable is passed again.
    """

    _where = _WHERE

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        value = self._init_state(lambda_, schedule)
        self.lam = ReversalState(jnp.asarray(value, self._lambda_dtype()))
        # λ's exact float64 bytes: with float32 `lam` (built without x64), x64 turned on later
        # still gives the float64 λ (`_lambda`).
        self.lam_bits = ReversalState(jnp.asarray(_layer.exact_bytes(value)))
        self.steps = ReversalState(jnp.asarray(0, jnp.int32))
        self.schedule_config = ReversalState(jnp.asarray(_bytes(None)))
        self._schedule = None
        self._encoded = _layer.encode(None, _WHERE)
        # NNX records every attribute name assigned on a module in its graphdef. Assigning the
        # two properties once here means that a later `layer.lambda_ = v` changes no graphdef
        # and retraces nothing.
        self.lambda_ = value
        self.schedule = schedule

    def __call__(self, x: jax.Array) -> jax.Array:
        return backend.reverse(x, self._lambda())

    def _lambda(self) -> jax.Array:
        """λ for the forward: `lam`, or its exact float64 once x64 is on for a float32 `lam`."""
        lam = self.lam[...]
        if lam.dtype != np.float32 or not backend.x64_enabled():
            return lam
        exact: jax.Array = _layer.exact_in_jax(lam, self.lam_bits[...])
        return exact

    # -- storage for the shared state machine -----------------------------------------------
    def _lambda_dtype(self) -> str:
        lam = vars(self).get("lam")
        if lam is None:
            return str(jax.dtypes.canonicalize_dtype(jnp.float64))
        return str(lam[...].dtype)

    def _get_lambda(self) -> float:
        lam = self.lam[...]
        if lam.dtype != np.float32:
            return float(lam)
        exact = _layer.from_exact_bytes(self.lam_bits[...])
        return _layer.held_in_float32(float(lam), exact)  # as `_lambda` reads it

    def _put_lambda(self, value: float) -> None:
        self.lam[...] = jnp.asarray(value, self.lam[...].dtype)
        self.lam_bits[...] = jnp.asarray(_layer.exact_bytes(value))

    def _get_steps(self) -> int:
        return int(self.steps[...])

    def _put_steps(self, steps: int) -> None:
        self.steps[...] = jnp.asarray(steps, jnp.int32)

    def _get_schedule(self) -> Any:
        config = self.schedule_config[...]
        # private API [jax-core-tracer]: docs/private-apis.md
        if isinstance(config, jax.core.Tracer):
            return self._schedule
        data = np.asarray(config, np.uint8).tobytes()
        if data == self._encoded:
            return self._schedule
        return _layer.decode(data, _WHERE)  # restored from another layer's state

    def _put_schedule(self, schedule: Any) -> None:
        encoded = _layer.encode(schedule, _WHERE)
        self.schedule_config[...] = jnp.asarray(np.frombuffer(encoded, np.uint8))
        self._schedule, self._encoded = schedule, encoded

    def step(self) -> Any:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Works eagerly (returns a float) and inside `nnx.jit` and `nnx.vmap` (returns an
        array, computed on the host with the same Python float arithmetic). Atomic: if the
        schedule raises, gives a non-finite λ or the step count would pass 2**31 - 1,
        nothing changes.
        """
        # private API [jax-core-tracer]: docs/private-apis.md
        if not isinstance(self.steps[...], jax.core.Tracer):
            return super().step()
        # Inside a transform the step is abstract; the schedule is plain Python, so it runs
        # as a host callback, and λ has the same bits as an eager step() would give.
        lam, steps, config = self.lam[...], self.steps[...], self.schedule_config[...]
        bits = self.lam_bits[...]
        spec = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (lam, bits))  # type: ignore[no-untyped-call]
        value, exact = jax.pure_callback(
            self._next_lambda, spec, steps, config, lam, bits, vmap_method="sequential"
        )
        self.lam[...], self.lam_bits[...] = value, exact
        self.steps[...] = steps + 1
        return value

    def _next_lambda(
        self, steps: Any, config: Any, lam: Any, bits: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        steps = _layer.next_step(int(steps), _WHERE)
        data = np.asarray(config, np.uint8).tobytes()
        schedule = self._schedule if data == self._encoded else _layer.decode(data, _WHERE)
        if schedule is None:
            return np.asarray(lam), np.asarray(bits)
        value = _layer.lambda_at(schedule, steps, _WHERE)
        dtype = np.dtype(lam.dtype)
        value = _layer.fit_storage(value, dtype.name, _WHERE)
        return np.asarray(value, dtype), _layer.exact_bytes(value)


def _bytes(schedule: Any) -> np.ndarray:
    return np.frombuffer(_layer.encode(schedule, _WHERE), np.uint8)
