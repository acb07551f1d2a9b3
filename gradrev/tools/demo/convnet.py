"""The digits → digits-M conv net, written once over a dozen array operations.

Each framework's module (``digits_torch``, ``digits_jax``, ...) supplies those operations,
its autodiff step and its ``GradientReversal`` layer; the arithmetic of the model, the
BatchNorm and the SGD update is this file's, and so is the training loop (``train``), the same
in every framework. Every seed trains at once: each tensor has the seed as its first axis.
Convolution is im2col (the nine shifted views of the zero-padded images, then one matrix
product), BatchNorm and max pooling are written out, so no framework kernel with its own
algorithm stands between the frameworks. NumPy is one more set of operations: evaluation runs
there, on the trained weights.

The recipe (Ganin et al., JMLR 2016, §5.2.2, with BatchNorm): per-image normalisation of the
input, upsampled (nearest neighbour) to 16×16; two blocks conv 3×3 → BatchNorm → ReLU → max-pool 2×2 to the features; a label head
(ReLU MLP, 10 classes) and, behind the GradientReversal layer, a domain head. Source and target
batches pass the BatchNorm separately (each is normalised with its own statistics, and each
updates the running statistics); evaluation uses the running statistics. SGD with momentum
0.9 and the paper's annealing ``lr / (1 + 10 p) ** 0.75``; λ from ``schedules.dann``.
"""

from __future__ import annotations

from collections.abc import Callable
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
    """One seed's data (NumPy, (n, side, side, 3) images), batch order and initial weights."""

    x: dict[str, np.ndarray]  # source_train, target_train, source_test, target_test
    y: dict[str, np.ndarray]
    source_batches: np.ndarray  # (steps, batch_size) indices into x["source_train"]
    target_batches: np.ndarray
    init: dict[str, np.ndarray]  # the trained parameters
    running: dict[str, np.ndarray]  # BatchNorm running means and variances


@dataclass
class ConvRun:
    """A trained model, as NumPy: its parameters and BatchNorm running statistics."""

    params: dict[str, np.ndarray]
    running: dict[str, np.ndarray]
    final_lambda: float


def prepare(images: np.ndarray, config: DigitsConfig) -> np.ndarray:
    """(n, 8, 8, 3) images -> (n, side, side, 3): upsampled (nearest) by ``config.upsample``,
    per-image normalised if the recipe says so."""
    x = images.repeat(config.upsample, axis=1).repeat(config.upsample, axis=2)
    if config.normalize:
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-8)
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
    flat, h = 4 * c2 * config.upsample**2, config.hidden
    shapes = {"conv1": (27, c1), "conv2": (9 * c1, c2)}
    shapes |= {"label1": (flat, h), "label2": (h, 10), "domain1": (flat, h), "domain2": (h, 1)}
    init, running = {}, {}
    for name, (fan_in, fan_out) in shapes.items():
        init[name] = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out))
        # a conv layer is channels-first: kernel (out, 9·in), per-channel vectors (out, 1)
        side = (fan_out, 1) if name.startswith("conv") else (1, fan_out)
        if name.startswith("conv"):
            init[name] = init[name].T.copy()
        if name.startswith("conv") and config.batchnorm:
            init[name + "_gamma"], init[name + "_beta"] = np.ones(side), np.zeros(side)
            running[name + "_mean"], running[name + "_var"] = np.zeros(side), np.ones(side)
        else:
            init[name + "_bias"] = np.zeros(side)
    dt = np.dtype(config.dtype)
    return ConvProblem(
        x,
        y,
        batches[0],
        batches[1],
        {k: v.astype(dt) for k, v in init.items()},
        {k: v.astype(dt) for k, v in running.items()},
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


def features(ops: Any, p: dict[str, Any], running: Any, x: Any) -> tuple[Any, list[Any]]:
    """Images (S, 3, B, side, side) of S seeds, channels first -> features (S, B, F), and each
    BatchNorm's batch (mean, var). Every parameter has the seeds as its first axis.

    ``running`` None: training (batch statistics); else evaluation on those statistics.
    """
    batch_stats = []
    for name in ("conv1", "conv2"):
        s, c, b, side, _ = x.shape
        # im2col from nine shifted views of the zero-padded images (a slice's gradient is a
        # pad: no scatter), then one matrix product per seed, kernel first: (out, 9·in) @
        # (9·in, pixels) is several times faster than pixels-first on a CPU
        padded = ops.pad(x)
        shifted = [padded[..., r : r + side, q : q + side] for r, q in product(range(3), repeat=2)]
        z = p[name] @ ops.reshape(ops.concat(shifted, 1), (s, 9 * c, b * side * side))
        if name + "_gamma" in p:
            if running is None:
                mean = ops.mean(z, (2,), keepdims=True)
                var = ops.mean((z - mean) * (z - mean), (2,), keepdims=True)
                batch_stats.append((mean, var))
            else:
                mean, var = running[name + "_mean"], running[name + "_var"]
            z = (z - mean) / ops.sqrt(var + EPS) * p[name + "_gamma"] + p[name + "_beta"]
        else:
            z = z + p[name + "_bias"]
        z = ops.maximum(z, 0)
        half = side // 2
        x = ops.max(ops.reshape(z, (s, -1, b, half, 2, half, 2)), (4, 6))
    # pixel-major, channel-minor features
    return ops.reshape(ops.transpose(x, (0, 2, 3, 4, 1)), (x.shape[0], x.shape[2], -1)), batch_stats


def mlp(ops: Any, p: dict[str, Any], h: Any, head: str) -> Any:
    hidden = ops.maximum(h @ p[head + "1"] + p[head + "1_bias"], 0)
    return hidden @ p[head + "2"] + p[head + "2_bias"]


def loss(
    ops: Any, p: dict[str, Any], xs: Any, onehot: Any, xt: Any, is_target: Any, grl: Any
) -> tuple[Any, list[Any]]:
    """The sum over seeds of each seed's source cross-entropy (+ its domain loss behind
    ``grl`` when ``xt`` is not None), and the batch statistics in the order the running
    statistics take them. A seed's parameters get only their own seed's gradient."""
    hs, stats = features(ops, p, None, xs)
    logits = mlp(ops, p, hs, "label")
    top = ops.max(logits, (2,), keepdims=True)
    logsumexp = top[..., 0] + ops.log(ops.sum(ops.exp(logits - top), 2))
    per_seed = ops.mean(logsumexp - ops.sum(logits * onehot, 2), (1,))
    if xt is not None:
        ht, target_stats = features(ops, p, None, xt)
        stats = stats + target_stats
        d = mlp(ops, p, grl(ops.concat([hs, ht], 1)), "domain")[..., 0]
        softplus = ops.maximum(d, 0) + ops.log1p(ops.exp(-ops.abs(d)))
        per_seed = per_seed + ops.mean(softplus - is_target * d, (1,))
    return ops.sum(per_seed, 0), stats


def update_running(running: dict[str, Any], stats: list[Any]) -> dict[str, Any]:
    """Fold the batch statistics (source's, then target's) into the running statistics."""
    out = dict(running)
    names = ["conv1", "conv2"] * (len(stats) // 2)
    for name, (mean, var) in zip(names, stats):
        for key, value in ((name + "_mean", mean), (name + "_var", var)):
            out[key] = out[key] * (1 - BN_MOMENTUM) + value * BN_MOMENTUM
    return out


def inputs(problems: list[ConvProblem], config: DigitsConfig, step: int) -> tuple[Any, ...]:
    """One step's NumPy inputs for every seed: source images (S, 3, B, side, side), one-hot
    labels (S, B, 10), target images, domain labels (2B,) (0 source, 1 target), and the step
    size (0-d)."""
    xs = channels_first(np.stack([p.x["source_train"][p.source_batches[step]] for p in problems]))
    xt = channels_first(np.stack([p.x["target_train"][p.target_batches[step]] for p in problems]))
    ys = np.stack([p.y["source_train"][p.source_batches[step]] for p in problems])
    onehot = np.eye(10, dtype=config.dtype)[ys]
    is_target = np.repeat(np.array([0.0, 1.0], config.dtype), config.batch_size)
    return xs, onehot, xt, is_target, np.asarray(annealed_lr(config, step + 1), config.dtype)


def channels_first(images: np.ndarray) -> np.ndarray:
    """(S, B, side, side, 3) -> (S, 3, B, side, side), contiguous."""
    return np.ascontiguousarray(images.transpose(0, 4, 1, 2, 3))


def train(
    framework: Any,
    problems: list[ConvProblem],
    config: DigitsConfig,
    mode: str,
    tick: Callable[[], None] = lambda: None,
) -> list[ConvRun]:
    """Train one model per problem (seed), all seeds at once, in ``framework`` (a
    ``digits_<backend>`` module); ``mode`` in ``MODES``; ``tick()`` after every step.

    The framework supplies ``context(config)`` (its settings for the run),
    ``GradientReversal`` and ``trainer(init, running, grl, config, dann)``, which returns
    ``step(xs, onehot, xt, is_target, lr)`` (one SGD step on the framework's copy of the
    weights) and ``result()`` (the weights and running statistics, as NumPy).
    """
    with framework.context(config):
        grl = framework.GradientReversal(schedule=schedule(config, mode))
        init = {k: np.stack([p.init[k] for p in problems]) for k in problems[0].init}
        running = {k: np.stack([p.running[k] for p in problems]) for k in problems[0].running}
        step, result = framework.trainer(init, running, grl, config, mode != "source_only")
        for k in range(config.steps):
            step(*inputs(problems, config, k))
            grl.step()
            tick()
        params, running = result()
        final = float(grl.lambda_)
    return [
        ConvRun({k: v[s] for k, v in params.items()}, {k: v[s] for k, v in running.items()}, final)
        for s in range(len(problems))
    ]


def sgd(param: Any, grad: Any, velocity: Any, lr: Any, momentum: float) -> tuple[Any, Any]:
    """SGD with momentum as PyTorch writes it: v ← μ v + g; θ ← θ − lr v."""
    velocity = velocity * momentum + grad
    return param - lr * velocity, velocity


PAD = ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1))  # the image sides of (S, c, B, side, side)


def numpy_like(xp: Any) -> SimpleNamespace:
    """The model's operations from a module with NumPy's API (NumPy, ``jax.numpy``,
    ``mlx.core``)."""
    return SimpleNamespace(
        pad=lambda x: xp.pad(x, PAD),
        transpose=xp.transpose,
        concat=xp.concatenate,
        reshape=xp.reshape,
        mean=lambda x, axes, keepdims=False: xp.mean(x, axis=axes, keepdims=keepdims),
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
    params = {k: v[None] for k, v in run.params.items()}
    running = {k: v[None] for k, v in run.running.items()}
    h, _ = features(NUMPY, params, running, channels_first(problem.x[split][None]))
    predicted = np.argmax(mlp(NUMPY, params, h, "label")[0], axis=1)
    return float((predicted == problem.y[split]).mean()), h[0]
