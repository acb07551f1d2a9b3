"""The digits → digits-M conv net, written once over a dozen array operations.

Each framework's module (``digits_torch``, ``digits_jax``, ...) supplies those operations,
its autodiff and its ``GradientReversal`` layer; the arithmetic of the model, the BatchNorm
and the SGD update is this file's, the same in every framework. Convolution is im2col (a
gather of the 3×3 neighbourhoods, then one matrix product), BatchNorm and max pooling are
written out, so no framework kernel with its own algorithm stands between the frameworks.
NumPy is one more set of operations: evaluation runs there, on the trained weights.

The recipe (Ganin et al., JMLR 2016, §5.2.2, with BatchNorm): per-image normalisation of the
input; two blocks conv 3×3 → BatchNorm → ReLU → max-pool 2×2 to the features; a label head
(ReLU MLP, 10 classes) and, behind the GradientReversal layer, a domain head. Source and target
batches pass the BatchNorm separately (each is normalised with its own statistics, and each
updates the running statistics); evaluation uses the running statistics. SGD with momentum
0.9 and the paper's annealing ``lr / (1 + 10 p) ** 0.75``; λ from ``schedules.dann``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from types import SimpleNamespace
from typing import Any

import numpy as np

from gradrev.tools.demo import DigitsConfig

EPS = 1e-5
BN_MOMENTUM = 0.1
MODES = ("source_only", "dann", "control")  # control: the DANN model with λ = 0


@dataclass
class ConvProblem:
    """One seed's data (NumPy, (n, 64, 3) images), batch order and initial weights."""

    x: dict[str, np.ndarray]  # source_train, target_train, source_test, target_test
    y: dict[str, np.ndarray]
    source_batches: np.ndarray  # (steps, batch_size) indices into x["source_train"]
    target_batches: np.ndarray
    init: dict[str, np.ndarray]  # the trained parameters
    running: dict[str, np.ndarray]  # BatchNorm running means and variances
    index: dict[int, np.ndarray]  # image side -> (side², 9) im2col gather indices


@dataclass
class ConvRun:
    """A trained model, as NumPy: its parameters and BatchNorm running statistics."""

    params: dict[str, np.ndarray]
    running: dict[str, np.ndarray]
    final_lambda: float


def patch_index(side: int) -> np.ndarray:
    """For each pixel of a side×side image, its 3×3 neighbours' flat indices; ``side²``
    (one past the image) stands for the zero padding."""
    out = np.full((side * side, 9), side * side, dtype=np.int64)
    for r, c in product(range(side), repeat=2):
        for k, (dr, dc) in enumerate(product((-1, 0, 1), repeat=2)):
            if 0 <= r + dr < side and 0 <= c + dc < side:
                out[r * side + c, k] = (r + dr) * side + c + dc
    return out


def prepare(images: np.ndarray, config: DigitsConfig) -> np.ndarray:
    """(n, 8, 8, 3) images -> (n, 64, 3), per-image normalised if the recipe says so."""
    x = images.reshape(len(images), -1, 3)
    if config.normalize:
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = (x - mean) / (x.std(axis=(1, 2), keepdims=True) + 1e-8)
    return x.astype(config.dtype)


def make_problem(seed: int, config: DigitsConfig, data: Any = None) -> ConvProblem:
    """Seed ``seed``'s batches and He-normal initial weights over ``data`` (``digits_m``)."""
    if data is None:
        from gradrev.tools.demo.digits import digits_m

        data = digits_m(config.data_seed)
    x = {k: prepare(getattr(data, k), config) for k in _SPLITS}
    y = {k: getattr(data, k + "_labels") for k in _SPLITS}
    rng = np.random.default_rng(seed)
    n = config.steps * config.batch_size
    batches = []
    for key in ("source_train", "target_train"):
        m = len(x[key])
        order = np.concatenate([rng.permutation(m) for _ in range(n // m + 1)])
        batches.append(order[:n].reshape(config.steps, config.batch_size))
    c1, c2 = config.channels
    flat, h = 4 * c2, config.hidden
    shapes = {"conv1": (27, c1), "conv2": (9 * c1, c2)}
    shapes |= {"label1": (flat, h), "label2": (h, 10), "domain1": (flat, h), "domain2": (h, 1)}
    init, running = {}, {}
    for name, (fan_in, fan_out) in shapes.items():
        init[name] = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out))
        if name.startswith("conv") and config.batchnorm:
            init[name + "_gamma"], init[name + "_beta"] = np.ones(fan_out), np.zeros(fan_out)
            running[name + "_mean"], running[name + "_var"] = np.zeros(fan_out), np.ones(fan_out)
        else:
            init[name + "_bias"] = np.zeros(fan_out)
    dt = np.dtype(config.dtype)
    return ConvProblem(
        x,
        y,
        batches[0],
        batches[1],
        {k: v.astype(dt) for k, v in init.items()},
        {k: v.astype(dt) for k, v in running.items()},
        {8: patch_index(8), 4: patch_index(4)},
    )


_SPLITS = ("source_train", "target_train", "source_test", "target_test")


def schedule(config: DigitsConfig, mode: str) -> Any:
    """λ's schedule for ``mode``: the DANN ramp, or 0 throughout for source-only (whose
    domain head is never used) and the λ = 0 control."""
    from gradrev import schedules

    lambda_max = config.lambda_max if mode == "dann" else 0.0
    return schedules.dann(config.steps, config.gamma, lambda_max)


def annealed_lr(config: DigitsConfig, step: int) -> float:
    """The paper's ``lr / (1 + 10 p) ** 0.75`` at ``step`` (1-based), in Python float64."""
    return float(config.lr / (1 + 10 * (step - 1) / config.steps) ** 0.75)


def features(
    ops: Any, p: dict[str, Any], running: Any, x: Any, index: Any
) -> tuple[Any, list[Any]]:
    """Images (B, 64, 3) -> features (B, 4·c2), and each BatchNorm's batch (mean, var).

    ``running`` None: training (batch statistics); else evaluation on those statistics.
    """
    batch_stats = []
    side = 8
    for name in ("conv1", "conv2"):
        b, s, c = x.shape
        padded = ops.concat([x, x[:, :1] * 0], 1)
        cols = ops.reshape(ops.take(padded, index[side]), (b * s, 9 * c))
        z = ops.reshape(cols @ p[name], (b, s, -1))
        if name + "_gamma" in p:
            if running is None:
                mean = ops.mean(z, (0, 1))
                var = ops.mean((z - mean) * (z - mean), (0, 1))
                batch_stats.append((mean, var))
            else:
                mean, var = running[name + "_mean"], running[name + "_var"]
            z = (z - mean) / ops.sqrt(var + EPS) * p[name + "_gamma"] + p[name + "_beta"]
        else:
            z = z + p[name + "_bias"]
        z = ops.maximum(z, 0)
        half = side // 2
        x = ops.reshape(
            ops.max(ops.reshape(z, (b, half, 2, half, 2, -1)), (2, 4)), (b, -1, z.shape[-1])
        )
        side = half
    return ops.reshape(x, (x.shape[0], -1)), batch_stats


def mlp(ops: Any, p: dict[str, Any], h: Any, head: str) -> Any:
    hidden = ops.maximum(h @ p[head + "1"] + p[head + "1_bias"], 0)
    return hidden @ p[head + "2"] + p[head + "2_bias"]


def loss(
    ops: Any, p: dict[str, Any], xs: Any, onehot: Any, xt: Any, is_target: Any, grl: Any, index: Any
) -> tuple[Any, list[Any]]:
    """Source cross-entropy (+ the domain loss behind ``grl`` when ``xt`` is not None), and
    the batch statistics in the order the running statistics take them."""
    hs, stats = features(ops, p, None, xs, index)
    logits = mlp(ops, p, hs, "label")
    top = ops.max(logits, (1,), keepdims=True)
    logsumexp = top[:, 0] + ops.log(ops.sum(ops.exp(logits - top), 1))
    total = ops.mean(logsumexp - ops.sum(logits * onehot, 1), (0,))
    if xt is None:
        return total, stats
    ht, target_stats = features(ops, p, None, xt, index)
    d = mlp(ops, p, grl(ops.concat([hs, ht], 0)), "domain")[:, 0]
    softplus = ops.maximum(d, 0) + ops.log1p(ops.exp(-ops.abs(d)))
    return total + ops.mean(softplus - is_target * d, (0,)), stats + target_stats


def update_running(running: dict[str, Any], stats: list[Any]) -> dict[str, Any]:
    """Fold the batch statistics (source's, then target's) into the running statistics."""
    out = dict(running)
    names = ["conv1", "conv2"] * (len(stats) // 2)
    for name, (mean, var) in zip(names, stats):
        for key, value in ((name + "_mean", mean), (name + "_var", var)):
            out[key] = out[key] * (1 - BN_MOMENTUM) + value * BN_MOMENTUM
    return out


def sgd(param: Any, grad: Any, velocity: Any, lr: Any, momentum: float) -> tuple[Any, Any]:
    """SGD with momentum as PyTorch writes it: v ← μ v + g; θ ← θ − lr v."""
    velocity = velocity * momentum + grad
    return param - lr * velocity, velocity


def constants(problem: ConvProblem, config: DigitsConfig, step: int) -> tuple[Any, Any]:
    """One step's source one-hot labels and the domain labels (0 source, 1 target)."""
    ys = problem.y["source_train"][problem.source_batches[step]]
    onehot = np.eye(10, dtype=config.dtype)[ys]
    is_target = np.repeat(np.array([0.0, 1.0], config.dtype), config.batch_size)
    return onehot, is_target


def numpy_like(xp: Any) -> SimpleNamespace:
    """The model's operations from a module with NumPy's API (NumPy, ``jax.numpy``,
    ``mlx.core``)."""
    return SimpleNamespace(
        take=lambda x, i: xp.take(x, i, axis=1),
        concat=xp.concatenate,
        reshape=xp.reshape,
        mean=lambda x, axes: xp.mean(x, axis=axes),
        max=lambda x, axes, keepdims=False: xp.max(x, axis=axes, keepdims=keepdims),
        sum=lambda x, axis: xp.sum(x, axis=axis),
        sqrt=xp.sqrt,
        exp=xp.exp,
        log=xp.log,
        log1p=xp.log1p,
        abs=xp.abs,
        maximum=xp.maximum,
    )


NUMPY = numpy_like(np)


def evaluate(run: ConvRun, problem: ConvProblem, split: str) -> tuple[float, np.ndarray]:
    """Accuracy on ``split`` (NumPy, running statistics) and the features."""
    h, _ = features(NUMPY, run.params, run.running, problem.x[split], problem.index)
    predicted = np.argmax(mlp(NUMPY, run.params, h, "label"), axis=1)
    return float((predicted == problem.y[split]).mean()), h
