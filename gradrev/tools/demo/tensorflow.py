"""The moons DANN in TensorFlow: Keras 3 layers and gradrev.keras.GradientReversal."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from gradrev import schedules
from gradrev.tools.demo import Config
from gradrev.tools.demo.problem import Problem, Run, adam_corrections

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import tensorflow as tf

from gradrev.keras import GradientReversal


def train(
    problem: Problem, config: Config, dann: bool, tick: Callable[[], None] = lambda: None
) -> Run:
    """Train one model; ``tick()`` after every step."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "gradrev demo: the TensorFlow run needs KERAS_BACKEND=tensorflow, "
            f"got {keras.backend.backend()!r}"
        )
    layers = {}
    for name, (kernel, bias) in problem.init.items():
        layer = keras.layers.Dense(kernel.shape[1], dtype=config.dtype)
        layer.build((None, kernel.shape[0]))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        layers[name] = layer
    grl = GradientReversal(schedule=schedules.dann(config.steps, config.gamma, config.lambda_max))
    params = [w for name in sorted(layers) for w in (layers[name].kernel, layers[name].bias)]
    m = [tf.Variable(tf.zeros_like(p)) for p in params]
    v = [tf.Variable(tf.zeros_like(p)) for p in params]

    def features(x: Any) -> Any:
        return tf.tanh(layers["f2"](tf.tanh(layers["f1"](x))))

    def loss_fn(xs: Any, ys: Any, xt: Any) -> Any:
        hs = features(xs)
        logits = layers["label"](hs)
        top = tf.reduce_max(logits, axis=1, keepdims=True)
        logsumexp = top[:, 0] + tf.math.log(tf.reduce_sum(tf.exp(logits - top), axis=1))
        loss = tf.reduce_mean(logsumexp - tf.gather(logits, ys, axis=1, batch_dims=1))
        if dann:
            h = grl(tf.concat([hs, features(xt)], 0))
            d = layers["d2"](tf.nn.relu(layers["d1"](h)))[:, 0]
            is_target = tf.concat([tf.zeros(len(xs), d.dtype), tf.ones(len(xt), d.dtype)], 0)
            softplus = tf.maximum(d, 0) + tf.math.log1p(tf.exp(-tf.abs(d)))
            loss = loss + tf.reduce_mean(softplus - is_target * d)
        return loss

    @tf.function  # type: ignore[untyped-decorator]
    def train_step(xs: Any, ys: Any, xt: Any, c1: Any, c2: Any) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(xs, ys, xt)
        grads = tape.gradient(loss, params)
        for p, g, mi, vi in zip(params, grads, m, v):
            g = tf.zeros_like(p) if g is None else g
            mi.assign(mi * 0.9 + 0.1 * g)
            vi.assign(vi * 0.999 + 0.001 * g * g)
            p.assign(p - config.lr * (mi * c1) / (tf.sqrt(vi * c2) + 1e-8))

    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches), 1):
        c1, c2 = (tf.constant(c, config.dtype) for c in adam_corrections(step))
        train_step(problem.xs[i], problem.ys[i], problem.xt[j], c1, c2)
        grl.step()
        tick()

    def predict(x: np.ndarray) -> np.ndarray:
        logits = layers["label"](features(tf.constant(x)))
        return np.asarray(tf.sigmoid(logits[:, 1] - logits[:, 0]))

    weights = {
        name: (np.asarray(layer.kernel.numpy()), np.asarray(layer.bias.numpy()))
        for name, layer in layers.items()
    }
    return Run(weights, predict, grl.lambda_)
