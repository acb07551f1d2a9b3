"""One adapter per layer kind, so the layer contract in test_layers.py reads the same for all.

Every adapter works on float32 NumPy arrays and exposes: make, grad (a vector-Jacobian
product through the layer), weight_grad (for a one-step SGD update), get/set λ, step,
roundtrip (serialize and restore) and traces (compile count over a list of λ values).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import numpy as np


class TorchKind:
    name = "torch"
    has_state = True

    def __init__(self) -> None:
        import torch

        from gradrev.torch import GradientReversal

        self.torch, self.cls = torch, GradientReversal

    def make(self, lambda_: float = 1.0, schedule: Any = None) -> Any:
        return self.cls(lambda_, schedule=schedule)

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        t = self.torch.tensor(x, requires_grad=True)
        layer(t).backward(self.torch.tensor(g))
        return t.grad.numpy()

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        wt = self.torch.tensor(w, requires_grad=True)
        h = wt * self.torch.tensor(x)
        out = layer(h) if layer is not None else h
        (out * self.torch.tensor(c)).sum().backward()
        return wt.grad.numpy()

    def get(self, layer: Any) -> float:
        return float(layer.lambda_)

    def set(self, layer: Any, value: float) -> None:
        layer.lambda_ = value

    def step(self, layer: Any) -> float:
        return float(layer.step())

    def steps(self, layer: Any) -> int:
        return int(layer.steps)

    def roundtrip(self, layer: Any) -> Any:
        buf = io.BytesIO()
        self.torch.save(layer.state_dict(), buf)
        buf.seek(0)
        fresh = self.cls()
        fresh.load_state_dict(self.torch.load(buf, weights_only=True))
        return fresh

    def traces(self, layer: Any, lambdas: list[float]) -> int:
        from torch._dynamo.testing import CompileCounterWithBackend

        self.torch._dynamo.reset()
        counter = CompileCounterWithBackend("aot_eager")
        f = self.torch.compile(lambda x: layer(x).sum(), backend=counter, fullgraph=True)
        for value in lambdas:
            layer.lambda_ = value
            x = self.torch.ones(3, requires_grad=True)
            f(x).backward()
            assert float(x.grad[0]) == -np.float32(value)
        return int(counter.frame_count)


class NnxKind:
    name = "nnx"
    has_state = True

    def __init__(self) -> None:
        import jax
        from flax import nnx

        from gradrev.flax.nnx import GradientReversal

        self.jax, self.nnx, self.cls = jax, nnx, GradientReversal

    def make(self, lambda_: float = 1.0, schedule: Any = None) -> Any:
        return self.cls(lambda_, schedule=schedule)

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        _, pullback = self.jax.vjp(layer, self.jax.numpy.asarray(x))
        return np.asarray(pullback(self.jax.numpy.asarray(g))[0])

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        def loss(w: Any) -> Any:
            h = w * x
            return ((layer(h) if layer is not None else h) * c).sum()

        return np.asarray(self.jax.grad(loss)(self.jax.numpy.asarray(w)))

    def get(self, layer: Any) -> float:
        return float(layer.lambda_)

    def set(self, layer: Any, value: float) -> None:
        layer.lambda_ = value

    def step(self, layer: Any) -> float:
        return float(layer.step())

    def steps(self, layer: Any) -> int:
        return int(layer.steps[...])

    def roundtrip(self, layer: Any) -> Any:
        graphdef, state = self.nnx.split(layer)
        state = self.jax.tree.map(lambda a: np.asarray(a).copy(), state)  # as if from disk
        return self.nnx.merge(graphdef, state)

    def traces(self, layer: Any, lambdas: list[float]) -> int:
        count = []

        @self.nnx.jit
        def grad(layer: Any, x: Any) -> Any:
            count.append(1)
            return self.jax.grad(lambda x: layer(x).sum())(x)

        for value in lambdas:
            layer.lambda_ = value
            assert float(grad(layer, self.jax.numpy.ones(3))[0]) == -np.float32(value)
        return len(count)


class LinenKind:
    """Linen is stateless: λ is a field, overridden per call; there is no step or schedule."""

    name = "linen"
    has_state = False

    def __init__(self) -> None:
        import jax

        from gradrev.flax.linen import GradientReversal

        self.jax, self.cls = jax, GradientReversal

    def make(self, lambda_: float = 1.0, schedule: Any = None) -> Any:
        return {"module": self.cls(lambda_), "lambda_": None}

    def _call(self, layer: Any, x: Any) -> Any:
        return layer["module"].apply({}, x, lambda_=layer["lambda_"])

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        _, pullback = self.jax.vjp(lambda a: self._call(layer, a), self.jax.numpy.asarray(x))
        return np.asarray(pullback(self.jax.numpy.asarray(g))[0])

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        def loss(w: Any) -> Any:
            h = w * x
            return ((self._call(layer, h) if layer is not None else h) * c).sum()

        return np.asarray(self.jax.grad(loss)(self.jax.numpy.asarray(w)))

    def get(self, layer: Any) -> float:
        lam = layer["lambda_"]
        return float(layer["module"].lambda_ if lam is None else lam)

    def set(self, layer: Any, value: float) -> None:
        layer["lambda_"] = self.jax.numpy.float32(value)

    def traces(self, layer: Any, lambdas: list[float]) -> int:
        count = []
        module = layer["module"]

        @self.jax.jit
        def grad(x: Any, lam: Any) -> Any:
            count.append(1)
            return self.jax.grad(lambda x: module.apply({}, x, lambda_=lam).sum())(x)

        for value in lambdas:
            got = grad(self.jax.numpy.ones(3), self.jax.numpy.float32(value))
            assert float(got[0]) == -np.float32(value)
        return len(count)


class KerasKind:
    """The Keras layer on whichever backend KERAS_BACKEND selects in this process."""

    name = "keras"
    has_state = True

    def __init__(self) -> None:
        import keras

        from gradrev.keras import GradientReversal, LambdaScheduler

        self.keras, self.cls, self.scheduler = keras, GradientReversal, LambdaScheduler
        self.backend = keras.backend.backend()

    def make(self, lambda_: float = 1.0, schedule: Any = None) -> Any:
        return self.cls(lambda_, schedule=schedule)

    def _vjp(self, fn: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.backend == "tensorflow":
            import tensorflow as tf

            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = fn(xt)
            return np.asarray(tape.gradient(y, xt, output_gradients=tf.constant(g)))
        if self.backend == "jax":
            import jax

            _, pullback = jax.vjp(fn, jax.numpy.asarray(x))
            return np.asarray(pullback(jax.numpy.asarray(g))[0])
        import torch

        xt = torch.tensor(x, requires_grad=True)
        fn(xt).backward(torch.tensor(g))
        return xt.grad.numpy()

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._vjp(layer, x, g)

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        # d/dw sum(c * layer(w * x)) at w, taken as a VJP with cotangent c, times x.
        cot = self._vjp(lambda h: layer(h) if layer is not None else h, w * x, c)
        return cot * x

    def get(self, layer: Any) -> float:
        return float(layer.lambda_)

    def set(self, layer: Any, value: float) -> None:
        layer.lambda_ = value

    def step(self, layer: Any) -> float:
        return float(layer.step())

    def steps(self, layer: Any) -> int:
        return int(self.keras.ops.convert_to_numpy(layer.steps.value))

    def roundtrip(self, layer: Any) -> Any:
        inp = self.keras.Input((3,))
        model = self.keras.Model(inp, layer(inp))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = self.keras.saving.load_model(path, safe_mode=True)
        return next(lr for lr in loaded.layers if isinstance(lr, self.cls))

    def traces(self, layer: Any, lambdas: list[float]) -> int:
        """Keras fit over len(lambdas) batches, λ set before each batch: count the compiles."""
        keras, calls = self.keras, []
        values = iter(lambdas)

        class Counting(self.cls):  # type: ignore[misc,name-defined]
            def call(self, x: Any) -> Any:
                calls.append(1)  # runs once per trace (TF, JAX); Dynamo counts for torch
                return super().call(x)

        grl = (self.cls if self.backend == "torch" else Counting)(lambdas[0])

        class SetLambda(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                if hasattr(self.model, "jax_state_sync"):
                    self.model.jax_state_sync()
                grl.lambda_ = next(values)

        inp = keras.Input((3,))
        model = keras.Model(inp, keras.layers.Dense(1)(grl(inp)))
        model.compile(optimizer="sgd", loss="mse", jit_compile=True)
        x = np.ones((len(lambdas), 3), np.float32)
        # Warm-up: shape inference, the first trace, and (Keras on torch) the recompile
        # when parameter grads go from None to tensors. None of it depends on λ.
        model.fit(x[:2], x[:2, :1], batch_size=1, verbose=0)
        if self.backend == "torch":
            from torch._dynamo.utils import counters

            before = counters["stats"]["unique_graphs"]
        calls.clear()
        model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0, callbacks=[SetLambda()])
        if hasattr(model, "jax_state_sync"):
            model.jax_state_sync()
        assert grl.lambda_ == np.float32(lambdas[-1])
        if self.backend == "torch":
            return 1 + counters["stats"]["unique_graphs"] - before
        return 1 + len(calls)  # the warm-up fit traced once; the 12-λ fit must add nothing


KINDS = {"torch": TorchKind, "nnx": NnxKind, "linen": LinenKind, "keras": KerasKind}
