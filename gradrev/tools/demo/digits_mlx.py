"""The digits conv net in MLX, with gradrev.mlx.GradientReversal, on MLX's CPU."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from gradrev.tools.demo import DigitsConfig, convnet


def train(
    problem: convnet.ConvProblem,
    config: DigitsConfig,
    mode: str,
    tick: Callable[[], None] = lambda: None,
) -> convnet.ConvRun:
    """Train one model (``mode`` in ``convnet.MODES``); ``tick()`` after every step."""
    import mlx.core as mx

    from gradrev.mlx import GradientReversal

    ops = convnet.numpy_like(mx)
    dtype = getattr(mx, config.dtype)

    def array(a: Any) -> Any:
        return mx.array(np.asarray(a), dtype=dtype)  # mx.array makes float64 float32 otherwise

    dann = mode != "source_only"
    with mx.stream(mx.cpu):  # float64 exists only on MLX's CPU stream
        grl = GradientReversal(schedule=convnet.schedule(config, mode))
        index = {k: mx.array(v.astype(np.int32)) for k, v in problem.index.items()}
        state = {
            "params": {k: array(v) for k, v in problem.init.items()},
            "velocity": {k: mx.zeros_like(array(v)) for k, v in problem.init.items()},
            "running": {k: array(v) for k, v in problem.running.items()},
        }

        def objective(params: Any, xs: Any, onehot: Any, xt: Any, is_target: Any) -> Any:
            return convnet.loss(
                ops, params, xs, onehot, xt if dann else None, is_target, grl, index
            )

        # λ is an input (grl.state), so stepping it between calls never recompiles.
        @partial(mx.compile, inputs=[state, grl.state], outputs=[state])
        def train_step(xs: Any, onehot: Any, xt: Any, is_target: Any, lr: Any) -> None:
            (_, stats), grads = mx.value_and_grad(objective)(
                state["params"], xs, onehot, xt, is_target
            )
            state["running"] = convnet.update_running(state["running"], stats)
            new = {
                k: convnet.sgd(p, grads[k], state["velocity"][k], lr, config.momentum)
                for k, p in state["params"].items()
            }
            state["params"] = {k: v[0] for k, v in new.items()}
            state["velocity"] = {k: v[1] for k, v in new.items()}

        xs, xt = array(problem.x["source_train"]), array(problem.x["target_train"])
        for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches)):
            onehot, is_target = (array(a) for a in convnet.constants(problem, config, step))
            lr = array(convnet.annealed_lr(config, step + 1))
            train_step(xs[mx.array(i)], onehot, xt[mx.array(j)], is_target, lr)
            mx.eval(state)
            grl.step()
            tick()
        return convnet.ConvRun(
            {k: np.array(v) for k, v in state["params"].items()},
            {k: np.array(v) for k, v in state["running"].items()},
            grl.lambda_,
        )
