"""Flax NNX layer: ``gradrev.flax.nnx.GradientReversal``.

>>> from gradrev.flax.nnx import GradientReversal
>>> grl = GradientReversal(0.5)
>>> grl.lambda_
0.5
"""

from __future__ import annotations

from typing import Any

try:
    import jax
    import jax.numpy as jnp
    from flax import nnx
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    raise ImportError('gradrev.flax needs JAX and Flax: pip install "gradrev[jax]"') from e

from gradrev import _layer
from gradrev.backends import jax as backend

__all__ = ["GradientReversal", "ReversalState"]


class ReversalState(nnx.Variable[jax.Array]):
    """λ and the step count: state that optimizers (which take ``nnx.Param``) leave alone."""


class GradientReversal(nnx.Module):
    """Identity forward, gradient times −λ backward, with λ held in NNX state.

    ``lam`` (float32) and ``steps`` (int32) are :class:`ReversalState` variables, so they
    travel through ``nnx.split``/``nnx.merge`` and changing them never retraces ``nnx.jit``.
    With a ``schedule``, λ starts at ``schedule(0)`` and only :meth:`step` advances it.
    """

    def __init__(self, lambda_: float = 1.0, *, schedule: Any = None) -> None:
        value = _layer.initial_lambda(lambda_, schedule, "gradrev.flax.nnx.GradientReversal")
        self.schedule = schedule
        self.lam = ReversalState(jnp.asarray(value, jnp.float32))
        self.steps = ReversalState(jnp.asarray(0, jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return backend.reverse(x, self.lam[...])

    @property
    def lambda_(self) -> float:
        return float(self.lam[...])

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        value = _layer.initial_lambda(value, None, "gradrev.flax.nnx.GradientReversal.lambda_")
        self.lam[...] = jnp.asarray(value, jnp.float32)

    def step(self) -> float:
        """Advance the schedule by one step and return the new λ (a no-op on λ without one)."""
        steps = int(self.steps[...]) + 1
        self.steps[...] = jnp.asarray(steps, jnp.int32)
        if self.schedule is not None:
            value = _layer.lambda_at(self.schedule, steps, "GradientReversal")
            self.lam[...] = jnp.asarray(value, jnp.float32)
        return self.lambda_
