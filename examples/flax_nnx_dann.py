"""DANN in JAX + Flax NNX with gradrev: two moons as the source, rotated 35° as the target.

python examples/flax_nnx_dann.py [--steps 1000]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gradrev import schedules
from gradrev.flax.nnx import GradientReversal


def moons(n, rng, degrees=0.0):
    t = np.pi * rng.uniform(0, 1, n)
    y = rng.integers(0, 2, n)
    x = np.stack([np.cos(t) + y * (1 - 2 * np.cos(t)), np.sin(t) - y * (2 * np.sin(t) - 0.5)], 1)
    x = x + rng.normal(0, 0.1, (n, 2)) - [0.5, 0.25]
    a = np.deg2rad(degrees)
    x = x @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return jnp.asarray(x, jnp.float32), jnp.asarray(y)


class DANN(nnx.Module):
    def __init__(self, steps: int, rngs: nnx.Rngs) -> None:
        self.f1, self.f2 = nnx.Linear(2, 32, rngs=rngs), nnx.Linear(32, 32, rngs=rngs)
        self.label_head = nnx.Linear(32, 2, rngs=rngs)
        self.grl = GradientReversal(schedule=schedules.dann(total_steps=steps))
        self.d1, self.d2 = nnx.Linear(32, 32, rngs=rngs), nnx.Linear(32, 1, rngs=rngs)

    def features(self, x):
        return jnp.tanh(self.f2(jnp.tanh(self.f1(x))))

    def domain(self, h):
        return self.d2(jax.nn.relu(self.d1(self.grl(h))))[:, 0]


@nnx.jit
def train_step(model, opt, xs, ys, xt):
    def loss_fn(model):
        hs, ht = model.features(xs), model.features(xt)
        logits = model.label_head(hs)
        label_loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
        is_target = jnp.concatenate([jnp.zeros(len(xs)), jnp.ones(len(xt))])
        domain_logits = model.domain(jnp.concatenate([hs, ht]))
        return label_loss + optax.sigmoid_binary_cross_entropy(domain_logits, is_target).mean()

    opt.update(model, nnx.grad(loss_fn)(model))


def main(steps: int) -> None:
    rng = np.random.default_rng(0)
    xs, ys = moons(300, rng)
    xt, yt = moons(300, rng, degrees=35)  # yt is only used to report accuracy
    model = DANN(steps, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(0.005), wrt=nnx.Param)
    for _ in range(steps):
        i, j = rng.integers(0, 300, 32), rng.integers(0, 300, 32)
        train_step(model, opt, xs[i], ys[i], xt[j])
        model.grl.step()  # once per batch, outside jit: λ changes without a retrace

    def accuracy(x, y):
        return float((model.label_head(model.features(x)).argmax(1) == y).mean())

    print(
        f"λ = {model.grl.lambda_:.3f}, source accuracy {accuracy(xs, ys):.3f}, "
        f"target accuracy {accuracy(xt, yt):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    main(parser.parse_args().steps)
