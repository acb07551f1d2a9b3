"""Flax Linen layer: ``gradrev.flax.linen.GradientReversal``.

Linen modules are stateless, so λ is a field with a per-call override: pass the current λ
(a Python float or, to avoid retracing under ``jax.jit``, a 0-d array) to ``__call__``.

Example:
    ```python
    import jax.numpy as jnp
    from gradrev.flax.linen import GradientReversal

    y = GradientReversal(0.5).apply({}, jnp.ones(3), lambda_=jnp.float32(0.25))
    ```
"""

from __future__ import annotations

from typing import Any

try:
    import jax
    from flax import linen as nn
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "jax", e) from e

from gradrev import _lambda
from gradrev.backends import jax as backend

__all__ = ["GradientReversal"]


class GradientReversal(nn.Module):
    """Identity forward, gradient times −λ backward; ``lambda_`` may be overridden per call.

    Attributes:
        lambda_: λ used when a call passes none (a finite real number).
    """

    lambda_: float = 1.0

    def __post_init__(self) -> None:
        _lambda.as_float(self.lambda_, "gradrev.flax.linen.GradientReversal", "layer")
        super().__post_init__()

    def __call__(self, x: jax.Array, lambda_: Any = None) -> jax.Array:
        """``x`` forward; the gradient times ``-lambda_`` backward (this call's λ, else the field).

        Args:
            x: A ``jax.Array`` (a tracer under ``jit``).
            lambda_: λ for this call: a real number or, to avoid retracing, a 0-d array.
        """
        return backend.reverse(x, self.lambda_ if lambda_ is None else lambda_)
