"""The moons DANN in JAX: Flax NNX layers and gradrev.flax.nnx.GradientReversal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradrev import schedules
from gradrev.tools.demo import Config
from gradrev.tools.demo.problem import Problem, Run, adam_corrections


def train(
    problem: Problem, config: Config, dann: bool, tick: Callable[[], None] = lambda: None
) -> Run:
    """Train one model; ``tick()`` after every step."""
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import jax.numpy as jnp
    from flax import nnx

    from gradrev.flax.nnx import GradientReversal

    class Model(nnx.Module):
        f1: nnx.Linear
        f2: nnx.Linear
        label: nnx.Linear
        d1: nnx.Linear
        d2: nnx.Linear

        def __init__(self) -> None:
            for name, (kernel, bias) in problem.init.items():
                layer = nnx.Linear(
                    *kernel.shape, dtype=config.dtype, param_dtype=config.dtype, rngs=nnx.Rngs(0)
                )
                layer.kernel[...] = jnp.asarray(kernel)
                layer.bias[...] = jnp.asarray(bias)  # type: ignore[index]
                setattr(self, name, layer)
            schedule = schedules.dann(config.steps, config.gamma, config.lambda_max)
            self.grl = GradientReversal(schedule=schedule)

        def features(self, x: Any) -> Any:
            return jnp.tanh(self.f2(jnp.tanh(self.f1(x))))

        def domain(self, h: Any) -> Any:
            return self.d2(jax.nn.relu(self.d1(self.grl(h))))[:, 0]

    def loss_fn(model: Model, xs: Any, ys: Any, xt: Any) -> Any:
        hs = model.features(xs)
        logits = model.label(hs)
        top = jnp.max(logits, axis=1, keepdims=True)
        logsumexp = top[:, 0] + jnp.log(jnp.sum(jnp.exp(logits - top), axis=1))
        loss = jnp.mean(logsumexp - jnp.take_along_axis(logits, ys[:, None], axis=1)[:, 0])
        if dann:
            d = model.domain(jnp.concatenate([hs, model.features(xt)]))
            is_target = jnp.concatenate([jnp.zeros(len(xs), d.dtype), jnp.ones(len(xt), d.dtype)])
            softplus = jnp.maximum(d, 0) + jnp.log1p(jnp.exp(-jnp.abs(d)))
            loss = loss + jnp.mean(softplus - is_target * d)
        return loss

    @nnx.jit
    def train_step(
        model: Model, m: Any, v: Any, xs: Any, ys: Any, xt: Any, c1: Any, c2: Any
    ) -> Any:
        grads = nnx.grad(loss_fn)(model, xs, ys, xt)
        params = nnx.state(model, nnx.Param)
        m = jax.tree.map(lambda m, g: m * 0.9 + 0.1 * g, m, grads)
        v = jax.tree.map(lambda v, g: v * 0.999 + 0.001 * g * g, v, grads)
        params = jax.tree.map(
            lambda p, m, v: p - config.lr * (m * c1) / (jnp.sqrt(v * c2) + 1e-8), params, m, v
        )
        nnx.update(model, params)
        return m, v

    model = Model()
    m = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    v = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches), 1):
        c1, c2 = (jnp.asarray(c, config.dtype) for c in adam_corrections(step))
        m, v = train_step(model, m, v, problem.xs[i], problem.ys[i], problem.xt[j], c1, c2)
        model.grl.step()
        tick()

    @jax.jit
    def probability(x: Any) -> Any:
        logits = model.label(model.features(x))
        return jax.nn.sigmoid(logits[:, 1] - logits[:, 0])

    weights = {
        name: (np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]))
        for name in problem.init
        for layer in [getattr(model, name)]
    }
    return Run(weights, lambda x: np.asarray(probability(x)), model.grl.lambda_)
