"""Keras 3 layer and callback: ``gradrev.keras.GradientReversal`` and ``LambdaScheduler``.

Works on the TensorFlow, JAX and PyTorch Keras backends; the layer calls that backend's
gradrev function directly.

>>> from gradrev.keras import GradientReversal
>>> grl = GradientReversal(0.5)
>>> grl.lambda_
0.5
"""

from __future__ import annotations

from typing import Any

try:
    import keras
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    raise ImportError('gradrev.keras needs Keras 3: pip install "gradrev[tensorflow]"') from e

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


@keras.saving.register_keras_serializable(package="gradrev")
class GradientReversal(keras.layers.Layer):  # type: ignore[misc]
    """Identity forward, gradient times −λ backward, with λ a non-trainable weight.

    ``lambda`` (float32) and ``steps`` (int32) are non-trainable weights: they are saved in
    ``.keras`` files, and changing them never retraces ``fit``. The input dtype is kept
    (no autocast). With a ``schedule``, λ starts at ``schedule(0)`` and only :meth:`step`
    (or :class:`LambdaScheduler`) advances it.
    """

    def __init__(self, lambda_: float = 1.0, *, schedule: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        value = _layer.initial_lambda(lambda_, schedule, "gradrev.keras.GradientReversal")
        self.schedule = schedule
        self._convert_input_args = False  # an identity must not cast bfloat16 inputs to float32
        self.supports_masking = True
        self._reverse = _backend_reverse()
        self.lam = self.add_weight(
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(value),
            trainable=False,
            name="lambda",
        )
        self.steps = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="steps"
        )

    def call(self, x: Any) -> Any:
        return self._reverse(x, self.lam.value)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_output_spec(self, x: Any) -> Any:
        return keras.KerasTensor(x.shape, dtype=x.dtype, sparse=getattr(x, "sparse", False))

    @property
    def lambda_(self) -> float:
        return float(keras.ops.convert_to_numpy(self.lam.value))

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        value = _layer.initial_lambda(value, None, "gradrev.keras.GradientReversal.lambda_")
        self.lam.assign(value)

    def step(self) -> float:
        """Advance the schedule by one step and return the new λ (a no-op on λ without one)."""
        steps = int(keras.ops.convert_to_numpy(self.steps.value)) + 1
        self.steps.assign(steps)
        if self.schedule is not None:
            self.lam.assign(_layer.lambda_at(self.schedule, steps, "GradientReversal"))
        return self.lambda_

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(lambda_=self.lambda_, schedule=_layer.schedule_config(self.schedule))
        return config  # type: ignore[no-any-return]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GradientReversal:
        config = dict(config)
        config["schedule"] = _layer.schedule_from_config(config.get("schedule"))
        return cls(**config)


class LambdaScheduler(keras.callbacks.Callback):  # type: ignore[misc]
    """Calls :meth:`GradientReversal.step` once per training batch.

    ``LambdaScheduler()`` steps every ``GradientReversal`` in the model;
    ``LambdaScheduler(layer, ...)`` steps only those given.
    """

    def __init__(self, *layers: GradientReversal) -> None:
        super().__init__()
        self.layers = layers

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # The JAX trainer keeps variables in its own state during fit; sync them out so the
        # step is seen, and the trainer reloads them before the next batch.
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        layers = self.layers or [
            layer
            for layer in self.model._flatten_layers(include_self=False)
            if isinstance(layer, GradientReversal)
        ]
        for layer in layers:
            layer.step()
