"""Drop-in for adapt's ``UpdateLambda`` Keras callback (``adapt.utils``).

Before: ``from adapt.utils import UpdateLambda``. After: ``from gradrev.compat.adapt import
UpdateLambda``. It drives gradrev's Keras layers (and, as adapt does, a model's ``lambda_``
variable) with adapt's normalised DANN ramp, computed as adapt computes it: float32
TensorFlow ops, so λ has adapt's bits. gradrev's own curve, for any framework, is
``schedules.dann(max_steps, gamma, lambda_max, lambda_init=..., normalize=True)``.

```python
import keras
from gradrev.compat.adapt import UpdateLambda

assert UpdateLambda(lambda_max=0.1).lambda_max == 0.1
```
"""

from __future__ import annotations

import math
import numbers
from typing import Any

try:
    import keras
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "tensorflow", e) from e

from gradrev import _lambda
from gradrev.keras import GradientReversal

__all__ = ["UpdateLambda"]


class UpdateLambda(keras.callbacks.Callback):  # type: ignore[misc]
    """adapt's ``UpdateLambda``: after each training batch, λ follows the normalised DANN ramp.

    λ = A · (2 / (1 + exp(−gamma · p)) − 1) + B, p = min(steps / max_steps, 1), with A and B
    such that λ = lambda_init at p = 0 and exactly lambda_max at p = 1. It sets every
    ``gradrev.keras.GradientReversal`` in the model (or only ``layers``, if given) and the
    model's ``lambda_`` variable, if it has one. As in adapt, λ is first set after the first
    batch, so build the layers with ``lambda_=lambda_init``; ``steps`` counts on across ``fit``
    calls.
    """

    def __init__(
        self,
        lambda_init: float = 0.0,
        lambda_max: float = 1.0,
        max_steps: float = 1000,
        gamma: float = 1.0,
        *,
        layers: tuple[GradientReversal, ...] | list[GradientReversal] = (),
    ) -> None:
        super().__init__()
        where = "gradrev.compat.adapt.UpdateLambda"
        for name, value in (
            ("lambda_init", lambda_init),
            ("lambda_max", lambda_max),
            ("max_steps", max_steps),
            ("gamma", gamma),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(
                    f"{where}: {name} must be a real number, got {_lambda.describe(value)}"
                )
            if not math.isfinite(value):
                raise ValueError(f"{where}: {name} must be finite, got {value!r}")
        if max_steps <= 0:
            raise ValueError(f"{where}: max_steps must be > 0, got {max_steps!r}")
        for layer in layers:
            if not isinstance(layer, GradientReversal):
                raise TypeError(
                    f"{where}: layers must be gradrev.keras.GradientReversal layers, "
                    f"got {_lambda.describe(layer)}"
                )
        self.lambda_init = lambda_init
        self.lambda_max = lambda_max
        self.max_steps = max_steps
        self.gamma = gamma
        self.steps = 0.0
        self.layers = tuple(layers)
        if float(_end_value(gamma)) == 0.0:  # adapt would divide by 0 and set λ to NaN
            raise ValueError(
                f"{where}: gamma={gamma!r} is too close to 0: the ramp's end value "
                "2/(1+exp(−gamma))−1 is 0 in float32, and adapt divides by it"
            )

    def on_train_begin(self, logs: Any = None) -> None:
        if not self._layers() and _model_lambda(self.model) is None:
            raise ValueError(
                "gradrev.compat.adapt.UpdateLambda: the model has no gradrev.keras."
                "GradientReversal layer and no lambda_ variable, so there is no λ to update"
            )

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps += 1.0
        lam = self.lambda_at(self.steps)
        # The JAX trainer keeps variables in its own state during fit; sync them out so the
        # new λ is seen, and the trainer reloads them before the next batch.
        # private API [keras-jax-state-sync]: docs/private-apis.md
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        for layer in self._layers():
            layer.lambda_ = lam
        variable = _model_lambda(self.model)
        if variable is not None:
            variable.assign(lam)

    def lambda_at(self, steps: float) -> float:
        """λ after ``steps`` batches, in adapt's float32 arithmetic."""
        progress = min(steps / self.max_steps, 1.0)
        lam = 2.0 / (1.0 + tf.exp(-self.gamma * progress)) - 1.0
        lam /= _end_value(self.gamma)
        lam *= self.lambda_max - self.lambda_init
        lam += self.lambda_init
        return float(lam)

    def _layers(self) -> tuple[GradientReversal, ...]:
        if self.layers:
            return self.layers
        return tuple(
            layer for layer in _all_layers(self.model) if isinstance(layer, GradientReversal)
        )


def _end_value(gamma: float) -> Any:
    """The ramp at p = 1, 2/(1+exp(−gamma))−1, as a float32 tensor, as adapt computes it."""
    return 2 / (1.0 + tf.exp(-gamma)) - 1.0


def _all_layers(model: Any) -> list[Any]:
    # Keras 3 has no public recursive walk; _flatten_layers also finds layers nested in
    # subclassed layers and models, which model.layers does not.
    # private API [keras-flatten-layers]: docs/private-apis.md
    return list(model._flatten_layers(include_self=False))


def _model_lambda(model: Any) -> Any:
    """adapt's models keep λ in a ``lambda_`` variable; None when the model has none."""
    variable = getattr(model, "lambda_", None)
    return variable if hasattr(variable, "assign") else None
