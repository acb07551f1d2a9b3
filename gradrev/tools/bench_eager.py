"""The eager section: what a reversal costs where people debug, outside any compiler.

One case table per framework (``EAGER_CASES``): each entry builds its contenders on an
8-element float32 tensor (the trivial op is ``x * 1.0`` of the same framework), or a 64×32
one for torch's forward plus backward, and names the ratios and their targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradrev.tools.bench_core import compare, repeated, timeit

LAMBDA = 0.3
# (case, contender, reference, target): each a ratio measured in the same rounds.
Ratio = tuple[str, str, str, float]
Cases = tuple[dict[str, Callable[[], Any]], list[Ratio]]


def torch_cases() -> Cases:
    import torch

    import gradrev
    from gradrev.tools.bench_torch import minimal_grl
    from gradrev.torch import GradientReversal

    # One intra-op thread (restored by the caller's run): 8 elements cannot use more, and
    # threads fight on a shared machine.
    torch.set_num_threads(1)
    x = torch.ones(8, requires_grad=True)
    layer = GradientReversal(LAMBDA)
    big = torch.randn(64, 32, requires_grad=True)
    g = torch.randn(64, 32)

    def fwd_bwd(grl: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(grl(big), big, g)

    fns = {
        "x * 1.0": lambda: x * 1.0,
        "reverse": lambda: gradrev.reverse(x, LAMBDA),
        "layer": lambda: layer(x),
        "minimal GRL fwd+bwd": fwd_bwd(lambda t: minimal_grl().apply(t, LAMBDA)),
        "reverse fwd+bwd": fwd_bwd(lambda t: gradrev.reverse(t, LAMBDA)),
        "layer fwd+bwd": fwd_bwd(layer),
    }
    return fns, [
        ("forward: reverse(x, 0.3)", "reverse", "x * 1.0", 2.0),
        ("forward: GradientReversal(0.3)(x)", "layer", "reverse", 1.4),
        ("fwd+bwd 64×32: reverse", "reverse fwd+bwd", "minimal GRL fwd+bwd", 1.15),
        ("fwd+bwd 64×32: the layer", "layer fwd+bwd", "minimal GRL fwd+bwd", 1.25),
    ]


def jax_cases() -> Cases:
    import jax
    import jax.numpy as jnp

    import gradrev

    x = jnp.ones(8, jnp.float32)
    through = jax.grad(lambda x: jnp.sum(gradrev.reverse(x, LAMBDA)))
    trivial = jax.grad(lambda x: jnp.sum(x * 1.0))
    fns = {
        "x * 1.0": lambda: (x * 1.0).block_until_ready(),
        "reverse": lambda: gradrev.reverse(x, LAMBDA).block_until_ready(),
        "grad Σ x * 1.0": lambda: trivial(x).block_until_ready(),
        "grad Σ reverse": lambda: through(x).block_until_ready(),
    }
    return fns, [
        ("forward: reverse(x, 0.3)", "reverse", "x * 1.0", 2.0),
        ("grad(Σ R(x))", "grad Σ reverse", "grad Σ x * 1.0", 1.2),
    ]


def tensorflow_cases() -> Cases:
    import tensorflow as tf

    import gradrev

    x = tf.ones(8)

    def tape(op: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with tf.GradientTape() as t:
                t.watch(x)
                y = tf.reduce_sum(op(x))
            return t.gradient(y, x)

        return run

    fns = {
        "x * 1.0": lambda: x * 1.0,
        "reverse": lambda: gradrev.reverse(x, LAMBDA),
        "tape Σ x * 1.0": tape(lambda t: t * 1.0),
        "tape Σ reverse": tape(lambda t: gradrev.reverse(t, LAMBDA)),
    }
    return fns, [
        ("forward: reverse(x, 0.3)", "reverse", "x * 1.0", 2.5),
        ("GradientTape gradient of Σ R(x)", "tape Σ reverse", "tape Σ x * 1.0", 1.2),
    ]


def mlx_cases() -> Cases:
    import mlx.core as mx

    import gradrev

    x = mx.ones(8)
    through = mx.grad(lambda x: mx.sum(gradrev.reverse(x, LAMBDA)))
    trivial = mx.grad(lambda x: mx.sum(x * 1.0))
    fns = {
        "x * 1.0": lambda: mx.eval(x * 1.0),
        "reverse": lambda: mx.eval(gradrev.reverse(x, LAMBDA)),
        "grad Σ x * 1.0": lambda: mx.eval(trivial(x)),
        "grad Σ reverse": lambda: mx.eval(through(x)),
    }
    return fns, [
        ("forward: reverse(x, 0.3)", "reverse", "x * 1.0", 1.5),
        ("mx.grad(Σ R(x))", "grad Σ reverse", "grad Σ x * 1.0", 1.5),
    ]


# A framework's cases, and its calls per sample: enough that one sample takes milliseconds,
# not the timer's resolution. A new framework's rows are one line here.
EAGER_CASES: dict[str, tuple[Callable[[], Cases], int]] = {
    "torch": (torch_cases, 200),
    "jax": (jax_cases, 50),
    "tensorflow": (tensorflow_cases, 50),
    "mlx": (mlx_cases, 100),
}


def bench_eager(framework: str, rounds: int) -> None:
    """One framework's eager rows (8-element float32 unless the case says otherwise)."""
    make_cases, loops = EAGER_CASES[framework]
    fns, cases = make_cases()
    samples = timeit({name: repeated(fn, loops) for name, fn in fns.items()}, rounds)
    for case, name, ref, limit in cases:
        compare(f"{framework} eager, per call", case, samples, name, ref, limit, per_call=loops)
