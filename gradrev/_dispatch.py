"""Type-based dispatch for [gradrev.reverse][]. Imports no framework."""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from gradrev import _lambda

T = TypeVar("T")

_SUPPORTED = "a torch.Tensor, a jax.Array, a tf.Tensor/tf.Variable or an mlx.core.array"

# type(x) -> backend reverse. Filled on first use of each type; later calls pay one lookup.
# The types a framework defines itself live as long as the framework: held strongly. Others
# (a user's Tensor subclass, made per model or per test) are held weakly, so the cache never
# keeps a class alive; they pay a second, weak lookup.
_BACKEND_FOR_TYPE: dict[type, Callable[[Any, Any], Any]] = {}
_BACKEND_FOR_SUBCLASS: weakref.WeakKeyDictionary[type, Callable[[Any, Any], Any]] = (
    weakref.WeakKeyDictionary()
)
_FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "mlx")
# Entry points under these names are ignored: a plug-in may only claim its own framework's
# types, never Python's or NumPy's (whose classes are every object's bases) or a shipped one's.
_NOT_PLUGINS = frozenset({"builtins", "numpy", *_FRAMEWORKS, *sys.stdlib_module_names})


def reverse(x: T, lambda_: Any = 1.0) -> T:
    """Identity forward; backward multiplies the incoming gradient by ``-lambda_``.

    Contract: returns the same tensor type as ``x`` (a view or alias, never a copy);
    the gradient equals PyTorch's ``grad * -lambda_`` bit for bit, in ``x``'s dtype.

    Args:
        x: A ``torch.Tensor``, ``jax.Array`` (tracers included), ``tf.Tensor``/``tf.Variable``
            or ``mlx.core.array``.
            Integer and bool tensors pass through untouched: they carry no gradient.
        lambda_: A finite real Python number, or a 0-d floating tensor of ``x``'s framework
            (a tensor λ changes without recompiling under ``torch.compile``, ``jax.jit``,
            ``tf.function`` and ``mx.compile``). It gets no gradient.

    Returns:
        ``x`` itself in the forward pass, as the framework's own tensor type.

    Raises:
        TypeError: ``x`` is not a tensor of an imported framework, or ``lambda_`` is not a
            real number or floating tensor.
        ValueError: ``lambda_`` is NaN, infinite, or not 0-d.

    Example:
        ```python
        import torch
        import gradrev

        x = torch.ones(3, requires_grad=True)
        gradrev.reverse(x, 0.5).sum().backward()
        assert x.grad.tolist() == [-0.5, -0.5, -0.5]
        ```
    """
    # getattr, not torch.compiler: a stub torch, or one another thread is still importing,
    # has no such attribute yet, and must not break a call on another framework's array.
    compiler = getattr(sys.modules.get("torch"), "compiler", None)
    if compiler is not None and compiler.is_compiling():
        # TorchDynamo guards every global it reads: a lookup in the cache would recompile
        # the caller each time a new type is cached. Resolution alone is trace-constant.
        return _find(x)(x, lambda_)  # type: ignore[no-any-return]
    fn = _BACKEND_FOR_TYPE.get(type(x))
    if fn is None:
        fn = _cached(type(x), x)
    return fn(x, lambda_)  # type: ignore[no-any-return]


def _cached(cls: type, x: Any) -> Callable[[Any, Any], Any]:
    fn = _BACKEND_FOR_SUBCLASS.get(cls)
    if fn is None:
        fn = _find(x)
        if cls.__module__.partition(".")[0] in _FRAMEWORKS:
            _BACKEND_FOR_TYPE[cls] = fn
        else:
            _BACKEND_FOR_SUBCLASS[cls] = fn
    return fn


def _find(x: Any) -> Callable[[Any, Any], Any]:
    # A backend is a candidate only if the caller already imported its framework, so
    # dispatch never imports one, and only once that framework defines its tensor type:
    # a stub module, or one another thread is still importing, is skipped. Plain import
    # statements (not importlib) keep this traceable by TorchDynamo and AutoGraph when the
    # first call happens inside a trace.
    # A torch.fx proxy stands for a tensor while torch.fx.symbolic_trace runs.
    if _instance_of(x, "torch", "Tensor") or _instance_of(x, "torch.fx", "Proxy"):
        from gradrev.backends import torch as torch_backend

        if torch_backend.is_tensor(x):
            return torch_backend.reverse
    if _instance_of(x, "jax", "Array"):
        from gradrev.backends import jax as jax_backend

        if jax_backend.is_tensor(x):
            return jax_backend.reverse
    if _instance_of(x, "tensorflow", "Tensor") or _instance_of(x, "tensorflow", "Variable"):
        from gradrev.backends import tensorflow as tensorflow_backend

        if tensorflow_backend.is_tensor(x):
            return tensorflow_backend.reverse
    if _instance_of(x, "mlx.core", "array"):
        from gradrev.backends import mlx as mlx_backend

        if mlx_backend.is_tensor(x):
            return mlx_backend.reverse
    registered = _registered_backend(x)
    if registered is not None:
        return registered
    raise _lambda.wrong_input(x, "gradrev.reverse", _supported())


def _registered_backend(x: Any) -> Callable[[Any, Any], Any] | None:
    """The ``reverse`` of a backend registered under the ``gradrev.backends`` entry point group.

    An entry point is named after the top-level module of its framework and loaded only if
    that module is the home of one of ``type(x)``'s classes, so it is already imported.
    """
    registered = _entry_points()
    for cls in type(x).__mro__:
        framework = cls.__module__.partition(".")[0]
        point = registered.get(framework)
        if point is not None and sys.modules.get(framework) is not None:
            backend = _load(point)
            try:
                claimed = backend.is_tensor(x)
            except Exception as e:
                raise RuntimeError(
                    f"gradrev.reverse: the backend plug-in {_name(point)} raised in "
                    f"is_tensor({_lambda.describe(x)}): {type(e).__name__}: {e}"
                ) from e
            if claimed:
                return backend.reverse  # type: ignore[no-any-return]
    return None


def _load(point: Any) -> Any:
    """The plug-in's backend module, or an ImportError that names the entry point."""
    try:
        backend = point.load()
    except Exception as e:  # any import-time failure of third-party code
        raise ImportError(
            f"gradrev.reverse: the backend plug-in {_name(point)} failed to load: "
            f"{type(e).__name__}: {e}; fix or uninstall that distribution"
        ) from e
    missing = [
        name for name in ("is_tensor", "reverse") if not callable(getattr(backend, name, None))
    ]
    if missing:
        raise ImportError(
            f"gradrev.reverse: the backend plug-in {_name(point)} is not a gradrev backend: "
            f"it has no {' and no '.join(missing)} (see gradrev.backends.Backend); fix or "
            "uninstall that distribution"
        )
    return backend


def _name(point: Any) -> str:
    dist = getattr(point, "dist", None)
    where = f" of the distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"{point.name!r} (entry point '{point.name} = {point.value}' in gradrev.backends{where})"


@functools.cache
def _entry_points() -> dict[str, Any]:
    """The ``gradrev.backends`` entry points by name; read once, when first needed."""
    from importlib.metadata import entry_points

    points = entry_points(group="gradrev.backends")
    return {point.name: point for point in points if point.name not in _NOT_PLUGINS}


def _supported() -> str:
    names = sorted(_entry_points())
    if not names:
        return _SUPPORTED
    return f"{_SUPPORTED}, or a tensor of a registered backend ({', '.join(names)})"


def _instance_of(x: Any, module: str, name: str) -> bool:
    """``isinstance(x, module.name)`` if that module is imported and defines ``name``."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(x, cls)
