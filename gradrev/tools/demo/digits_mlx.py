"""The digits conv net in MLX, with gradrev.mlx.GradientReversal, on MLX's CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np

from gradrev.mlx import GradientReversal
from gradrev.tools.demo import DigitsConfig, convnet

__all__ = ["GradientReversal", "context", "trainer"]


@contextmanager
def context(config: DigitsConfig) -> Iterator[None]:
    """MLX's CPU stream: float64 exists only there."""
    with mx.stream(mx.cpu):
        yield


def trainer(
    init: dict[str, np.ndarray], running: dict[str, np.ndarray], grl: Any, config: DigitsConfig,
    dann: bool,
) -> tuple[Callable[..., None], Callable[[], Any]]:  # fmt: skip
    """``convnet.train``'s step and result for MLX (one ``mx.compile``d step)."""
    ops = convnet.numpy_like(mx)
    dtype = getattr(mx, config.dtype)

    def array(a: Any) -> Any:
        return mx.array(np.asarray(a), dtype=dtype)  # mx.array makes float64 float32 otherwise

    state = {
        "params": {k: array(v) for k, v in init.items()},
        "velocity": {k: mx.zeros_like(array(v)) for k, v in init.items()},
        "running": {k: array(v) for k, v in running.items()},
    }

    def objective(params: Any, xs: Any, onehot: Any, xt: Any, is_target: Any) -> Any:
        return convnet.loss(ops, params, xs, onehot, xt if dann else None, is_target, grl)

    # λ is an input (grl.state), so stepping it between calls never recompiles.
    @partial(mx.compile, inputs=[state, grl.state], outputs=[state])
    def train_step(xs: Any, onehot: Any, xt: Any, is_target: Any, lr: Any) -> None:
        (_, stats), grads = mx.value_and_grad(objective)(state["params"], xs, onehot, xt, is_target)
        state["running"] = convnet.update_running(state["running"], stats)
        new = {
            k: convnet.sgd(p, grads[k], state["velocity"][k], lr, config.momentum)
            for k, p in state["params"].items()
        }
        state["params"] = {k: v[0] for k, v in new.items()}
        state["velocity"] = {k: v[1] for k, v in new.items()}

    def step(*arrays: np.ndarray) -> None:
        train_step(*(array(a) for a in arrays))
        mx.eval(state)

    def result() -> Any:
        return (
            {k: np.array(v) for k, v in state["params"].items()},
            {k: np.array(v) for k, v in state["running"].items()},
        )

    return step, result
