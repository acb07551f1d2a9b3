"""JAX backend: a ``jax.custom_vjp`` that reproduces the PyTorch arithmetic bit for bit."""

from __future__ import annotations

import functools
import math
from typing import Any

try:
    import jax
    import jax.numpy as jnp
    import numpy as np
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "jax", e) from e

from gradrev import _lambda
from gradrev.backends import ScheduleMath

__all__ = ["is_tensor", "reverse"]

_FRAMEWORK = "jax"
_REDUCED = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
# The dtypes PyTorch computes grad * -λ in; float8 and float4 have no PyTorch arithmetic.
_DTYPES = frozenset(
    map(jnp.dtype, ("float16", "bfloat16", "float32", "float64", "complex64", "complex128"))
)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of this backend's framework (tracers under jit/vmap/grad included)."""
    return isinstance(x, jax.Array)


def reverse(x: jax.Array, lambda_: float | jax.Array = 1.0) -> jax.Array:
    """Identity forward, gradient times ``-lambda_`` backward.

    Contract: returns ``x`` itself; the only residual kept for backward is ``lambda_``.

    Example:
        ```python
        import jax.numpy as jnp
        from gradrev.backends.jax import reverse

        y = reverse(jnp.ones(3), 0.5)
        ```
    """
    if not isinstance(x, jax.Array):
        raise _lambda.wrong_input(x, "gradrev.reverse", "a jax.Array")
    try:
        dtype = x.dtype
    except NotImplementedError:  # a user's subclass of the abstract jax.Array
        raise _lambda.wrong_input(
            x, "gradrev.reverse", "a jax.Array made by JAX (a concrete array or a tracer)"
        ) from None
    if not jnp.issubdtype(dtype, jnp.inexact):
        _neg_lambda(lambda_, jnp.dtype(jnp.float32))  # still reject a bad λ
        return x  # integers and bools carry no gradient: pass through untouched
    if dtype not in _DTYPES:
        raise _lambda.unsupported_dtype(dtype.name, "gradrev.reverse")
    # private API [jax-core-tracer]: docs/private-apis.md
    if not isinstance(x, jax.core.Tracer):
        # A concrete array outside every transform has no gradient to reverse: the forward
        # is the identity, and only λ needs checking.
        _check(lambda_)
        return x
    # Outside jit, a custom_vjp traces its rule on every call (about 100 µs); the jitted
    # wrapper traces it once per shape and dtype, and λ is its argument, not a constant.
    return _reverse_jit(x, _neg_lambda(lambda_, _opmath(dtype)))  # type: ignore[no-any-return]


@jax.custom_vjp
def _reverse(x: jax.Array, neg_lambda: jax.Array) -> jax.Array:
    return x


def _reverse_fwd(x: jax.Array, neg_lambda: jax.Array) -> tuple[jax.Array, jax.Array]:
    # The primal output goes through the reversal again. Returning plain ``x`` here would
    # tell an outer differentiation (grad of grad) that dR/dx = +1 instead of -λ.
    return _reverse(x, neg_lambda), neg_lambda


def _reverse_bwd(neg_lambda: jax.Array, g: jax.Array) -> tuple[jax.Array, None]:
    return _scale(g, neg_lambda), None


_reverse.defvjp(_reverse_fwd, _reverse_bwd)
_reverse_jit = jax.jit(_reverse)


def _scale(g: jax.Array, neg_lambda: jax.Array) -> jax.Array:
    """``g * neg_lambda`` computed in PyTorch's opmath (float32 for float16 and bfloat16)."""
    if g.dtype in _REDUCED:
        # Under jit, XLA may hand over a float16/bfloat16 g that a fused op upstream (a
        # matmul) kept in float32 ("excess precision"), and the convert below would use
        # those extra bits. Rounding to g's own precision first gives PyTorch's bits.
        info = jnp.finfo(g.dtype)  # type: ignore[no-untyped-call]
        g = jax.lax.reduce_precision(g, exponent_bits=info.nexp, mantissa_bits=info.nmant)
        return (g.astype(jnp.float32) * neg_lambda).astype(g.dtype)
    return g * neg_lambda


def _opmath(dtype: Any) -> Any:
    """The real dtype λ is rounded to before the multiply, as PyTorch's opmath does."""
    dtype = jnp.dtype(dtype)
    if dtype in _REDUCED:
        return jnp.dtype(jnp.float32)
    return jnp.finfo(dtype).dtype  # type: ignore[no-untyped-call]  # complex: the real dtype


def _check(lambda_: Any) -> float | jax.Array:
    """λ validated: a finite float, or a 0-d floating jax.Array."""
    if isinstance(lambda_, jax.Array):
        if lambda_.ndim != 0:
            raise _lambda.not_scalar(lambda_, "gradrev.reverse", _FRAMEWORK)
        if not jnp.issubdtype(lambda_.dtype, jnp.floating):
            raise _lambda.not_floating(lambda_, "gradrev.reverse", _FRAMEWORK)
        return lambda_
    return _lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK)


def _neg_lambda(lambda_: Any, dtype: Any) -> jax.Array | np.ndarray:
    lam = _check(lambda_)
    if isinstance(lam, jax.Array):
        return (-lam).astype(dtype)
    # The sign is part of the key: 0.0 == -0.0, and they must give different zeros.
    return _constant(-lam, math.copysign(1.0, lam), jnp.dtype(dtype))


@functools.lru_cache(maxsize=256)
def _constant(value: float, sign: float, dtype: Any) -> np.ndarray:
    """−λ as a 0-d NumPy array of ``dtype``, made once per value.

    NumPy, not a cached ``jax.Array``: a trace embeds a NumPy constant as a literal, but it
    hoists a captured ``jax.Array`` into an extra argument, so a cached one made in one trace
    broke the next ``jax.export`` ("Too many leaves for PyTreeDef").
    """
    return np.asarray(value, dtype)


# -- What the tools and schedules read (gradrev/_registry.py): devices, schedule math --


def devices() -> list[str]:
    """The devices JAX sees, its default backend's first, then the CPU's."""
    found = [str(d) for d in jax.devices()]
    return found if jax.default_backend() == "cpu" else found + [str(d) for d in jax.devices("cpu")]


def schedule_math() -> ScheduleMath:
    return ScheduleMath(
        lambda s: s.astype(jnp.float32),
        lambda p: jnp.clip(p, 0.0, 1.0),
        jnp.exp,
        lambda s: jnp.maximum(s, 0.0),
    )


def x64_enabled() -> bool:
    """Whether jax_enable_x64 is on now (the flag or a `jax.enable_x64` context)."""
    return bool(jax.config.read("jax_enable_x64"))  # type: ignore[no-untyped-call]
