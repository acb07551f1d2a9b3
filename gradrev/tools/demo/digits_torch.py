"""The digits conv net in PyTorch, with gradrev.torch.GradientReversal."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from gradrev.tools.demo import DigitsConfig, convnet
from gradrev.torch import GradientReversal

OPS = SimpleNamespace(
    take=lambda x, i: x[:, i],
    concat=torch.cat,
    reshape=torch.reshape,
    mean=lambda x, axes: torch.mean(x, dim=axes),
    max=lambda x, axes, keepdims=False: torch.amax(x, dim=axes, keepdim=keepdims),
    sum=lambda x, axis: torch.sum(x, dim=axis),
    sqrt=torch.sqrt,
    exp=torch.exp,
    log=torch.log,
    log1p=torch.log1p,
    abs=torch.abs,
    maximum=lambda x, y: torch.clamp(x, min=y),
)


def train(
    problem: convnet.ConvProblem,
    config: DigitsConfig,
    mode: str,
    tick: Callable[[], None] = lambda: None,
) -> convnet.ConvRun:
    """Train one model (``mode`` in ``convnet.MODES``); ``tick()`` after every step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: more threads only fight over busy cores
    try:
        return _train(problem, config, mode, tick)
    finally:
        torch.set_num_threads(threads)


def _train(
    problem: convnet.ConvProblem, config: DigitsConfig, mode: str, tick: Callable[[], None]
) -> convnet.ConvRun:
    grl = GradientReversal(schedule=convnet.schedule(config, mode))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in problem.init.items()}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    running = {k: torch.tensor(v) for k, v in problem.running.items()}
    index = {k: torch.from_numpy(v) for k, v in problem.index.items()}
    xs, xt = (
        torch.from_numpy(problem.x["source_train"]),
        torch.from_numpy(problem.x["target_train"]),
    )
    names = sorted(params)
    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches)):
        onehot, is_target = (torch.from_numpy(a) for a in convnet.constants(problem, config, step))
        target = None if mode == "source_only" else xt[j]
        total, stats = convnet.loss(OPS, params, xs[i], onehot, target, is_target, grl, index)
        grads = torch.autograd.grad(total, [params[k] for k in names], materialize_grads=True)
        lr = torch.tensor(convnet.annealed_lr(config, step + 1), dtype=total.dtype)
        with torch.no_grad():
            running = convnet.update_running(running, [(m.detach(), v.detach()) for m, v in stats])
            for k, g in zip(names, grads):
                new, velocity[k] = convnet.sgd(params[k], g, velocity[k], lr, config.momentum)
                params[k].copy_(new)
        grl.step()
        tick()
    return convnet.ConvRun(
        {k: v.detach().numpy().copy() for k, v in params.items()},
        {k: v.numpy().copy() for k, v in running.items()},
        grl.lambda_,
    )
