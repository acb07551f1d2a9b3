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

from typing import Any

try:
    import keras
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


def _lambda_dtype() -> str:
    """float64, except on JAX without jax_enable_x64, which has no float64 (nor float64 inputs)."""
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.dtypes.canonicalize_dtype("float64"))
    return "float64"


@keras.saving.register_keras_serializable(package="gradrev")
class GradientReversal(keras.layers.Layer):  # type: ignore[misc]
    """Identity forward, gradient times −λ backward, with λ a non-trainable weight.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype and under every dtype policy: λ is a float64 weight (float32 on JAX without
    `jax_enable_x64`) that is never autocast, and inputs keep their dtype. λ (`lambda`) and
    the step count (`steps`) are saved in `.keras` files, the schedule in the config.
    Changing λ never retraces `fit`, and a backward always uses the λ its forward saw.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` (or `LambdaScheduler`) moves it on.
        **kwargs: passed to `keras.layers.Layer` (`name`, ...).
    """

    def __init__(
        self, lambda_: float | None = None, *, schedule: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        value = _layer.initial_lambda(lambda_, schedule, _WHERE)
        dtype = _lambda_dtype()
        value = _layer.fit_storage(value, dtype, _WHERE)
        self.schedule = schedule
        self._convert_input_args = False  # an identity must not cast bfloat16 inputs to float32
        self.supports_masking = True
        self._reverse = _backend_reverse()
        # On torch, the weight is a tensor that assign() rewrites in place: the backward of a
        # forward needs its own copy of λ (JAX and TensorFlow read immutable values).
        self._copy_lambda = keras.backend.backend() == "torch"
        self.lam = self.add_weight(
            shape=(),
            dtype=dtype,
            initializer="zeros",
            trainable=False,
            autocast=False,  # mixed precision policies would round λ to the compute dtype
            name="lambda",
        )
        self.lam.assign(value)  # not a Constant initializer, which rounds through float32
        self.steps = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="steps"
        )

    def call(self, x: Any) -> Any:
        lam = self.lam.value
        return self._reverse(x, keras.ops.copy(lam) if self._copy_lambda else lam)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_output_spec(self, x: Any) -> Any:
        return keras.KerasTensor(x.shape, dtype=x.dtype, sparse=getattr(x, "sparse", False))

    @property
    def lambda_(self) -> float:
        """The current λ, as a Python float."""
        return float(keras.ops.convert_to_numpy(self.lam.value))

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        where = f"{_WHERE}.lambda_"
        if self.schedule is not None:
            raise _layer.refuse_manual_lambda(where)
        self.lam.assign(
            _layer.fit_storage(_layer.check_lambda(value, where), self.lam.dtype, where)
        )

    def step(self) -> float:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Atomic: if the schedule raises or gives a non-finite λ, nothing changes.
        """
        steps = int(keras.ops.convert_to_numpy(self.steps.value)) + 1
        if self.schedule is None:
            value = self.lambda_
        else:
            value = _layer.lambda_at(self.schedule, steps, _WHERE)
            value = _layer.fit_storage(value, self.lam.dtype, _WHERE)
            self.lam.assign(value)
        self.steps.assign(steps)
        return value

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.schedule is None:
            config.update(lambda_=self.lambda_, schedule=None)
        else:
            config.update(schedule=_layer.schedule_config(self.schedule))
        return config  # type: ignore[no-any-return]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GradientReversal:
        config = dict(config)
        config["schedule"] = _layer.schedule_from_config(config.get("schedule"))
        if config["schedule"] is not None:
            # Files from gradrev 0.1 saved both; λ itself comes back with the weights.
            config.pop("lambda_", None)
        return cls(**config)


class LambdaScheduler(keras.callbacks.Callback):  # type: ignore[misc]
    """Steps `GradientReversal` layers once per training batch.

    `LambdaScheduler()` steps every `GradientReversal` in the model;
    `LambdaScheduler(layer, ...)` steps only those given. With `steps_per_execution=k`,
    Keras runs k batches per call and calls back once: the layers are stepped k times then,
    so the step count (and λ) after every call is schedule(batches seen). The k batches
    inside one call share the λ of the first.
    """

    def __init__(self, *layers: GradientReversal) -> None:
        super().__init__()
        self.layers = layers
        self._seen = 0  # batches of the current epoch already counted

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._seen = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # `batch` is the index of the last batch this call ran (k per call with
        # steps_per_execution=k).
        count, self._seen = batch + 1 - self._seen, batch + 1
        # The JAX trainer keeps variables in its own state during fit; sync them out so the
        # steps are seen, and the trainer reloads them before the next batch.
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        layers = self.layers or [
            layer
            for layer in self.model._flatten_layers(include_self=False)
            if isinstance(layer, GradientReversal)
        ]
        for layer in layers:
            for _ in range(count):
                layer.step()
