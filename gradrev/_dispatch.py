"""Type-based dispatch for [gradrev.reverse][]. Imports no framework."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from gradrev import _lambda, _registry

T = TypeVar("T")

# type(x) -> backend reverse. Filled on first use of each type; later calls pay one lookup.
# The types a framework defines itself live as long as the framework: held strongly. Others
# (a user's Tensor subclass, made per model or per test) are held weakly, so the cache never
# keeps a class alive; they pay a second, weak lookup.
_BACKEND_FOR_TYPE: dict[type, Callable[[Any, Any], Any]] = {}
_BACKEND_FOR_SUBCLASS: weakref.WeakKeyDictionary[type, Callable[[Any, Any], Any]] = (
    weakref.WeakKeyDictionary()
)
_HOMES = frozenset(home for fw in _registry.BUILTINS for home in fw.homes)


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
        if cls.__module__.partition(".")[0] in _HOMES:
            _BACKEND_FOR_TYPE[cls] = fn
        else:
            _BACKEND_FOR_SUBCLASS[cls] = fn
    return fn


def _find(x: Any) -> Callable[[Any, Any], Any]:
    # A backend is a candidate only if the caller already imported its framework, so
    # dispatch never imports one, and only once that framework defines its tensor type:
    # a stub module, or one another thread is still importing, is skipped.
    backend = _registry.backend_of(x)
    if backend is not None:
        return backend.reverse  # type: ignore[no-any-return]
    registered = _registered_backend(x)
    if registered is not None:
        return registered
    raise _lambda.wrong_input(x, "gradrev.reverse", _supported())


def _registered_backend(x: Any) -> Callable[[Any, Any], Any] | None:
    """The ``reverse`` of a backend registered under the ``gradrev.backends`` entry point group."""
    backend = _registry.plugin_backend_of(x)
    return None if backend is None else backend.reverse


def _supported() -> str:
    described = [fw.described for fw in _registry.BUILTINS]
    supported = ", ".join(described[:-1]) + f" or {described[-1]}"
    names = sorted(_registry.entry_points())
    if not names:
        return supported
    return f"{supported}, or a tensor of a registered backend ({', '.join(names)})"
