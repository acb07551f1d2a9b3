"""The moons DANN in PyTorch: nn.Linear layers and gradrev.torch.GradientReversal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from gradrev import schedules
from gradrev.tools.demo import Config
from gradrev.tools.demo.problem import Problem, Run, adam_corrections
from gradrev.torch import GradientReversal


class Model(nn.Module):
    f1: nn.Linear
    f2: nn.Linear
    label: nn.Linear
    d1: nn.Linear
    d2: nn.Linear

    def __init__(self, problem: Problem, config: Config) -> None:
        super().__init__()
        dtype = getattr(torch, config.dtype)
        for name, (kernel, bias) in problem.init.items():
            layer = nn.Linear(kernel.shape[0], kernel.shape[1], dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
                layer.bias.copy_(torch.from_numpy(bias))
            setattr(self, name, layer)
        schedule = schedules.dann(config.steps, config.gamma, config.lambda_max)
        self.grl = GradientReversal(schedule=schedule)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.f2(torch.tanh(self.f1(x))))

    def domain(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.d2(torch.relu(self.d1(self.grl(h))))
        return out[:, 0]


def loss_fn(model: Model, xs: Any, ys: Any, xt: Any, dann: bool) -> Any:
    hs = model.features(xs)
    logits = model.label(hs)
    top = logits.max(dim=1, keepdim=True).values
    logsumexp = top[:, 0] + torch.log(torch.exp(logits - top).sum(dim=1))
    loss = (logsumexp - logits.gather(1, ys[:, None])[:, 0]).mean()
    if dann:
        d = model.domain(torch.cat([hs, model.features(xt)]))
        is_target = torch.cat(
            [torch.zeros(len(xs), dtype=d.dtype), torch.ones(len(xt), dtype=d.dtype)]
        )
        softplus = torch.clamp(d, min=0) + torch.log1p(torch.exp(-torch.abs(d)))
        loss = loss + (softplus - is_target * d).mean()
    return loss


def train(
    problem: Problem, config: Config, dann: bool, tick: Callable[[], None] = lambda: None
) -> Run:
    """Train one model; ``tick()`` after every step."""
    # The models are tiny: torch's intra-op threads cannot speed up a 64×32 matmul, and on
    # a busy machine they fight over the cores (17 s instead of 1.2 s per seed, 2 cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(problem, config, dann, tick)
    finally:
        torch.set_num_threads(threads)


def _train(problem: Problem, config: Config, dann: bool, tick: Callable[[], None]) -> Run:
    model = Model(problem, config)
    params = [p for _, p in sorted(model.named_parameters())]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    xs, ys, xt = (torch.from_numpy(a) for a in (problem.xs, problem.ys, problem.xt))
    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches), 1):
        loss = loss_fn(model, xs[i], ys[i], xt[j], dann)
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
        c1, c2 = adam_corrections(step)
        with torch.no_grad():
            for p, g, mi, vi in zip(params, grads, m, v):
                mi.mul_(0.9).add_(0.1 * g)
                vi.mul_(0.999).add_(0.001 * g * g)
                p.sub_(config.lr * (mi * c1) / (torch.sqrt(vi * c2) + 1e-8))
        model.grl.step()
        tick()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model.label(model.features(torch.from_numpy(x)))
            return torch.sigmoid(logits[:, 1] - logits[:, 0]).numpy()

    weights = {
        name: (layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
        for name, layer in model.named_children()
        if isinstance(layer, nn.Linear)
    }
    return Run(weights, predict, model.grl.lambda_)
