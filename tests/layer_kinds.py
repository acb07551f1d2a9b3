"""One adapter per layer kind, so the layer contract in test_layers.py reads the same for all.

Every kind derives from LayerKind, which holds what the kinds share; a kind overrides only
what its framework does differently. Every adapter works on float32 NumPy arrays and
exposes: make, grad (a vector-Jacobian product through the layer), weight_grad (for a
one-step SGD update), get/set λ, step, roundtrip (serialize and restore) and traces (compile
count over a list of λ values). It is the LayerAdapter that gradrev.testing.certify_layer
drives, plus what gradrev's own tests need.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from gradrev._adapters import adapter

Finish = Callable[[np.ndarray], np.ndarray]  # the backward of a forward already taken


def x64(jax: Any, on: bool) -> Any:
    """A context with jax_enable_x64 on or off (jax.enable_x64 from jax 0.7, experimental before)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        from jax.experimental import enable_x64 as enable
    return enable(on)


def _vjp_later(adapter: Any, fn: Any, x: np.ndarray) -> Finish:
    """Run ``fn`` forward now; return a function that runs the backward with a cotangent later."""
    a = adapter
    if a.name == "torch":
        xt = a.tensor(x).requires_grad_(True)
        y = fn(xt)
        return lambda g: a.numpy(a.torch.autograd.grad(y, xt, a.tensor(g))[0])
    if a.name == "jax":
        _, pullback = a.jax.vjp(fn, a.tensor(x))
        return lambda g: a.numpy(pullback(a.tensor(g))[0])
    xt = a.tensor(x)
    with a.tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
    return lambda g: a.numpy(tape.gradient(y, xt, output_gradients=a.tensor(g)))


class LayerKind:
    """What every layer kind shares: a stateful ``GradientReversal(lambda_, schedule=...)``
    whose λ is ``layer.lambda_``, stepped by ``layer.step()``, differentiated through the
    adapter (gradrev/_adapters.py) of its framework, under one precision set-up."""

    name: str
    needs: str  # the module the layer needs; the kind is skipped where it is missing
    has_state = True
    SETUPS: tuple[str, ...] = ("default",)
    storage = "float64"
    cls: Any  # the layer class
    adapter: Any  # tensors in, gradients out, as NumPy

    def make(self, lambda_: float | None = None, schedule: Any = None) -> Any:
        return self.cls(lambda_, schedule=schedule)

    def supports(self, setup: str, dtype: str) -> bool:
        return True

    def context(self, setup: str) -> Any:
        return contextlib.nullcontext()

    def made_under(self, setup: str, lambda_: float) -> Any:
        return self.make(lambda_)

    def _call(self, layer: Any, x: Any) -> Any:
        return layer(x)

    def forward(self, layer: Any, x: np.ndarray) -> Finish:
        return _vjp_later(self.adapter, lambda a: self._call(layer, a), x)

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.forward(layer, x)(g)

    def get(self, layer: Any) -> float:
        return float(layer.lambda_)

    def set(self, layer: Any, value: float) -> None:
        layer.lambda_ = value

    def step(self, layer: Any) -> float:
        return float(layer.step())

    def roundtrip(self, layer: Any) -> Any:
        """Save the layer's state as users do, and load it into a layer built plainly."""
        raise NotImplementedError(f"{self.name} has no saved state")

    def restore_into_plain(self, layer: Any) -> Any:
        return self.roundtrip(layer)


class TorchKind(LayerKind):
    name = needs = "torch"
    # Precision set-ups: how users cast a model. "bf16-true" is what Lightning's
    # precision="bf16-true" does: bfloat16 default dtype while the model is built, then
    # module.to(torch.bfloat16).
    SETUPS = (
        "default",
        ".half()",
        ".bfloat16()",
        ".double()",
        ".to(float16)",
        ".to(bfloat16)",
        ".to(float64)",
        "bf16-true",
    )
    storage = "float64"

    def __init__(self) -> None:
        import torch

        from gradrev.torch import GradientReversal

        self.torch, self.cls = torch, GradientReversal
        self.adapter = adapter("torch")

    def made_under(self, setup: str, lambda_: float) -> Any:
        t = self.torch
        if setup == "bf16-true":
            default = t.get_default_dtype()
            t.set_default_dtype(t.bfloat16)
            try:
                layer = self.make(lambda_)
            finally:
                t.set_default_dtype(default)
            return layer.to(t.bfloat16)
        layer = self.make(lambda_)
        if setup == "default":
            return layer
        if setup.startswith(".to("):
            return layer.to(getattr(t, setup[4:-1]))
        return getattr(layer, setup[1:-2])()

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        wt = self.torch.tensor(w, requires_grad=True)
        h = wt * self.torch.tensor(x)
        out = layer(h) if layer is not None else h
        (out * self.torch.tensor(c)).sum().backward()
        return wt.grad.numpy()

    def steps(self, layer: Any) -> int:
        return int(layer.steps)

    def roundtrip(self, layer: Any) -> Any:
        buf = io.BytesIO()
        self.torch.save(layer.state_dict(), buf)
        buf.seek(0)
        fresh = self.cls()
        fresh.load_state_dict(self.torch.load(buf, weights_only=True))
        return fresh

    def restore_into(self, layer: Any, target: Any) -> Any:
        buf = io.BytesIO()
        self.torch.save(layer.state_dict(), buf)
        buf.seek(0)
        target.load_state_dict(self.torch.load(buf, weights_only=True))
        return target

    def load_values(self, layer: Any, lam: Any, steps: Any) -> None:
        """λ and the step count written through load_state_dict, as a checkpoint would."""
        t, state = self.torch, layer.state_dict()
        state["lam"] = t.tensor([float(lam)], dtype=t.float64)
        state["steps"] = t.tensor(steps)
        layer.load_state_dict(state)

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


class _JaxKind(LayerKind):
    """JAX precision set-ups: 64-bit types enabled (float64 λ) or not (float32 λ, no float64)."""

    needs = "flax"
    SETUPS = ("x64", "x32")
    storage = "float64"  # in this process the JAX adapter enables x64
    jax: Any

    def supports(self, setup: str, dtype: str) -> bool:
        return not (setup == "x32" and dtype == "float64")

    def context(self, setup: str) -> Any:
        return x64(self.jax, setup == "x64")

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        def loss(w: Any) -> Any:
            h = w * x
            return ((self._call(layer, h) if layer is not None else h) * c).sum()

        return np.asarray(self.jax.grad(loss)(self.jax.numpy.asarray(w)))


class NnxKind(_JaxKind):
    name = "nnx"

    def __init__(self) -> None:
        import jax
        from flax import nnx

        from gradrev.flax.nnx import GradientReversal

        self.jax, self.nnx, self.cls = jax, nnx, GradientReversal
        self.adapter = adapter("jax")

    def steps(self, layer: Any) -> int:
        return int(layer.steps[...])

    def roundtrip(self, layer: Any) -> Any:
        graphdef, state = self.nnx.split(layer)
        state = self.jax.tree.map(lambda a: np.asarray(a).copy(), state)  # as if from disk
        return self.nnx.merge(graphdef, state)

    def restore_into_plain(self, layer: Any) -> Any:
        """As a checkpoint restore does: the saved state, into a layer built without a schedule."""
        state = self.jax.tree.map(lambda a: np.asarray(a).copy(), self.nnx.state(layer))
        fresh = self.cls()
        self.nnx.update(fresh, state)
        return fresh

    def restore_into(self, layer: Any, target: Any) -> Any:
        state = self.jax.tree.map(lambda a: np.asarray(a).copy(), self.nnx.state(layer))
        self.nnx.update(target, state)
        return target

    def load_values(self, layer: Any, lam: Any, steps: Any) -> None:
        """λ and the step count written through nnx.update, as a checkpoint restore would."""
        nnx, state = self.nnx, self.nnx.state(layer)
        pure = nnx.to_pure_dict(state)
        pure["lam"], pure["steps"] = np.asarray(lam), np.asarray(steps)
        nnx.replace_by_pure_dict(state, pure)
        nnx.update(layer, state)

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


class LinenKind(_JaxKind):
    """Linen is stateless: λ is a field, overridden per call; there is no step or schedule."""

    name = "linen"
    has_state = False

    def __init__(self) -> None:
        import jax

        from gradrev.flax.linen import GradientReversal

        self.jax, self.cls = jax, GradientReversal
        self.adapter = adapter("jax")

    def make(self, lambda_: float | None = None, schedule: Any = None) -> Any:
        return {"module": self.cls(1.0 if lambda_ is None else lambda_), "lambda_": None}

    def _call(self, layer: Any, x: Any) -> Any:
        return layer["module"].apply({}, x, lambda_=layer["lambda_"])

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


class KerasKind(LayerKind):
    """The Keras layer on whichever backend KERAS_BACKEND selects in this process."""

    name = needs = "keras"
    # Precision set-ups: the global dtype policy the layer is built under. On JAX, "x32"
    # builds and runs it without jax_enable_x64 (float32 λ, no float64 inputs).
    SETUPS = ("float32", "mixed_float16", "mixed_bfloat16", "bfloat16", "float64", "x32")
    storage = "float64"

    def __init__(self) -> None:
        import keras

        from gradrev.keras import GradientReversal, LambdaScheduler

        self.keras, self.cls, self.scheduler = keras, GradientReversal, LambdaScheduler
        self.backend = keras.backend.backend()
        self.adapter = adapter(self.backend)

    def supports(self, setup: str, dtype: str) -> bool:
        return setup != "x32" or (self.backend == "jax" and dtype != "float64")

    def context(self, setup: str) -> Any:
        if setup == "x32":
            return x64(self.adapter.jax, False)
        return contextlib.nullcontext()

    def made_under(self, setup: str, lambda_: float) -> Any:
        policy = self.keras.config.dtype_policy()
        self.keras.config.set_dtype_policy("float32" if setup == "x32" else setup)
        try:
            return self.make(lambda_)
        finally:
            self.keras.config.set_dtype_policy(policy)

    def fit(self, layer: Any, batches: int, epochs: int, steps_per_execution: int) -> None:
        """Keras fit, one sample per batch, with LambdaScheduler stepping ``layer``."""
        keras = self.keras
        inp = keras.Input((3,))
        model = keras.Model(inp, keras.layers.Dense(1)(layer(inp)))
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
        x = np.ones((batches, 3), np.float32)
        model.fit(x, x[:, :1], batch_size=1, epochs=epochs, verbose=0, callbacks=[self.scheduler()])
        if hasattr(model, "jax_state_sync"):
            model.jax_state_sync()

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        # d/dw sum(c * layer(w * x)) at w, taken as a VJP with cotangent c, times x.
        cot = _vjp_later(self.adapter, lambda h: layer(h) if layer is not None else h, w * x)(c)
        return cot * x

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

    def restore_into(self, layer: Any, target: Any) -> Any:
        return self.roundtrip(layer)  # a .keras file builds its layers from its own config

    def load_values(self, layer: Any, lam: Any, steps: Any) -> None:
        """λ and the step count written through the layer's set_weights."""
        layer.set_weights([np.asarray(lam), np.asarray(steps)])

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
        assert grl.lambda_ == lambdas[-1]
        if self.backend == "torch":
            return 1 + counters["stats"]["unique_graphs"] - before
        return 1 + len(calls)  # the warm-up fit traced once; the 12-λ fit must add nothing


class MlxKind(LayerKind):
    """The mlx.nn layer. MLX differentiates a function (forward and backward in one call), so a
    change "between forward and backward" is one made inside that function, after the layer."""

    name = needs = "mlx"
    # Precision set-ups: the ways an MLX model is cast, on the layer alone or on a model
    # holding it (whose update writes into the layer), and weights loaded from a cast file.
    SETUPS = (
        "default",
        "set_dtype(float16)",
        "set_dtype(bfloat16)",
        "set_dtype(float64)",
        "set_dtype(bfloat16, predicate=None)",
        "model.set_dtype(bfloat16)",
        "apply(astype(float16))",
        "load_weights(bfloat16 file)",
    )
    storage = "float64"

    def __init__(self) -> None:
        import mlx.core as mx
        import mlx.nn as nn

        from gradrev.mlx import GradientReversal

        self.mx, self.nn, self.cls = mx, nn, GradientReversal
        self.adapter = adapter("mlx")

    def made_under(self, setup: str, lambda_: float) -> Any:
        mx, layer = self.mx, self.make(lambda_)
        if setup == "default":
            return layer
        if setup == "model.set_dtype(bfloat16)":
            model = self.nn.Sequential(self.nn.Linear(3, 3), layer)
            model.set_dtype(mx.bfloat16)
            return model.layers[1]
        if setup == "apply(astype(float16))":
            return layer.apply(lambda a: a.astype(mx.float16))
        if setup == "load_weights(bfloat16 file)":
            weights = {k: v.astype(mx.bfloat16) for k, v in layer.parameters().items()}
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "weights.safetensors")
                mx.save_safetensors(path, weights)
                return self.cls(lambda_).load_weights(path)
        dtype = getattr(mx, setup.split("(")[1].split(",")[0].rstrip(")"))
        predicate = {"predicate": None} if "predicate=None" in setup else {}
        layer.set_dtype(dtype, **predicate)
        return layer

    def forward(self, layer: Any, x: np.ndarray) -> Finish:
        """The layer's forward with its state now; changes made before ``finish`` are replayed
        inside the differentiated function, right after the layer's call."""
        mx, a = self.mx, self.adapter
        before = (dict(layer), layer._schedule)

        def finish(g: np.ndarray) -> np.ndarray:
            after = (dict(layer), layer._schedule)

            def fn(x: Any) -> Any:
                dict.update(layer, before[0])
                object.__setattr__(layer, "_schedule", before[1])
                y = layer(x)
                dict.update(layer, after[0])
                object.__setattr__(layer, "_schedule", after[1])
                return y

            with mx.stream(mx.cpu):
                return a.numpy(mx.vjp(fn, [a.tensor(x)], [a.tensor(g)])[1][0])

        return finish

    def weight_grad(self, layer: Any, w: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        mx = self.mx

        def loss(w: Any) -> Any:
            h = w * mx.array(x)
            return ((layer(h) if layer is not None else h) * mx.array(c)).sum()

        return np.array(mx.grad(loss)(mx.array(w)))

    def steps(self, layer: Any) -> int:
        return int(layer.steps.item())

    def roundtrip(self, layer: Any) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "weights.safetensors")
            layer.save_weights(path)
            return self.cls().load_weights(path)

    def restore_into(self, layer: Any, target: Any) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "weights.safetensors")
            layer.save_weights(path)
            return target.load_weights(path)

    def load_values(self, layer: Any, lam: Any, steps: Any, dtype: Any = None) -> None:
        """λ (as its float64 bits) and the step count written through load_weights."""
        import struct

        mx = self.mx
        bits = mx.array(list(struct.pack("<d", float(lam))), mx.uint8)
        weights = {**dict(layer.parameters()), "lam": bits, "steps": mx.array(steps, mx.int32)}
        if dtype is not None:
            weights = {k: v.astype(dtype) for k, v in weights.items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "weights.safetensors")
            mx.save_safetensors(path, weights)
            layer.load_weights(path)

    def traces(self, layer: Any, lambdas: list[float]) -> int:
        mx, count = self.mx, []

        def loss(x: Any) -> Any:
            count.append(1)
            return layer(x).sum()

        grad = mx.compile(mx.grad(loss), inputs=layer.state)
        for value in lambdas:
            layer.lambda_ = value
            assert float(grad(mx.ones(3))[0].item()) == -np.float32(value)
        return len(count)


KINDS: dict[str, type[LayerKind]] = {
    kind.name: kind for kind in (TorchKind, NnxKind, LinenKind, KerasKind, MlxKind)
}
