"""One small adapter per framework, shared by ``gradrev check`` and the conformance suite.

An adapter makes tensors from NumPy arrays, takes a vector-Jacobian product (eagerly or
compiled) and converts back to NumPy, so that one test body reads the same for every
backend. A framework is imported only when its adapter is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradrev import _reference, _registry

Fn = Callable[[Any], Any]


class TorchAdapter:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        from gradrev.backends import torch as ops

        self.ops = ops

    def has_gpu(self) -> bool:
        return bool(self.torch.cuda.is_available())

    def _device(self, device: str) -> str:
        return "cuda" if device == "gpu" else "cpu"

    def tensor(self, a: np.ndarray, device: str = "cpu") -> Any:
        t = self.torch
        if _reference.is_bfloat16(a.dtype):
            out = t.from_numpy(a.view(np.int16).copy()).view(t.bfloat16)
        else:
            out = t.from_numpy(np.array(a))
        return out.to(self._device(device))

    def scalar(self, value: float, dtype: str, device: str = "cpu") -> Any:
        return self.torch.tensor(
            value, dtype=getattr(self.torch, dtype), device=self._device(device)
        )

    def numpy(self, t: Any) -> np.ndarray:
        t = t.detach().cpu()
        if t.dtype == self.torch.bfloat16:
            return t.view(self.torch.int16).numpy().view(_reference.BFLOAT16)
        return t.numpy()

    def vjp(self, fn: Fn, x: Any, g: Any, compiled: bool = False) -> np.ndarray:
        x = x.detach().requires_grad_(True)
        if compiled:
            self.torch.compiler.reset()  # a fresh cache: never silently fall back to eager
            fn = self.torch.compile(fn, fullgraph=True)
        (gx,) = self.torch.autograd.grad(fn(x), x, g)
        return self.numpy(gx)

    def flushes_subnormals(self, device: str = "cpu") -> bool:
        tiny = self.tensor(np.array([1e-40], np.float32), device)
        return bool((tiny * 1.0).item() == 0.0)

    def strided(self, x: Any) -> Any:
        return x.T[::2]

    def shares_memory(self, y: Any, x: Any) -> bool:
        return bool(y.data_ptr() == x.data_ptr())

    def saved_for_backward(self, fn: Fn, x: Any) -> list[int]:
        """The element counts of the tensors autograd saves while ``fn(x)`` runs."""
        sizes: list[int] = []

        def pack(t: Any) -> Any:
            sizes.append(t.numel())
            return t

        with self.torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x.detach().requires_grad_(True))
        return sizes

    def lambda_grad(self, fn: Callable[[Any, Any], Any], x: Any, lam: Any) -> Any:
        """Gradient of ``sum(fn(x, lam))`` with respect to ``lam`` (None when unconnected)."""
        lam = lam.detach().requires_grad_(True)
        out = fn(x.detach().requires_grad_(True), lam).sum()
        return self.torch.autograd.grad(out, lam, allow_unused=True)[0]


class JaxAdapter:
    name = "jax"

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 parity needs 64-bit arrays
        self.jax = jax
        self.jnp = jax.numpy
        from gradrev.backends import jax as ops

        self.ops = ops

    def has_gpu(self) -> bool:
        try:
            return bool(self.jax.devices("gpu"))
        except RuntimeError:
            return False

    def _device(self, device: str) -> Any:
        return self.jax.devices("gpu" if device == "gpu" else "cpu")[0]

    def tensor(self, a: np.ndarray, device: str = "cpu") -> Any:
        return self.jax.device_put(np.array(a), self._device(device))

    def scalar(self, value: float, dtype: str, device: str = "cpu") -> Any:
        return self.jax.device_put(np.asarray(value, _reference.dtype(dtype)), self._device(device))

    def numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def vjp(self, fn: Fn, x: Any, g: Any, compiled: bool = False) -> np.ndarray:
        def grad(x: Any, g: Any) -> Any:
            _, pullback = self.jax.vjp(fn, x)
            return pullback(g)[0]

        if compiled:
            grad = self.jax.jit(grad)
        return self.numpy(grad(x, g))

    def flushes_subnormals(self, device: str = "cpu") -> bool:
        tiny = self.tensor(np.array([1e-40], np.float32), device)
        return bool(np.asarray(tiny * np.float32(1.0))[0] == 0.0)

    def strided(self, x: Any) -> Any:
        return x.T[::2]

    def shares_memory(self, y: Any, x: Any) -> bool:
        return y is x or bool(y.unsafe_buffer_pointer() == x.unsafe_buffer_pointer())

    def lambda_grad(self, fn: Callable[[Any, Any], Any], x: Any, lam: Any) -> Any:
        return self.jax.grad(lambda lam: fn(x, lam).sum())(lam)


class TensorFlowAdapter:
    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        from gradrev.backends import tensorflow as ops

        self.ops = ops

    def has_gpu(self) -> bool:
        return bool(self.tf.config.list_physical_devices("GPU"))

    def _device(self, device: str) -> str:
        return "/GPU:0" if device == "gpu" else "/CPU:0"

    def tensor(self, a: np.ndarray, device: str = "cpu") -> Any:
        with self.tf.device(self._device(device)):
            return self.tf.identity(self.tf.constant(np.array(a)))

    def scalar(self, value: float, dtype: str, device: str = "cpu") -> Any:
        return self.tensor(np.asarray(value, _reference.dtype(dtype)), device)

    def numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t.numpy())

    def vjp(self, fn: Fn, x: Any, g: Any, compiled: bool = False) -> np.ndarray:
        tf = self.tf

        def grad(x: Any, g: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return tape.gradient(y, x, output_gradients=g)

        if compiled:
            grad = tf.function(grad, jit_compile=True)
        return self.numpy(grad(x, g))

    def flushes_subnormals(self, device: str = "cpu") -> bool:
        tiny = self.tensor(np.array([1e-40], np.float32), device)
        return bool((tiny * 1.0).numpy()[0] == 0.0)

    def strided(self, x: Any) -> Any:
        return self.tf.transpose(x)[::2]

    def shares_memory(self, y: Any, x: Any) -> bool:
        return self._address(y) == self._address(x)

    def _address(self, t: Any) -> int:
        # .numpy() may copy; a DLPack export exposes the tensor's own buffer.
        to_dlpack = self.tf.experimental.dlpack.to_dlpack

        class Exported:
            def __dlpack__(self, **kwargs: Any) -> Any:
                return to_dlpack(t)

            def __dlpack_device__(self) -> tuple[int, int]:
                return (1, 0)  # CPU

        return int(np.from_dlpack(Exported()).ctypes.data)

    def lambda_grad(self, fn: Callable[[Any, Any], Any], x: Any, lam: Any) -> Any:
        lam = self.tf.Variable(lam)
        with self.tf.GradientTape() as tape:
            out = self.tf.reduce_sum(fn(x, lam))
        return tape.gradient(out, lam)


class MlxAdapter:
    """MLX on its CPU stream, where float64 exists (MLX's GPU streams have no float64)."""

    name = "mlx"

    complex_dtypes = ("complex64",)  # MLX has no complex128

    def __init__(self) -> None:
        import mlx.core as mx

        self.mx = mx
        from gradrev.backends import mlx as ops

        self.ops = ops

    def has_gpu(self) -> bool:
        return False  # the suite runs MLX on mx.cpu only (see the class docstring)

    def _dtype(self, dt: np.dtype[Any]) -> Any:
        return self.mx.bool_ if dt == np.bool_ else getattr(self.mx, dt.name)

    def tensor(self, a: np.ndarray, device: str = "cpu") -> Any:
        mx = self.mx
        if _reference.is_bfloat16(a.dtype):
            return mx.array(a.view(np.uint16)).view(mx.bfloat16)
        # An explicit dtype: mx.array converts a float64 NumPy array to float32 by default.
        return mx.array(np.array(a), dtype=self._dtype(a.dtype))

    def scalar(self, value: float, dtype: str, device: str = "cpu") -> Any:
        return self.tensor(np.asarray(value, _reference.dtype(dtype)), device)

    def numpy(self, t: Any) -> np.ndarray:
        if t.dtype == self.mx.bfloat16:
            return np.array(t.view(self.mx.uint16)).view(_reference.BFLOAT16)
        return np.array(t)

    def vjp(self, fn: Fn, x: Any, g: Any, compiled: bool = False) -> np.ndarray:
        mx = self.mx

        def grad(x: Any, g: Any) -> Any:
            return mx.vjp(fn, [x], [g])[1][0]

        if compiled:
            grad = mx.compile(grad)
        with mx.stream(mx.cpu):
            return self.numpy(grad(x, g))

    def flushes_subnormals(self, device: str = "cpu") -> bool:
        tiny = self.tensor(np.array([1e-40], np.float32), device)
        with self.mx.stream(self.mx.cpu):
            return bool(self.numpy(tiny * 1.0)[0] == 0.0)

    def strided(self, x: Any) -> Any:
        return x.T[::2]

    def shares_memory(self, y: Any, x: Any) -> bool:
        # NumPy reads an evaluated MLX array through the buffer protocol, without a copy.
        return bool(np.asarray(y).ctypes.data == np.asarray(x).ctypes.data)

    def lambda_grad(self, fn: Callable[[Any, Any], Any], x: Any, lam: Any) -> Any:
        with self.mx.stream(self.mx.cpu):
            return self.mx.grad(lambda lam: fn(x, lam).sum())(lam)


def devices(adapter: Any) -> list[str]:
    """The devices to test ``adapter`` on: the CPU, and the GPU where it has one."""
    has_gpu = getattr(adapter, "has_gpu", None)  # a plug-in's adapter may not say
    return ["cpu", "gpu"] if has_gpu is not None and has_gpu() else ["cpu"]


class OnDevice:
    """A built-in adapter bound to one device, with gradrev.testing.Adapter's face."""

    def __init__(self, adapter: Any, device: str) -> None:
        self.adapter, self.device = adapter, device
        self.name, self.ops = adapter.name, adapter.ops

    def tensor(self, a: Any) -> Any:
        return self.adapter.tensor(a, self.device)

    def scalar(self, value: float, dtype: str) -> Any:
        return self.adapter.scalar(value, dtype, self.device)

    def numpy(self, t: Any) -> Any:
        return self.adapter.numpy(t)

    def vjp(self, fn: Any, x: Any, g: Any, compiled: bool = False) -> Any:
        return self.adapter.vjp(fn, x, g, compiled)

    def flushes_subnormals(self) -> bool:
        return bool(self.adapter.flushes_subnormals(self.device))


def on_device(adapter: Any, device: str) -> Any:
    """``adapter`` with gradrev.testing.Adapter's face on ``device`` ("cpu" or "gpu")."""
    return adapter if device == "cpu" else OnDevice(adapter, device)


# One per built-in framework of gradrev/_registry.py, under its name.
ADAPTERS: dict[str, Any] = {
    "torch": TorchAdapter,
    "jax": JaxAdapter,
    "tensorflow": TensorFlowAdapter,
    "mlx": MlxAdapter,
}


def adapter(name: str) -> Any:
    """The conformance adapter of framework ``name``, built: a plug-in's is its ``Adapter``."""
    if name in ADAPTERS:
        return ADAPTERS[name]()
    return _registry.get(name).load().Adapter()
