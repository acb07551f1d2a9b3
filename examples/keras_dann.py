"""DANN in Keras 3 with gradrev, trained with fit: two moons as the source, rotated 35° as the
target. Runs on any Keras backend (KERAS_BACKEND=tensorflow, jax or torch).

    python examples/keras_dann.py [--steps 1000]
"""

import argparse

import keras
import numpy as np

from gradrev import schedules
from gradrev.keras import GradientReversal, LambdaScheduler


def moons(n, rng, degrees=0.0):
    t = np.pi * rng.uniform(0, 1, n)
    y = rng.integers(0, 2, n)
    x = np.stack([np.cos(t) + y * (1 - 2 * np.cos(t)), np.sin(t) - y * (2 * np.sin(t) - 0.5)], 1)
    x = x + rng.normal(0, 0.1, (n, 2)) - [0.5, 0.25]
    a = np.deg2rad(degrees)
    x = x @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return x.astype("float32"), y


def main(steps: int) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    xs, ys = moons(300, rng)
    xt, yt = moons(300, rng, degrees=35)  # yt is only used to report accuracy

    inp = keras.Input((2,))
    h = keras.layers.Dense(32, activation="tanh")(inp)
    h = keras.layers.Dense(32, activation="tanh")(h)
    label = keras.layers.Dense(2, name="label")(h)
    grl = GradientReversal(schedule=schedules.dann(total_steps=steps), name="grl")
    d = keras.layers.Dense(32, activation="relu")(grl(h))
    domain = keras.layers.Dense(1, name="domain")(d)
    model = keras.Model(inp, {"label": label, "domain": domain})
    model.compile(
        optimizer=keras.optimizers.Adam(0.005),
        loss={
            "label": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "domain": keras.losses.BinaryCrossentropy(from_logits=True),
        },
    )
    # Each batch of 64 holds 32 source and 32 target points; the label loss ignores the target.
    i, j = rng.integers(0, 300, (steps, 32)), rng.integers(0, 300, (steps, 32))
    x = np.concatenate([xs[i], xt[j]], 1).reshape(-1, 2)
    y = {
        "label": np.concatenate([ys[i], np.zeros_like(j)], 1).reshape(-1),
        "domain": np.tile(np.r_[np.zeros(32), np.ones(32)], steps),
    }
    w = {"label": np.tile(np.r_[np.ones(32), np.zeros(32)], steps), "domain": np.ones(64 * steps)}
    model.fit(
        x,
        y,
        sample_weight=w,
        batch_size=64,
        shuffle=False,
        verbose=0,
        callbacks=[LambdaScheduler()],
    )  # steps λ once per batch

    def accuracy(x, y):
        return float((model.predict(x, verbose=0)["label"].argmax(1) == y).mean())

    print(
        f"λ = {grl.lambda_:.3f}, source accuracy {accuracy(xs, ys):.3f}, "
        f"target accuracy {accuracy(xt, yt):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    main(parser.parse_args().steps)
