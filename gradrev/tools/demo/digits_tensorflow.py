"""The digits conv net in TensorFlow, with Keras 3's gradrev.keras.GradientReversal."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np

from gradrev.tools.demo import DigitsConfig, convnet

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import tensorflow as tf

from gradrev.keras import GradientReversal

__all__ = ["GradientReversal", "context", "trainer"]

OPS = SimpleNamespace(
    pad=lambda x: tf.pad(x, convnet.PAD),
    transpose=tf.transpose,
    concat=lambda xs, axis: tf.concat(xs, axis),
    reshape=tf.reshape,
    mean=lambda x, axes, keepdims=False: tf.reduce_mean(x, axis=axes, keepdims=keepdims),
    max=lambda x, axes, keepdims=False: tf.reduce_max(x, axis=axes, keepdims=keepdims),
    sum=lambda x, axis: tf.reduce_sum(x, axis=axis),
    sqrt=tf.sqrt,
    exp=tf.exp,
    log=tf.math.log,
    log1p=tf.math.log1p,
    abs=tf.abs,
    maximum=tf.maximum,
)


@contextmanager
def context(config: DigitsConfig) -> Iterator[None]:
    """Keras 3 must run on TensorFlow here."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "gradrev demo: the TensorFlow run needs KERAS_BACKEND=tensorflow, "
            f"got {keras.backend.backend()!r}"
        )
    yield


def trainer(
    init: dict[str, np.ndarray], running: dict[str, np.ndarray], grl: Any, config: DigitsConfig,
    dann: bool,
) -> tuple[Callable[..., None], Callable[[], Any]]:  # fmt: skip
    """``convnet.train``'s step and result for TensorFlow (one ``tf.function`` step)."""
    params = {k: tf.Variable(v) for k, v in init.items()}
    velocity = {k: tf.Variable(tf.zeros_like(v)) for k, v in params.items()}
    stats = {k: tf.Variable(v) for k, v in running.items()}

    @tf.function  # type: ignore[untyped-decorator]
    def step(xs: Any, onehot: Any, xt: Any, is_target: Any, lr: Any) -> None:
        with tf.GradientTape() as tape:
            values = {k: tf.identity(v) for k, v in params.items()}
            tape.watch(values)
            total, batch = convnet.loss(
                OPS, values, xs, onehot, xt if dann else None, is_target, grl
            )
        grads = tape.gradient(total, values)
        for k, v in convnet.update_running(dict(stats), batch).items():
            stats[k].assign(v)
        for k, p in params.items():
            g = tf.zeros_like(p) if grads[k] is None else tf.convert_to_tensor(grads[k])
            new, vel = convnet.sgd(values[k], g, velocity[k], lr, config.momentum)
            p.assign(new)
            velocity[k].assign(vel)

    def result() -> Any:
        return {k: v.numpy() for k, v in params.items()}, {k: v.numpy() for k, v in stats.items()}

    return step, result
