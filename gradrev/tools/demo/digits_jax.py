"""The digits conv net in JAX, with gradrev.flax.nnx.GradientReversal."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import numpy as np

from gradrev.flax.nnx import GradientReversal
from gradrev.tools.demo import DigitsConfig, convnet

__all__ = ["GradientReversal", "context", "trainer"]


@contextmanager
def context(config: DigitsConfig) -> Iterator[None]:
    """float64 needs ``jax_enable_x64`` (left on: JAX cannot switch it per array)."""
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    yield


def trainer(
    init: dict[str, np.ndarray], running: dict[str, np.ndarray], grl: Any, config: DigitsConfig,
    dann: bool,
) -> tuple[Callable[..., None], Callable[[], Any]]:  # fmt: skip
    """``convnet.train``'s step and result for JAX (one jitted step)."""
    import jax.numpy as jnp

    train_step = _step(config, dann)
    state = {
        "params": {k: jnp.asarray(v) for k, v in init.items()},
        "velocity": {k: jnp.zeros_like(jnp.asarray(v)) for k, v in init.items()},
        "running": {k: jnp.asarray(v) for k, v in running.items()},
    }

    def step(*arrays: np.ndarray) -> None:
        state.update(train_step(grl, state, *arrays))

    def result() -> Any:
        return (
            {k: np.asarray(v) for k, v in state["params"].items()},
            {k: np.asarray(v) for k, v in state["running"].items()},
        )

    return step, result


@functools.cache
def _step(config: DigitsConfig, dann: bool) -> Any:
    """The jitted training step, compiled once per configuration (not once per model)."""
    import jax.numpy as jnp
    from flax import nnx

    ops = convnet.numpy_like(jnp)

    @nnx.jit
    def train_step(
        grl: Any, state: Any, xs: Any, onehot: Any, xt: Any, is_target: Any, lr: Any
    ) -> Any:
        def objective(params: Any) -> Any:
            return convnet.loss(ops, params, xs, onehot, xt if dann else None, is_target, grl)

        params, velocity = state["params"], state["velocity"]
        grads, stats = jax.grad(objective, has_aux=True)(params)
        new = {
            k: convnet.sgd(params[k], grads[k], velocity[k], lr, config.momentum) for k in params
        }
        return {
            "params": {k: v[0] for k, v in new.items()},
            "velocity": {k: v[1] for k, v in new.items()},
            "running": convnet.update_running(state["running"], stats),
        }

    return train_step
