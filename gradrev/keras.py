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
    `jax_enable_x64`) that is never autocast, and inputs keep their dtype. λ (`lambda`) and
    the step count (`steps`) are saved in `.keras` files, the schedule in the config; every
    load (`.keras`, `load_weights`, the layer's `set_weights`) is checked as the constructor
    checks λ. Changing λ never retraces `fit`, and a backward always uses the λ its forward
    saw. A layer with a schedule trained by `fit` without `LambdaScheduler` warns.

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
        self._torch_float64 = _torch_float64() if self._copy_lambda else None
        self._exact_lambda = value  # λ as a Python float: what a cast of the weight rounded
        self.lam = self.add_weight(
            shape=(),
            dtype=_storage_dtype(),
            initializer="zeros",
            trainable=False,
            autocast=False,  # mixed precision policies would round λ to the compute dtype
            name="lambda",
        )
        self._put_lambda(value)  # not a Constant initializer, which rounds through float32
        self.steps = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="steps"
        )
        self._put_schedule(schedule)

    def call(self, x: Any, training: Any = None) -> Any:
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
        return self._reverse(x, lam)

    def _uncast(self) -> None:
        """Keras on torch: `model.to(torch.float16)` casts λ's parameter in place (the model
        holds every variable, so no hook of this layer sees it). Put the exact λ back."""
        lam = self.lam.value
        value = float(lam)
        if not _layer.is_rounding_of(value, self._exact_lambda):
            self._exact_lambda = value
        lam.data = lam.data.new_tensor(self._exact_lambda, dtype=self._torch_float64)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_output_spec(self, x: Any, training: Any = None) -> Any:
        return keras.KerasTensor(x.shape, dtype=x.dtype, sparse=getattr(x, "sparse", False))

    # -- storage for the shared state machine -----------------------------------------------
    def _lambda_dtype(self) -> str:
        lam = self.__dict__.get("lam")
        return _storage_dtype() if lam is None else str(lam.dtype)

    def _get_lambda(self) -> float:
        value = float(keras.ops.convert_to_numpy(self.lam.value))
        if self._copy_lambda and _layer.is_rounding_of(value, self._exact_lambda):
            return self._exact_lambda  # Keras on torch: model.to(dtype) cast the weight
        self._exact_lambda = value
        return value

    def _put_lambda(self, value: float) -> None:
        # A NumPy value, not the Python float: TensorFlow's scalar-constant cache conflates
        # -0.0 with 0.0, so assign(-0.0) after a 0.0 anywhere stored +0.0 (flipping zeros' signs).
        self.lam.assign(np.asarray(value, self.lam.dtype))
        self._exact_lambda = value

    def _get_steps(self) -> int:
        return int(keras.ops.convert_to_numpy(self.steps.value))

    def _put_steps(self, steps: int) -> None:
        self._stepped = True
        self.steps.assign(steps)

    # -- restore paths -------------------------------------------------------------------------
    def set_weights(self, weights: Any) -> None:
        super().set_weights(self._checked(list(weights)))
        self._exact_lambda = float(keras.ops.convert_to_numpy(self.lam.value))

    def load_own_variables(self, store: Any) -> None:
        """`.keras` files and `load_weights`: λ and the step count are checked first."""
        checked = self._checked([store[str(i)] for i in range(len(store))])
        super().load_own_variables({str(i): v for i, v in enumerate(checked)})
        self._exact_lambda = float(keras.ops.convert_to_numpy(self.lam.value))

    def _checked(self, weights: list[Any]) -> list[Any]:
        if len(weights) == 2:
            dtype = self._lambda_dtype()
            lam = _layer.restored_lambda(_scalar(weights[0]), dtype, _WHERE)
            steps = _layer.restored_steps(_scalar(weights[1]), _WHERE)
            weights = [np.asarray(lam, dtype), np.asarray(steps, "int32")]
        return weights

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
