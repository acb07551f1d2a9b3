"""The digits conv net in PyTorch, with gradrev.torch.GradientReversal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from gradrev.tools.demo import DigitsConfig, convnet
from gradrev.torch import GradientReversal

__all__ = ["GradientReversal", "context", "trainer"]

OPS = SimpleNamespace(
    pad=lambda x: torch.nn.functional.pad(x, (1, 1, 1, 1)),
    transpose=torch.permute,
    concat=torch.cat,
    reshape=torch.reshape,
    mean=lambda x, axes, keepdims=False: torch.mean(x, dim=axes, keepdim=keepdims),
    max=lambda x, axes, keepdims=False: torch.amax(x, dim=axes, keepdim=keepdims),
    sum=lambda x, axis: torch.sum(x, dim=axis),
    sqrt=torch.sqrt,
    exp=torch.exp,
    log=torch.log,
    log1p=torch.log1p,
    abs=torch.abs,
    maximum=lambda x, y: torch.clamp(x, min=y),
)


@contextmanager
def context(config: DigitsConfig) -> Iterator[None]:
    """One torch thread for the run: the matrices are small, and more threads only fight
    over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trainer(
    init: dict[str, np.ndarray], running: dict[str, np.ndarray], grl: Any, config: DigitsConfig,
    dann: bool,
) -> tuple[Callable[..., None], Callable[[], Any]]:  # fmt: skip
    """``convnet.train``'s step and result for PyTorch (eager autograd)."""
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    stats = {k: torch.tensor(v) for k, v in running.items()}
    names = sorted(params)

    def step(*arrays: np.ndarray) -> None:
        xs, onehot, xt, is_target, lr = (torch.from_numpy(a) for a in arrays)
        total, batch = convnet.loss(OPS, params, xs, onehot, xt if dann else None, is_target, grl)
        grads = torch.autograd.grad(total, [params[k] for k in names], materialize_grads=True)
        with torch.no_grad():
            stats.update(
                convnet.update_running(stats, [(m.detach(), v.detach()) for m, v in batch])
            )
            for k, g in zip(names, grads):
                new, velocity[k] = convnet.sgd(params[k], g, velocity[k], lr, config.momentum)
                params[k].copy_(new)

    def result() -> Any:
        return (
            {k: v.detach().numpy().copy() for k, v in params.items()},
            {k: v.numpy().copy() for k, v in stats.items()},
        )

    return step, result
