"""The moons DANN in MLX: mlx.nn layers and gradrev.mlx.GradientReversal, on MLX's CPU."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from gradrev import schedules
from gradrev.tools.demo import Config
from gradrev.tools.demo.problem import Problem, Run, adam_corrections


def train(
    problem: Problem, config: Config, dann: bool, tick: Callable[[], None] = lambda: None
) -> Run:
    """Train one model; ``tick()`` after every step."""
    import mlx.core as mx
    import mlx.nn as nn

    from gradrev.mlx import GradientReversal

    dtype = getattr(mx, config.dtype)

    def array(a: Any) -> Any:
        return mx.array(np.asarray(a), dtype=dtype)  # mx.array makes float64 float32 otherwise

    class Model(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            for name, (kernel, bias) in problem.init.items():
                layer = nn.Linear(*kernel.shape)  # type: ignore[attr-defined]
                layer.weight, layer.bias = array(kernel.T), array(bias)
                setattr(self, name, layer)
            schedule = schedules.dann(config.steps, config.gamma, config.lambda_max)
            self.grl = GradientReversal(schedule=schedule)

        def features(self, x: Any) -> Any:
            return mx.tanh(self.f2(mx.tanh(self.f1(x))))

        def domain(self, h: Any) -> Any:
            return self.d2(nn.relu(self.d1(self.grl(h))))[:, 0]  # type: ignore[attr-defined]

    def loss_fn(model: Model, xs: Any, ys: Any, xt: Any) -> Any:
        hs = model.features(xs)
        logits = model.label(hs)
        chosen = mx.take_along_axis(logits, ys[:, None], axis=1)[:, 0]
        loss = mx.mean(mx.logsumexp(logits, axis=1) - chosen)
        if dann:
            d = model.domain(mx.concatenate([hs, model.features(xt)]))
            is_target = mx.concatenate([mx.zeros(len(xs), d.dtype), mx.ones(len(xt), d.dtype)])
            softplus = mx.maximum(d, 0) + mx.log1p(mx.exp(-mx.abs(d)))
            loss = loss + mx.mean(softplus - is_target * d)
        return loss

    with mx.stream(mx.cpu):  # float64 exists only on MLX's CPU stream
        model = Model()
        params = model.trainable_parameters()
        moments = {
            "m": _tree_map(mx.zeros_like, params),
            "v": _tree_map(mx.zeros_like, params),
        }
        state = [model.state, moments]

        # λ is an input (model.state), so stepping it between calls never recompiles.
        @partial(mx.compile, inputs=state, outputs=state)
        def train_step(xs: Any, ys: Any, xt: Any, c1: Any, c2: Any) -> None:
            grads = nn.value_and_grad(model, loss_fn)(model, xs, ys, xt)[1]  # type: ignore[attr-defined]
            m = _tree_map(lambda m, g: m * 0.9 + 0.1 * g, moments["m"], grads)
            v = _tree_map(lambda v, g: v * 0.999 + 0.001 * g * g, moments["v"], grads)
            new = _tree_map(
                lambda p, m, v: p - config.lr * (m * c1) / (mx.sqrt(v * c2) + 1e-8),
                model.trainable_parameters(),
                m,
                v,
            )
            model.update(new)
            moments["m"], moments["v"] = m, v

        xs, ys, xt = array(problem.xs), mx.array(problem.ys), array(problem.xt)
        for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches), 1):
            c1, c2 = (array(c) for c in adam_corrections(step))
            train_step(xs[mx.array(i)], ys[mx.array(i)], xt[mx.array(j)], c1, c2)
            mx.eval(state)
            model.grl.step()
            tick()

        def probability(x: np.ndarray) -> np.ndarray:
            with mx.stream(mx.cpu):
                logits = model.label(model.features(array(x)))
                return np.array(mx.sigmoid(logits[:, 1] - logits[:, 0]))

        weights = {
            name: (np.array(layer.weight).T, np.array(layer.bias))
            for name in problem.init
            for layer in [getattr(model, name)]
        }
    return Run(weights, probability, model.grl.lambda_)


def _tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    from mlx.utils import tree_map

    return tree_map(fn, tree, *rest)
