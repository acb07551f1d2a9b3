"""Every autodiff path of docs/autodiff.md, one method per path, for each backend.

Each method takes and returns float32/float64 NumPy arrays. ``lam`` is a Python float.
A path a backend refuses raises that framework's own error, which the tests assert.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchPaths:
    name = "torch"

    def __init__(self) -> None:
        import torch

        from gradrev.backends.torch import reverse

        self.torch, self.R = torch, reverse

    def _t(self, a: np.ndarray) -> Any:
        return self.torch.tensor(a)

    def f(self, x: Any, lam: float) -> Any:  # f(x) = sum(sin(R(x)))
        return self.torch.sin(self.R(x, lam)).sum()

    def grad_of_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        xt = self._t(x).requires_grad_(True)
        (g,) = self.torch.autograd.grad(self.f(xt, lam), xt, create_graph=True)
        (gg,) = self.torch.autograd.grad(g.sum(), xt)
        return gg.numpy()

    def hvp(self, x: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
        _, out = self.torch.func.jvp(
            self.torch.func.grad(lambda a: self.f(a, lam)), (self._t(x),), (self._t(v),)
        )
        return out.numpy()

    def hessian(self, x: np.ndarray, lam: float) -> np.ndarray:
        return self.torch.func.hessian(lambda a: self.f(a, lam))(self._t(x)).numpy()

    def jvp(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        _, out = self.torch.func.jvp(lambda a: self.R(a, lam), (self._t(x),), (self._t(t),))
        return out.numpy()

    def forward_accumulator(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        fwad = self.torch.autograd.forward_ad
        with fwad.dual_level():
            y = self.R(fwad.make_dual(self._t(x), self._t(t)), lam)
            return fwad.unpack_dual(y).tangent.numpy()

    def jacfwd(self, x: np.ndarray, lam: float) -> np.ndarray:
        return self.torch.func.jacfwd(lambda a: self.R(a, lam))(self._t(x)).numpy()

    def jacrev(self, x: np.ndarray, lam: float) -> np.ndarray:
        return self.torch.func.jacrev(lambda a: self.R(a, lam))(self._t(x)).numpy()

    def per_example_grads(self, xb: np.ndarray, lam: float) -> np.ndarray:
        grad = self.torch.func.grad(lambda a: self.f(a, lam))
        return self.torch.func.vmap(grad)(self._t(xb)).numpy()

    def checkpointed_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        from torch.utils.checkpoint import checkpoint

        xt = self._t(x).requires_grad_(True)
        checkpoint(lambda a: self.f(a, lam), xt, use_reentrant=False).backward()
        return xt.grad.numpy()

    def loop_grad(self, x: np.ndarray, lam: float, n: int) -> np.ndarray:
        xt = self._t(x).requires_grad_(True)
        y = xt
        for _ in range(n):
            y = self.R(y, lam)
        y.sum().backward()
        return xt.grad.numpy()

    def complex_vjp(self, z: np.ndarray, g: np.ndarray, lam: float) -> np.ndarray:
        zt = self._t(z).requires_grad_(True)
        (out,) = self.torch.autograd.grad(self.R(zt, lam), zt, self._t(g))
        return out.numpy()


class JaxPaths:
    name = "jax"

    def __init__(self) -> None:
        import jax

        from gradrev.backends.jax import reverse

        self.jax, self.jnp, self.R = jax, jax.numpy, reverse

    def f(self, x: Any, lam: float) -> Any:
        return self.jnp.sum(self.jnp.sin(self.R(x, lam)))

    def grad_of_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        g = self.jax.grad(lambda a: self.f(a, lam))
        return np.asarray(self.jax.grad(lambda a: g(a).sum())(x))

    def hvp(self, x: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
        # reverse-over-reverse: a custom_vjp has no JVP, so forward-over-reverse is refused
        g = self.jax.grad(lambda a: self.f(a, lam))
        return np.asarray(self.jax.grad(lambda a: self.jnp.vdot(g(a), v))(x))

    def hessian(self, x: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.jacrev(self.jax.jacrev(lambda a: self.f(a, lam)))(x))

    def jvp(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.jvp(lambda a: self.R(a, lam), (x,), (t,))[1])

    def forward_accumulator(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.linearize(lambda a: self.R(a, lam), x)[1](t))

    def jacfwd(self, x: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.jacfwd(lambda a: self.R(a, lam))(x))

    def jacrev(self, x: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.jacrev(lambda a: self.R(a, lam))(x))

    def per_example_grads(self, xb: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.vmap(self.jax.grad(lambda a: self.f(a, lam)))(xb))

    def checkpointed_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        return np.asarray(self.jax.grad(self.jax.checkpoint(lambda a: self.f(a, lam)))(x))

    def loop_grad(self, x: np.ndarray, lam: float, n: int) -> np.ndarray:
        def loss(a: Any) -> Any:
            y, _ = self.jax.lax.scan(lambda c, _: (self.R(c, lam), None), a, None, length=n)
            return y.sum()

        return np.asarray(self.jax.grad(loss)(x))

    def complex_vjp(self, z: np.ndarray, g: np.ndarray, lam: float) -> np.ndarray:
        _, pullback = self.jax.vjp(lambda a: self.R(a, lam), self.jnp.asarray(z))
        return np.asarray(pullback(self.jnp.asarray(g))[0])


class TensorFlowPaths:
    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        from gradrev.backends.tensorflow import reverse

        self.tf, self.R = tf, reverse

    def f(self, x: Any, lam: float) -> Any:
        return self.tf.reduce_sum(self.tf.sin(self.R(x, lam)))

    def grad_of_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        xv = self.tf.constant(x)
        with self.tf.GradientTape() as outer:
            outer.watch(xv)
            with self.tf.GradientTape() as inner:
                inner.watch(xv)
                y = self.f(xv, lam)
            g = inner.gradient(y, xv)
            s = self.tf.reduce_sum(g)
        return outer.gradient(s, xv).numpy()

    def hvp(self, x: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
        xv, vv = self.tf.constant(x), self.tf.constant(v)
        with self.tf.autodiff.ForwardAccumulator(xv, vv) as acc:
            with self.tf.GradientTape() as tape:
                tape.watch(xv)
                y = self.f(xv, lam)
            g = tape.gradient(y, xv)
        return acc.jvp(g).numpy()

    def hessian(self, x: np.ndarray, lam: float) -> np.ndarray:
        xv = self.tf.constant(x)
        with self.tf.GradientTape() as outer:
            outer.watch(xv)
            with self.tf.GradientTape() as inner:
                inner.watch(xv)
                y = self.f(xv, lam)
            g = inner.gradient(y, xv)
        return outer.jacobian(g, xv).numpy()

    def jvp(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        return self.forward_accumulator(x, t, lam)

    def forward_accumulator(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        xv = self.tf.constant(x)
        with self.tf.autodiff.ForwardAccumulator(xv, self.tf.constant(t)) as acc:
            y = self.R(xv, lam)
        return acc.jvp(y).numpy()

    def jacfwd(self, x: np.ndarray, lam: float) -> np.ndarray:
        cols = [self.forward_accumulator(x, t, lam) for t in np.eye(len(x), dtype=x.dtype)]
        return np.stack(cols, axis=1)

    def jacrev(self, x: np.ndarray, lam: float) -> np.ndarray:
        xv = self.tf.constant(x)
        with self.tf.GradientTape() as tape:
            tape.watch(xv)
            y = self.R(xv, lam)
        return tape.jacobian(y, xv).numpy()

    def per_example_grads(self, xb: np.ndarray, lam: float) -> np.ndarray:
        def one(x: Any) -> Any:
            with self.tf.GradientTape() as tape:
                tape.watch(x)
                y = self.f(x, lam)
            return tape.gradient(y, x)

        return self.tf.vectorized_map(one, self.tf.constant(xb)).numpy()

    def checkpointed_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        xv = self.tf.constant(x)
        body = self.tf.recompute_grad(lambda a: self.f(a, lam))
        with self.tf.GradientTape() as tape:
            tape.watch(xv)
            y = body(xv)
        return tape.gradient(y, xv).numpy()

    def loop_grad(self, x: np.ndarray, lam: float, n: int) -> np.ndarray:
        tf = self.tf

        @tf.function
        def grad(xv: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(xv)
                _, y = tf.while_loop(
                    lambda i, _: i < n, lambda i, c: (i + 1, self.R(c, lam)), (0, xv)
                )
                s = tf.reduce_sum(y)
            return tape.gradient(s, xv)

        return grad(tf.constant(x)).numpy()

    def complex_vjp(self, z: np.ndarray, g: np.ndarray, lam: float) -> np.ndarray:
        zv = self.tf.constant(z)
        with self.tf.GradientTape() as tape:
            tape.watch(zv)
            y = self.R(zv, lam)
        return tape.gradient(y, zv, output_gradients=self.tf.constant(g)).numpy()


class MlxPaths:
    """MLX has no jacfwd, jacrev or hessian: they are built from vmap over jvp and vjp.

    MLX computes float64 sin and cos with float32 accuracy: test_autodiff.rtol allows for it.
    """

    name = "mlx"
    complex_dtypes = ("complex64",)  # MLX has no complex128

    def __init__(self) -> None:
        import mlx.core as mx

        from gradrev.backends.mlx import reverse

        self.mx, self.R = mx, reverse

    def _a(self, a: np.ndarray) -> Any:
        return self.mx.array(a, dtype=getattr(self.mx, a.dtype.name))

    def f(self, x: Any, lam: float) -> Any:
        return self.mx.sin(self.R(x, lam)).sum()

    def grad_of_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        g = self.mx.grad(lambda a: self.f(a, lam))
        return np.array(self.mx.grad(lambda a: g(a).sum())(self._a(x)))

    def hvp(self, x: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
        g = self.mx.grad(lambda a: self.f(a, lam))  # forward over reverse
        return np.array(self.mx.jvp(g, [self._a(x)], [self._a(v)])[1][0])

    def hessian(self, x: np.ndarray, lam: float) -> np.ndarray:
        g = self.mx.grad(lambda a: self.f(a, lam))
        xa, eye = self._a(x), self._a(np.eye(len(x), dtype=x.dtype))
        return np.array(self.mx.vmap(lambda v: self.mx.jvp(g, [xa], [v])[1][0])(eye))

    def jvp(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        return np.array(self.mx.jvp(lambda a: self.R(a, lam), [self._a(x)], [self._a(t)])[1][0])

    def forward_accumulator(self, x: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
        # MLX has one forward-mode API; this column runs it inside mx.compile.
        jvp = self.mx.compile(lambda a, v: self.mx.jvp(lambda b: self.R(b, lam), [a], [v])[1][0])
        return np.array(jvp(self._a(x), self._a(t)))

    def jacfwd(self, x: np.ndarray, lam: float) -> np.ndarray:
        xa, eye = self._a(x), self._a(np.eye(len(x), dtype=x.dtype))
        cols = self.mx.vmap(lambda t: self.mx.jvp(lambda a: self.R(a, lam), [xa], [t])[1][0])(eye)
        return np.array(cols).T

    def jacrev(self, x: np.ndarray, lam: float) -> np.ndarray:
        xa, eye = self._a(x), self._a(np.eye(len(x), dtype=x.dtype))
        return np.array(
            self.mx.vmap(lambda c: self.mx.vjp(lambda a: self.R(a, lam), [xa], [c])[1][0])(eye)
        )

    def per_example_grads(self, xb: np.ndarray, lam: float) -> np.ndarray:
        return np.array(self.mx.vmap(self.mx.grad(lambda a: self.f(a, lam)))(self._a(xb)))

    def checkpointed_grad(self, x: np.ndarray, lam: float) -> np.ndarray:
        return np.array(self.mx.grad(self.mx.checkpoint(lambda a: self.f(a, lam)))(self._a(x)))

    def loop_grad(self, x: np.ndarray, lam: float, n: int) -> np.ndarray:
        def loss(a: Any) -> Any:
            for _ in range(n):
                a = self.R(a, lam)
            return a.sum()

        return np.array(self.mx.grad(self.mx.compile(loss))(self._a(x)))

    def complex_vjp(self, z: np.ndarray, g: np.ndarray, lam: float) -> np.ndarray:
        _, (out,) = self.mx.vjp(lambda a: self.R(a, lam), [self._a(z)], [self._a(g)])
        return np.array(out)


PATHS = {"torch": TorchPaths, "jax": JaxPaths, "tensorflow": TensorFlowPaths, "mlx": MlxPaths}
