"""Keras 3 layer and callback: ``gradrev.keras.GradientReversal`` and ``LambdaScheduler``.

Works on the TensorFlow, JAX and PyTorch Keras backends; the layer calls that backend's
gradrev function directly.

```python
from gradrev.keras import GradientReversal

grl = GradientReversal(0.5)
assert grl.lambda_ == 0.5
```
"""

from __future__ import annotations

import warnings
from typing import Any

try:
    import keras
    import numpy as np
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "tensorflow", e) from e

from gradrev import _layer

__all__ = ["GradientReversal", "LambdaScheduler"]


def _backend_reverse() -> Any:
    name = keras.backend.backend()
    if name == "tensorflow":
        from gradrev.backends.tensorflow import reverse
    elif name == "jax":
        from gradrev.backends.jax import reverse
    elif name == "torch":
        from gradrev.backends.torch import reverse
    else:
        raise RuntimeError(
            f"gradrev.keras: Keras backend {name!r} is not supported; "
            "use tensorflow, jax or torch (KERAS_BACKEND)"
        )
    return reverse


_WHERE = "gradrev.keras.GradientReversal"


def _storage_dtype() -> str:
    """float64, except on JAX without jax_enable_x64, which has no float64 (nor float64 inputs)."""
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.dtypes.canonicalize_dtype("float64"))
    return "float64"


@keras.saving.register_keras_serializable(package="gradrev")
class GradientReversal(_layer.LambdaState, keras.layers.Layer):  # type: ignore[misc]
    """Identity forward, gradient times −λ backward, with λ a non-trainable weight.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype and under every dtype policy: λ is a float64 weight (float32 on JAX without
    `jax_enable_x64`, next to λ's exact float64 bytes) that is never autocast, and inputs
    keep their dtype. λ (`lambda`, `lambda_bits`) and the step count (`steps`) are saved in
    `.keras` files, the schedule in the config; every load (`.keras`, `load_weights`, the
    layer's or the model's `set_weights`) is checked as the constructor checks λ. Changing λ
    never retraces `fit`, and a backward always uses the λ its forward saw. A layer with a
    schedule trained by `fit` without `LambdaScheduler` warns.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` (or `LambdaScheduler`) moves it on.
        **kwargs: passed to `keras.layers.Layer` (`name`, ...); `autocast` must be False.
    """

    _where = _WHERE

    def __init__(
        self, lambda_: float | None = None, *, schedule: Any = None, **kwargs: Any
    ) -> None:
        if kwargs.get("autocast", False) is not False:
            raise ValueError(
                f"{_WHERE}: autocast must be False (an identity keeps its input's dtype, and "
                f"λ is never autocast), got autocast={kwargs['autocast']!r}"
            )
        # autocast=False: Keras never casts the inputs (an identity must not turn bfloat16
        # into float32 under a mixed policy); a NumPy input still becomes a tensor.
        keras.layers.Layer.__init__(self, **{**kwargs, "autocast": False})
        value = self._init_state(lambda_, schedule)
        self.supports_masking = True
        self._reverse = _backend_reverse()
        self._stepped = False  # whether a LambdaScheduler or step() moves this layer
        # On torch, the weight is a tensor that assign() rewrites in place: the backward of a
        # forward needs its own copy of λ (JAX and TensorFlow read immutable values).
        self._copy_lambda = keras.backend.backend() == "torch"
        self._jax = keras.backend.backend() == "jax"
        self._torch_float64 = _torch_float64() if self._copy_lambda else None
        # λ's weight is float32 on JAX without x64 and a cast may round it, so the exact λ is
        # kept next to it as its float64's 8 bytes (`lambda_bits`, which no cast changes):
        # x64 turned on later, or another backend reading the file, gets the exact λ.
        # Model.set_weights and Keras' trainers assign the variables one by one (see
        # _StateVariable); the journal makes a refused write put back the ones before it.
        self._journal = _layer.RestoreJournal(("lambda", "steps", "lambda_bits"))
        with keras.name_scope(self.name):
            self.lam = _StateVariable(self, "lambda", _storage_dtype(), ())
            self.steps = _StateVariable(self, "steps", "int32", ())
            self.lam_bits = _StateVariable(self, "lambda_bits", "uint8", (8,))
        self._put_lambda(value)
        self._put_schedule(schedule)

    def call(self, x: Any, training: Any = None) -> Any:
        self._journal.commit()
        if training and not self._stepped and self._schedule is not None:
            self._stepped = True  # warn once (this runs when fit traces its step)
            warnings.warn(
                f"{_WHERE} {self.name!r} has a schedule but nothing steps it, so λ stays "
                "at its current value. Pass gradrev.keras.LambdaScheduler() to fit's "
                "callbacks, or call layer.step() in your loop.",
                stacklevel=2,
            )
        lam = self.lam.value
        if self._copy_lambda:  # torch
            if lam.dtype != self._torch_float64:  # model.to(dtype) cast the parameter
                self._uncast()
            lam = keras.ops.copy(self.lam.value)
        elif (
            self._jax and lam.dtype == np.float32 and _x64_now()
        ):  # JAX: built without x64, x64 on now
            lam = _layer.exact_in_jax(lam, self.lam_bits.value)
        return self._reverse(x, lam)

    def _uncast(self) -> None:
        """Keras on torch: `model.to(torch.float16)` casts λ's parameter in place (the model
        holds every variable, so no hook of this layer sees it). Put the exact λ back."""
        lam = self.lam.value
        lam.data = lam.data.new_tensor(self._get_lambda(), dtype=self._torch_float64)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_output_spec(self, x: Any, training: Any = None) -> Any:
        return keras.KerasTensor(x.shape, dtype=x.dtype, sparse=getattr(x, "sparse", False))

    # -- storage for the shared state machine -----------------------------------------------
    def _lambda_dtype(self) -> str:
        lam = self.__dict__.get("lam")
        return _storage_dtype() if lam is None else str(lam.dtype)

    def _get_lambda(self) -> float:
        self._journal.commit()
        weight = float(keras.ops.convert_to_numpy(self.lam.value))
        return _layer.held_lambda(weight, self._exact())

    def _exact(self) -> float:
        return _layer.from_exact_bytes(_array(self.lam_bits.value))

    def _put_lambda(self, value: float) -> None:
        # Already checked: written past the variables' checks. A NumPy value, not the Python
        # float: TensorFlow's scalar-constant cache conflates -0.0 with 0.0, so assign(-0.0)
        # after a 0.0 anywhere stored +0.0 (flipping zeros' signs).
        keras.Variable.assign(self.lam, np.asarray(value, self.lam.dtype))
        keras.Variable.assign(self.lam_bits, _layer.exact_bytes(value))

    def _get_steps(self) -> int:
        self._journal.commit()
        return int(keras.ops.convert_to_numpy(self.steps.value))

    def _put_steps(self, steps: int) -> None:
        self._stepped = True
        keras.Variable.assign(self.steps, np.asarray(steps, "int32"))

    # -- restore paths -------------------------------------------------------------------------
    def set_weights(self, weights: Any) -> None:
        """Checked as the constructor checks λ; takes [λ, steps] (earlier versions) too."""
        super().set_weights(self._checked(list(weights)))

    def load_own_variables(self, store: Any) -> None:
        """`.keras` files and `load_weights`: λ and the step count are checked first (files
        from earlier versions, with no `lambda_bits`, load too)."""
        checked = self._checked([store[str(i)] for i in range(len(store))])
        super().load_own_variables({str(i): v for i, v in enumerate(checked)})

    def _checked(self, weights: list[Any]) -> list[Any]:
        """[λ, steps] or [λ, steps, λ's bytes], checked, as the three weights to write."""
        if len(weights) not in (2, 3):
            return weights  # Keras refuses the count
        dtype = self._lambda_dtype()
        lam = _layer.restored_lambda(_scalar(weights[0]), dtype, _WHERE)
        steps = _layer.restored_steps(_scalar(weights[1]), _WHERE)
        if len(weights) == 3:
            exact = _layer.restored_exact(_array(weights[2]), _WHERE)
            lam = _layer.fit_storage(_layer.held_lambda(lam, exact), dtype, _WHERE)
        return [np.asarray(lam, dtype), np.asarray(steps, "int32"), _layer.exact_bytes(lam)]

    def _assigned(self, variable: Any, value: Any) -> Any:
        """Every write of a state variable (`Model.set_weights` assigns them directly, past
        `set_weights`) is checked as a restore is; λ's weight and bytes are kept in step, and
        a refused write puts back the variables that the same load wrote before it."""
        array = _concrete(value)
        if array is None:
            return value  # a traced value (inside a compiled function): nothing to check
        return self._journal.write(
            variable.name, self._snapshot, lambda: self._check(variable, array), self._put_back
        )

    def _snapshot(self) -> list[Any] | None:
        values = [_filled(v) for v in (self.lam, self.steps, self.lam_bits)]
        return None if any(v is None for v in values) else values

    def _put_back(self, values: list[Any] | None) -> None:
        for variable, value in zip((self.lam, self.steps, self.lam_bits), values or []):
            keras.Variable.assign(variable, value)

    def _check(self, variable: Any, array: np.ndarray) -> Any:
        if variable is self.steps:
            return np.asarray(_layer.restored_steps(_scalar(array), _WHERE), "int32")
        dtype = self._lambda_dtype()
        if variable is self.lam:
            lam = _layer.restored_lambda(_scalar(array), dtype, _WHERE)
            bits = _filled(self.lam_bits)
            if bits is not None:
                lam = _layer.held_lambda(
                    lam, _layer.from_exact_bytes(bits)
                )  # a rounding of λ reads as λ
                keras.Variable.assign(self.lam_bits, _layer.exact_bytes(lam))
            return np.asarray(lam, dtype)
        exact = _layer.restored_exact(array, _WHERE)
        weight = _filled(self.lam)
        if weight is None:
            return _layer.exact_bytes(exact)
        lam = _layer.held_lambda(float(weight), exact)
        if lam == exact:  # the weight holds these bytes or a rounding of them
            _layer.fit_storage(lam, dtype, _WHERE)
            keras.Variable.assign(self.lam, np.asarray(lam, dtype))
        return _layer.exact_bytes(lam)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.schedule is None:
            config.update(lambda_=self.lambda_, schedule=None)
        else:
            config.update(schedule=_layer.check_saveable(self.schedule))
        return config  # type: ignore[no-any-return]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GradientReversal:
        config = dict(config)
        config["schedule"] = _layer.schedule_from_config(config.get("schedule"))
        if config["schedule"] is not None:
            # Files from gradrev 0.1 saved both; λ itself comes back with the weights.
            config.pop("lambda_", None)
        return cls(**config)


# private API [keras-variable-assign-hook]: docs/private-apis.md
class _StateVariable(keras.Variable):  # type: ignore[misc]
    """A state variable of `GradientReversal` (λ, its bytes, the step count) whose every
    `assign` goes through the layer's checks: `Model.set_weights` and Keras' trainers write
    variables directly, past any method of the layer."""

    def __init__(self, layer: GradientReversal, name: str, dtype: str, shape: Any) -> None:
        super().__init__(
            initializer="zeros",
            shape=shape,
            dtype=dtype,
            trainable=False,
            autocast=False,  # mixed precision policies would round λ to the compute dtype
            name=name,
        )
        self._gradrev_check = layer._assigned

    def assign(self, value: Any) -> Any:
        return super().assign(self._gradrev_check(self, value))


def _concrete(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array, or None while it is traced (no value to check yet)."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        # private API [jax-core-tracer]: docs/private-apis.md
        if isinstance(value, jax.core.Tracer):
            return None
    elif name == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or tf.is_symbolic_tensor(value):
            return None
    elif name == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    return _array(value)


def _filled(variable: Any) -> np.ndarray | None:
    """The variable's value, or None while Keras' JAX trainer has emptied it: during `fit`
    it sets `_value` (private) to None and refills the variables one by one through
    `assign`, so a sibling may not be refilled yet (it comes back as it was)."""
    # private API [keras-variable-value-slot]: docs/private-apis.md
    if getattr(variable, "_value", 0) is None:
        return None
    return _array(variable.value)


def _array(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _x64_now() -> bool:
    from gradrev.backends.jax import x64_enabled  # Keras on JAX only

    return x64_enabled()


def _torch_float64() -> Any:
    import torch

    return torch.float64


def _scalar(value: Any) -> Any:
    array = np.asarray(keras.ops.convert_to_numpy(value))
    return array.reshape(()) if array.size == 1 else value


class LambdaScheduler(keras.callbacks.Callback):  # type: ignore[misc]
    """Steps `GradientReversal` layers once per training batch.

    `LambdaScheduler()` steps every `GradientReversal` in the model;
    `LambdaScheduler(layer, ...)` steps only those given. With `steps_per_execution=k`,
    Keras runs k batches per call and calls back once: the layers are stepped once per
    batch that call ran, so the step count (and λ) after every call is schedule(batches
    seen). The batches inside one call share the λ of the first.
    """

    def __init__(self, *layers: GradientReversal) -> None:
        super().__init__()
        self.layers = layers
        self._seen = 0  # batches of the current epoch already counted

    def _targets(self) -> list[GradientReversal]:
        return list(self.layers) or [
            layer
            # private API [keras-flatten-layers]: docs/private-apis.md
            for layer in self.model._flatten_layers(include_self=False)
            if isinstance(layer, GradientReversal)
        ]

    def on_train_begin(self, logs: Any = None) -> None:
        for layer in self._targets():
            layer._stepped = True  # stepped by this callback: no warning

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._seen = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # `batch` is the index of the last batch this call ran (k per call with
        # steps_per_execution=k); Keras reports a full call's index for a last, shorter
        # call, so the count stops at the epoch's number of batches.
        end = batch + 1
        total = (self.params or {}).get("steps")
        if total:
            end = min(end, total)
        count, self._seen = end - self._seen, end
        # The JAX trainer keeps variables in its own state during fit; sync them out so the
        # steps are seen, and the trainer reloads them before the next batch.
        # private API [keras-jax-state-sync]: docs/private-apis.md
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        for layer in self._targets():
            for _ in range(count):
                layer.step()
