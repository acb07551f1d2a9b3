"""The λ state machine that every framework's GradientReversal layer shares. Imports no framework.

The layer contract (docs/semantics.md, "Layers"): a layer holding λ = v gives the bits of
``reverse(x, v)`` for v a Python float, in every input dtype and under every precision
set-up; the backward of a forward uses that forward's λ; ``step()`` is atomic; a layer with
a schedule takes λ only from it.

`LambdaState` holds the rules once: construction, the ``lambda_`` setter, ``step()``,
assigning a schedule, and the checks that every restore path runs (`restored_lambda`,
`restored_steps`, `decode`). Each layer implements only its storage.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from typing import Any

from gradrev import _lambda, schedules

FLOAT32_MAX = 3.4028234663852886e38
MAX_STEPS = 2**31 - 1  # int32 storage in every framework; never wraps
CONFIG_BYTES = 256  # room for any gradrev.schedules config as JSON


class LambdaState:
    """The λ / steps / schedule state machine, written once for every layer.

    A layer subclasses it (first, before its framework's module class) and implements the
    storage: ``_get_lambda``, ``_put_lambda``, ``_get_steps``, ``_put_steps``,
    ``_lambda_dtype`` and ``_put_schedule``. ``_where`` names the layer in errors.
    """

    _where = "gradrev.GradientReversal"

    # -- storage, implemented by each layer --------------------------------------------------
    def _get_lambda(self) -> float:
        raise NotImplementedError

    def _put_lambda(self, value: float) -> None:
        raise NotImplementedError

    def _get_steps(self) -> int:
        raise NotImplementedError

    def _put_steps(self, steps: int) -> None:
        raise NotImplementedError

    def _lambda_dtype(self) -> str:
        return "float64"

    def _get_schedule(self) -> Any:
        return self.__dict__.get("_schedule")

    def _put_schedule(self, schedule: Any) -> None:
        object.__setattr__(self, "_schedule", schedule)

    # -- the state machine -------------------------------------------------------------------
    def _init_state(self, lambda_: Any, schedule: Any) -> float:
        """Construction: the validated λ at step 0 (store it, then call `_start_schedule`)."""
        value = initial_lambda(lambda_, schedule, self._where)
        return fit_storage(value, self._lambda_dtype(), self._where)

    @property
    def lambda_(self) -> float:
        """The current λ, as a Python float."""
        return self._get_lambda()

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        where = f"{self._where}.lambda_"
        if self.schedule is not None:
            raise refuse_manual_lambda(where)
        self._put_lambda(fit_storage(check_lambda(value, where), self._lambda_dtype(), where))

    @property
    def schedule(self) -> Any:
        """The schedule (a `gradrev.schedules` object or a callable step -> λ), or None."""
        return self._get_schedule()

    @schedule.setter
    def schedule(self, schedule: Any) -> None:
        # Attached at any time, a schedule sets λ = schedule(current step) at once.
        check_schedule(schedule, f"{self._where}.schedule")
        value = None
        if schedule is not None:
            value = lambda_at(schedule, self._get_steps(), f"{self._where}.schedule")
            value = fit_storage(value, self._lambda_dtype(), f"{self._where}.schedule")
        self._put_schedule(schedule)
        if value is not None:
            self._put_lambda(value)

    def step(self) -> float:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Atomic: if the schedule raises, gives a non-finite λ, or the step count would pass
        2**31 - 1, nothing changes.
        """
        steps = next_step(self._get_steps(), self._where)
        schedule = self.schedule
        if schedule is None:
            value = self._get_lambda()
        else:
            value = lambda_at(schedule, steps, self._where)
            value = fit_storage(value, self._lambda_dtype(), self._where)
        self._put_lambda(value)
        self._put_steps(steps)
        return value


class RestoreJournal:
    """Makes a restore that a framework writes one state variable at a time all-or-nothing.

    A model-level load (MLX's ``load_weights``/``update``, Keras' ``Model.set_weights``) calls
    the layer once per variable, with nothing before or after. The journal keeps the layer's
    state from before the first write of such a load; when a later variable is refused, it
    puts that state back, so the refused load leaves the layer exactly as it was. A load ends
    when every state variable was written, when one is written twice, or when the layer is
    used (`commit`): one that wrote a subset and was not followed by a use is rolled back
    with the next one if that is refused.
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = frozenset(keys)
        self._before: Any = None
        self._written: set[str] = set()

    def write(self, key: str, snapshot: Any, check: Any, rollback: Any) -> Any:
        """``check()`` for the write of ``key``; on a refusal, ``rollback(snapshot())`` as it
        was taken before this load's first write, then the refusal is raised."""
        if self._before is None or key in self._written:
            self._before, self._written = snapshot(), set()
        try:
            result = check()
        except Exception:
            before = self._before
            self.commit()
            rollback(before)
            raise
        self._written.add(key)
        if self._written >= self._keys:
            self.commit()
        return result

    def commit(self) -> None:
        self._before, self._written = None, set()


def initial_lambda(lambda_: Any, schedule: Any, where: str) -> float:
    """λ at step 0: ``schedule(0)`` with a schedule, else ``lambda_`` (1.0 when not given)."""
    check_schedule(schedule, where)
    if schedule is not None and lambda_ is not None:
        raise ValueError(
            f"{where}: got both lambda_={lambda_!r} and a schedule; with a schedule, λ is "
            "schedule(step) (λ at step 0 is schedule(0)), so pass one or the other"
        )
    if schedule is not None:
        return lambda_at(schedule, 0, where)
    return check_lambda(1.0 if lambda_ is None else lambda_, where)


def check_schedule(schedule: Any, where: str) -> None:
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"{where}: schedule must be a gradrev.schedules object or a callable step -> λ, "
            f"got {_lambda.describe(schedule)}"
        )


def check_lambda(value: Any, where: str) -> float:
    """A λ given to a layer: a finite real Python number, returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}: lambda_ must be a real Python number, got {_lambda.describe(value)}"
        )
    return _lambda.finite(value, where)


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
    return _lambda.finite(value, f"{where}: schedule({step})")


def next_step(steps: int, where: str) -> int:
    if steps >= MAX_STEPS:
        raise OverflowError(
            f"{where}.step(): the step count is at its limit {MAX_STEPS} (2**31 - 1, the "
            "int32 every framework can store); nothing was changed"
        )
    return steps + 1


def fit_storage(value: float, dtype: str, where: str) -> float:
    """Refuse a λ that the layer's storage would round to ±inf (float32 storage only)."""
    if dtype == "float32" and abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"{where}: λ = {value!r} does not fit this layer's float32 storage (largest "
            f"{FLOAT32_MAX:.7g}); float32 storage is used only where the framework has no "
            "float64 (JAX without jax_enable_x64), so no input could use a larger λ anyway"
        )
    return value


def restored_lambda(value: Any, dtype: str, where: str) -> float:
    """A λ read from a checkpoint or weights (any real scalar, any dtype): checked as the
    constructor checks it, returned as a float."""
    number = _restored_number(value, "λ", where)
    return fit_storage(_lambda.finite(number, f"{where}: the restored λ"), dtype, where)


def _restored_number(value: Any, what: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{where}: the restored {what} must be one real number, got {_lambda.describe(value)}"
        ) from e


def restored_steps(value: Any, where: str) -> int:
    """A step count read from a checkpoint: a whole number in [0, 2**31 - 1], never rounded."""
    number = _restored_number(value, "step count", where)
    if not (number.is_integer() and 0 <= number <= MAX_STEPS):
        raise ValueError(
            f"{where}: the restored step count must be a whole number in [0, {MAX_STEPS}], "
            f"got {number!r}"
        )
    return int(number)


def is_rounding_of(value: float, exact: float) -> bool:
    """Whether ``value`` is λ = ``exact`` cast to float32, bfloat16 or float16.

    A wrapper that casts a layer's λ storage behind its back (FSDP1's ``buffer_dtype``,
    Keras-on-torch ``model.to(dtype)``) leaves such a value; the layer reads it as ``exact``.
    """
    if value == exact or not math.isfinite(exact):
        return False
    return value in _roundings(exact)


def exact_bytes(value: float) -> Any:
    """λ as the 8 bytes of its float64 (little-endian, ``uint8``): the exact λ, which no cast
    rounds.

    Layers whose λ weight may be float32 (JAX without x64) keep these next to it, so that
    x64 turned on later, or a file read by another backend, gets the exact λ back; the MLX
    layer stores λ as these bytes only.
    """
    import numpy as np  # here: the torch layer needs no NumPy

    return np.frombuffer(struct.pack("<d", value), np.uint8)


def from_exact_bytes(bits: Any) -> float:
    """The λ that `exact_bytes` stored."""
    import numpy as np

    return float(np.asarray(bits, np.uint8).view("<f8")[0])


def held_lambda(weight: float, exact: float) -> float:
    """The λ a layer holds, from its λ weight and the exact bytes kept next to it.

    The bytes are the truth while the weight holds them or a rounding of them (float32
    storage, a cast); a weight that is neither was written on its own (a file from before
    the bytes existed, a model-level load that changed λ only), and is the truth.
    """
    same = weight == exact and math.copysign(1.0, weight) == math.copysign(1.0, exact)
    return exact if same or is_rounding_of(weight, exact) else weight


def exact_in_jax(lam: Any, bits: Any) -> Any:
    """In a JAX graph with x64 on, a float32 λ weight's float64 λ: the bytes' value where the
    weight holds exactly its float32 rounding (same bits, signed zeros included), else the
    weight (restored on its own). `held_lambda` for JAX's float32 storage."""
    import jax
    import jax.numpy as jnp

    exact = jax.lax.bitcast_convert_type(bits, jnp.float64)
    same = jax.lax.bitcast_convert_type(exact.astype(jnp.float32), jnp.uint32) == (
        jax.lax.bitcast_convert_type(lam, jnp.uint32)
    )
    return jnp.where(same, exact, lam.astype(jnp.float64))


def held_in_float32(weight: float, exact: float) -> float:
    """`exact_in_jax` on the host: ``exact`` where the float32 ``weight`` is its rounding."""
    try:
        rounded = struct.pack("<f", exact)
    except OverflowError:
        return weight
    return exact if rounded == struct.pack("<f", weight) else weight


def restored_exact(data: Any, where: str) -> float:
    """The exact λ from restored bytes (whole numbers in [0, 255], as any real dtype holds
    them): checked as the constructor checks λ."""
    shape = getattr(data, "shape", None)
    if shape is None or tuple(shape) != (8,) or "complex" in str(getattr(data, "dtype", "")):
        values = []
    else:
        values = [_restored_number(v, "lambda_bits", where) for v in data]
    if len(values) != 8 or not all(v.is_integer() and 0 <= v <= 255 for v in values):
        raise ValueError(
            f"{where}: the restored lambda_bits must be the 8 bytes of λ's float64, got "
            f"{_lambda.describe(data)}"
        )
    value = struct.unpack("<d", bytes(int(v) for v in values))[0]
    return _lambda.finite(value, f"{where}: the restored λ")


def _roundings(exact: float) -> tuple[float, ...]:
    try:
        f32 = struct.unpack("<f", struct.pack("<f", exact))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, exact)
    try:
        f16 = struct.unpack("<e", struct.pack("<e", exact))[0]
    except OverflowError:
        f16 = math.copysign(math.inf, exact)
    bits = struct.unpack("<I", struct.pack("<f", f32))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16  # round to nearest even
    bf16 = struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]
    return f32, f16, bf16


def refuse_manual_lambda(where: str) -> ValueError:
    return ValueError(
        f"{where}: this layer's λ follows its schedule, so setting it by hand would be undone "
        "by the next step(). Set layer.schedule = None first to take λ over by hand."
    )


# -- the schedule codec: one encoding for every layer's saved state -----------------------------


def encode(schedule: Any, where: str) -> bytes:
    """The schedule as ``CONFIG_BYTES`` zero-padded JSON bytes (all zeros: no schedule).

    A callable that gradrev cannot save is recorded as unsaved: saving such a layer is
    refused (`check_saveable`), and a layer restored from one refuses to step.
    """
    if schedule is None:
        data = b""
    else:
        try:
            saved = schedules.to_dict(schedule)
        except TypeError:
            saved = {"unsaved": repr(schedule)[:200]}
        data = json.dumps(saved, sort_keys=True).encode()
    if len(data) > CONFIG_BYTES:
        raise ValueError(f"{where}: the schedule's config is over {CONFIG_BYTES} bytes: {data!r}")
    return data.ljust(CONFIG_BYTES, b"\0")


def decode(data: bytes, where: str) -> Any:
    """The schedule that `encode` wrote; a clear error for an unsaved callable or bad bytes."""
    text = bytes(data).rstrip(b"\0")
    if not text:
        return None
    try:
        saved = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than json reads
        raise ValueError(f"{where}: the restored schedule config is not gradrev's: {text!r}") from e
    if isinstance(saved, dict) and "unsaved" in saved:
        raise TypeError(
            f"{where}: this layer was restored from one whose schedule {saved['unsaved']} "
            "gradrev cannot save (only gradrev.schedules serialize); pass it again with "
            "layer.schedule = ..."
        )
    return schedules.from_dict(saved)


def check_saveable(schedule: Any) -> dict[str, Any] | None:
    """The schedule's config for a save; refuses (TypeError) one that cannot be saved."""
    return None if schedule is None else schedules.to_dict(schedule)


def schedule_from_config(config: dict[str, Any] | None) -> Any:
    return None if config is None else schedules.from_dict(config)


def _is_real_scalar_tensor(value: Any) -> bool:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None or tuple(shape) != ():
        return False
    name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]  # torch: "torch.float32"
    return str(name).startswith(("float", "bfloat"))
