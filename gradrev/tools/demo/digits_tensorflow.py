"""The digits conv net in TensorFlow, with Keras 3's gradrev.keras.GradientReversal."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from gradrev.tools.demo import DigitsConfig, convnet

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import tensorflow as tf

from gradrev.keras import GradientReversal

OPS = SimpleNamespace(
    take=lambda x, i: tf.gather(x, i, axis=1),
    concat=lambda xs, axis: tf.concat(xs, axis),
    reshape=tf.reshape,
    mean=lambda x, axes: tf.reduce_mean(x, axis=axes),
    max=lambda x, axes, keepdims=False: tf.reduce_max(x, axis=axes, keepdims=keepdims),
    sum=lambda x, axis: tf.reduce_sum(x, axis=axis),
    sqrt=tf.sqrt,
    exp=tf.exp,
    log=tf.math.log,
    log1p=tf.math.log1p,
    abs=tf.abs,
    maximum=tf.maximum,
)


def train(
    problem: convnet.ConvProblem,
    config: DigitsConfig,
    mode: str,
    tick: Callable[[], None] = lambda: None,
) -> convnet.ConvRun:
    """Train one model (``mode`` in ``convnet.MODES``); ``tick()`` after every step."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "gradrev demo: the TensorFlow run needs KERAS_BACKEND=tensorflow, "
            f"got {keras.backend.backend()!r}"
        )
    grl = GradientReversal(schedule=convnet.schedule(config, mode))
    params = {k: tf.Variable(v) for k, v in problem.init.items()}
    velocity = {k: tf.Variable(tf.zeros_like(v)) for k, v in params.items()}
    running = {k: tf.Variable(v) for k, v in problem.running.items()}
    index = {k: tf.constant(v) for k, v in problem.index.items()}
    dann = mode != "source_only"

    @tf.function  # type: ignore[untyped-decorator]
    def train_step(xs: Any, onehot: Any, xt: Any, is_target: Any, lr: Any) -> None:
        with tf.GradientTape() as tape:
            values = {k: tf.identity(v) for k, v in params.items()}
            tape.watch(values)
            total, stats = convnet.loss(
                OPS, values, xs, onehot, xt if dann else None, is_target, grl, index
            )
        grads = tape.gradient(total, values)
        for k, v in convnet.update_running(dict(running), stats).items():
            running[k].assign(v)
        for k, p in params.items():
            g = tf.zeros_like(p) if grads[k] is None else tf.convert_to_tensor(grads[k])
            new, vel = convnet.sgd(values[k], g, velocity[k], lr, config.momentum)
            p.assign(new)
            velocity[k].assign(vel)

    xs, xt = problem.x["source_train"], problem.x["target_train"]
    for step, (i, j) in enumerate(zip(problem.source_batches, problem.target_batches)):
        onehot, is_target = convnet.constants(problem, config, step)
        lr = tf.constant(convnet.annealed_lr(config, step + 1), config.dtype)
        train_step(xs[i], onehot, xt[j], is_target, lr)
        grl.step()
        tick()
    return convnet.ConvRun(
        {k: v.numpy() for k, v in params.items()},
        {k: v.numpy() for k, v in running.items()},
        grl.lambda_,
    )
