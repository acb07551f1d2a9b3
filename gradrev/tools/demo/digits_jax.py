"""The digits conv net in JAX, with gradrev.flax.nnx.GradientReversal."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradrev.tools.demo import DigitsConfig, convnet


def train(
    problem: convnet.ConvProblem,
    config: DigitsConfig,
    mode: str,
    tick: Callable[[], None] = lambda: None,
) -> convnet.ConvRun:
    """Train one model (``mode`` in ``convnet.MODES``); ``tick()`` after every step."""
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import jax.numpy as jnp

    from gradrev.flax.nnx import GradientReversal

    grl = GradientReversal(schedule=convnet.schedule(config, mode))
    train_step = _step(config, mode != "source_only")
    index = {k: jnp.asarray(v) for k, v in problem.index.items()}
    params = {k: jnp.asarray(v) for k, v in problem.init.items()}
    velocity = {k: jnp.zeros_like(v) for k, v in params.items()}
    running = {k: jnp.asarray(v) for k, v in problem.running.items()}
    xs, xt = problem.x["source_train"], problem.x["target_train"]
    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches)):
        onehot, is_target = convnet.constants(problem, config, step)
        lr = jnp.asarray(convnet.annealed_lr(config, step + 1), config.dtype)
        params, velocity, running = train_step(
            grl, params, velocity, running, index, xs[i], onehot, xt[j], is_target, lr
        )
        grl.step()
        tick()
    return convnet.ConvRun(
        {k: np.asarray(v) for k, v in params.items()},
        {k: np.asarray(v) for k, v in running.items()},
        grl.lambda_,
    )


@functools.cache
def _step(config: DigitsConfig, dann: bool) -> Any:
    """The jitted training step, compiled once per configuration (not once per model)."""
    import jax.numpy as jnp
    from flax import nnx

    ops = convnet.numpy_like(jnp)

    @nnx.jit
    def train_step(
        grl: Any, params: Any, velocity: Any, running: Any, index: Any, xs: Any, onehot: Any,
        xt: Any, is_target: Any, lr: Any,
    ) -> Any:  # fmt: skip
        def objective(params: Any) -> Any:
            return convnet.loss(
                ops, params, xs, onehot, xt if dann else None, is_target, grl, index
            )

        grads, stats = jax.grad(objective, has_aux=True)(params)
        running = convnet.update_running(running, stats)
        new = {
            k: convnet.sgd(params[k], grads[k], velocity[k], lr, config.momentum) for k in params
        }
        return {k: v[0] for k, v in new.items()}, {k: v[1] for k, v in new.items()}, running

    return train_step
