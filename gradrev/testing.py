"""Certify a gradrev backend: the conformance checks every backend passes, as a public harness.

A backend author describes the framework with a small adapter (see [Adapter][gradrev.testing.Adapter])
and calls [certify][gradrev.testing.certify], or runs one check per test with
[run_check][gradrev.testing.run_check] and [CHECKS][gradrev.testing.CHECKS]. gradrev
certifies its own backends (torch, jax, tensorflow, mlx) the same way. Needs NumPy, and
ml_dtypes for the bfloat16 rows.

Example:
    ```python
    import torch  # the framework under test

    import gradrev.testing
    from gradrev._adapters import ADAPTERS

    certificate = gradrev.testing.certify(ADAPTERS["torch"](), compiled=False)
    assert certificate.ok
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np

from gradrev import _dispatch, _reference
from gradrev._layer_harness import (
    LAYER_CHECKS,
    LayerAdapter,
    LayerCertificate,
    LayerCheckError,
    certify_layer,
    run_layer_check,
)

__all__ = ["CHECKS", "Adapter", "Certificate", "CertificationError", "certify", "run_check"]
__all__ += [  # the layer conformance harness (gradrev/_layer_harness.py)
    "LAYER_CHECKS",
    "LayerAdapter",
    "LayerCertificate",
    "LayerCheckError",
    "certify_layer",
    "run_layer_check",
]

DTYPES = ("float16", "bfloat16", "float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128")
LAMBDAS = (1.0, 0.0, -0.0, -0.7, 0.3, 2.5, 1e-3)
INT_LAMBDAS = (2, -3, 0, 1)
LARGE = 65_539  # past every SIMD body and unrolled loop: a vectorised path, then its tail


class Adapter(Protocol):
    """What the harness needs to know about a framework: NumPy in and out, and one VJP.

    ``name`` is the framework's name as the backend's errors spell it ("lambda_ must be ...
    a 0-d floating {name} tensor"); ``ops`` is the backend module, with ``is_tensor`` and
    ``reverse``. Optional, where the framework can tell:

    - ``flushes_subnormals() -> bool`` (default False), for a framework whose CPU flushes
      subnormal floats in every operation;
    - ``shares_memory(y, x) -> bool``: whether ``y`` aliases ``x`` (the forward must not copy);
    - ``saved_for_backward(fn, x) -> list[int]``: the element counts of what ``fn(x)`` keeps
      for its backward (only a 0-d λ may be kept);
    - ``complex_dtypes``: the complex dtypes the framework has (default both).
    """

    name: str
    ops: Any

    def tensor(self, a: np.ndarray) -> Any:
        """A tensor with ``a``'s values, shape and dtype (bfloat16 is ml_dtypes')."""

    def scalar(self, value: float, dtype: str) -> Any:
        """A 0-d tensor of ``dtype`` ('float32', 'float64', ...) holding ``value``."""

    def numpy(self, t: Any) -> np.ndarray:
        """A tensor's values as a NumPy array of the same dtype."""

    def vjp(self, fn: Callable[[Any], Any], x: Any, g: Any, compiled: bool = False) -> np.ndarray:
        """The gradient of ``fn`` at ``x`` for the cotangent ``g``, compiled if asked."""


class CertificationError(AssertionError):
    """Some checks failed; the message lists each one and what differed."""


@dataclass
class Certificate:
    """The outcome of each check: ``results[name]`` is None if it passed, else why not."""

    backend: str
    results: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(why is None for why in self.results.values())

    def __str__(self) -> str:
        lines = [f"gradrev certification of {self.backend}:"]
        lines += [f"  {name:<28} {why or 'ok'}" for name, why in self.results.items()]
        return "\n".join(lines)


def certify(adapter: Adapter, *, compiled: bool = True, strict: bool = True) -> Certificate:
    """Run every check in [CHECKS][gradrev.testing.CHECKS] against ``adapter``'s backend.

    Args:
        adapter: the framework's adapter (see [Adapter][gradrev.testing.Adapter]).
        compiled: also check the gradient under the framework's compiler
            (``adapter.vjp(..., compiled=True)``).
        strict: raise [CertificationError][gradrev.testing.CertificationError] if any check
            fails; otherwise only report it.

    Returns:
        A [Certificate][gradrev.testing.Certificate] with each check's outcome.
    """
    certificate = Certificate(str(getattr(adapter, "name", adapter)))
    for name in CHECKS:
        if name == "compiled_parity" and not compiled:
            continue
        try:
            run_check(name, adapter)
        except AssertionError as e:
            certificate.results[name] = str(e) or "failed"
        except Exception as e:  # an incomplete adapter, or a backend that crashes: reported
            certificate.results[name] = f"raised {type(e).__name__}: {e}"
        else:
            certificate.results[name] = None
    if strict and not certificate.ok:
        raise CertificationError(str(certificate))
    return certificate


def run_check(name: str, adapter: Adapter) -> None:
    """Run one check of [CHECKS][gradrev.testing.CHECKS]; raises AssertionError if it fails."""
    check = CHECKS.get(name) if isinstance(name, str) else None
    if check is None:
        raise ValueError(
            f"gradrev.testing.run_check: no check named {name!r}; accepted: {', '.join(CHECKS)}"
        )
    check(adapter)


# -- The checks ---------------------------------------------------------------------------


def _flushes(adapter: Adapter) -> bool:
    flushes = getattr(adapter, "flushes_subnormals", None)
    return bool(flushes()) if flushes is not None else False


def _dtypes() -> list[str]:
    return [d for d in DTYPES if d != "bfloat16" or _reference.BFLOAT16 is not None]


def probe(dtype: str, size: int = 1024) -> np.ndarray:
    """The checks' incoming gradient: random values, ±0, ±inf, NaN, the extremes and subnormals (complex: in both parts)."""
    if dtype.startswith("complex"):
        part = probe(f"float{int(dtype[7:]) // 2}", size)
        out = np.empty(part.shape, dtype)
        out.real, out.imag = part, np.roll(part, 7)
        return out
    dt = _reference.dtype(dtype)
    info = _reference.finfo(dt)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(info.max), float(info.tiny)]
    special += [float(info.smallest_subnormal), -float(info.smallest_subnormal)]
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        return np.concatenate([rng.standard_normal(size) * 3, special]).astype(dt)


def _reversed(adapter: Adapter, g: np.ndarray, lam: Any, compiled: bool = False) -> np.ndarray:
    x = adapter.tensor(np.zeros_like(g))
    return adapter.vjp(lambda a: adapter.ops.reverse(a, lam), x, adapter.tensor(g), compiled)


def _want(g: np.ndarray, lam: float, adapter: Adapter) -> np.ndarray:
    return _reference.reverse_grad(g, lam, flush_subnormals=_flushes(adapter))


def _assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, f"{what}: gradient dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: gradient shape {got.shape}, expected {want.shape}"
    bad = ~_reference.same_bits(got, want)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} elements differ from PyTorch's g * -λ; "
        f"first: got {got[bad][:3]}, expected {want[bad][:3]}"
    )


def _assert_bits(got: np.ndarray, g: np.ndarray, lam: float, adapter: Adapter, what: str) -> None:
    _assert_same(got, _want(g, lam, adapter), what)


def parity_cases(
    adapter: Adapter, g: np.ndarray, compiled: bool = False
) -> Iterator[tuple[str, float, str, np.ndarray, np.ndarray]]:
    """The parity check's cases for the incoming gradient ``g``, computed one by one.

    Each is ``(what, λ, λ's form, the gradient, the canonical bits)``: λ as a Python number
    (float and int), then as a 0-d tensor of each float dtype. ``gradrev check`` reports
    these same cases.
    """
    # Compiling is slow (torch.compile: seconds per call), so compiled: one λ, two forms.
    for lam in (*LAMBDAS, *INT_LAMBDAS) if not compiled else (0.3,):
        what = f"{g.dtype}, λ={lam!r}"
        # An int λ means float(λ): λ = 0 scales by −0.0, as the float does.
        got = _reversed(adapter, g, lam, compiled)
        yield what, float(lam), "number", got, _want(g, float(lam), adapter)
        if isinstance(lam, int):
            continue
        for lam_dtype in _dtypes() if not compiled else ("float32",):
            held = float(np.asarray(lam, _reference.dtype(lam_dtype)))
            if _flushes(adapter) and abs(held) < _reference.finfo(lam_dtype).tiny:
                held = float(np.copysign(0.0, held))
            got = _reversed(adapter, g, adapter.scalar(lam, lam_dtype), compiled)
            form = f"{lam_dtype} tensor"
            yield f"{what} as a 0-d {lam_dtype} tensor", lam, form, got, _want(g, held, adapter)


def _parity(adapter: Adapter, compiled: bool = False) -> None:
    for dtype in _dtypes():
        for what, _, _, got, want in parity_cases(adapter, probe(dtype), compiled):
            _assert_same(got, want, what)


def check_parity(adapter: Adapter) -> None:
    """The gradient has the bits of PyTorch's ``g * -λ`` in every dtype, for λ a number or tensor."""
    _parity(adapter)


def check_compiled_parity(adapter: Adapter) -> None:
    """The same bits under the framework's compiler."""
    _parity(adapter, compiled=True)


def check_complex(adapter: Adapter) -> None:
    """Complex gradients are scaled by the real -λ: never conjugated, in every complex dtype."""
    for dtype in getattr(adapter, "complex_dtypes", COMPLEX_DTYPES):
        g = probe(dtype)
        if _flushes(adapter):
            # A complex multiply adds a ±0 term to each part, which turns a flushed −0.0
            # into +0.0: leave out parts whose product with λ would be subnormal.
            tiny = 4 * float(_reference.finfo(g.real.dtype).tiny)
            for part in (g.real, g.imag):
                part[(np.abs(part) < tiny) & (part != 0)] = 1.0
        for lam in (0.3, -0.7, 1.0):
            _assert_bits(_reversed(adapter, g, lam), g, lam, adapter, f"{dtype}, λ={lam}")


def check_large(adapter: Adapter) -> None:
    """Sizes that reach vectorised kernels, in every dtype, for λ a number and a tensor."""
    for dtype in _dtypes():
        g = probe(dtype, LARGE)
        _assert_bits(_reversed(adapter, g, 0.3), g, 0.3, adapter, f"{g.size} {dtype}")
        held = float(np.float32(0.3))
        got = _reversed(adapter, g, adapter.scalar(0.3, "float32"))
        _assert_bits(got, g, held, adapter, f"{g.size} {dtype}, λ a float32 tensor")


def check_saves_only_lambda(adapter: Adapter) -> None:
    """Nothing but λ is kept for backward: not x, not the output (if the adapter can tell)."""
    saved = getattr(adapter, "saved_for_backward", None)
    if saved is None:
        return
    x = adapter.tensor(np.ones((4, 3), np.float32))
    for lam in (0.3, adapter.scalar(0.3, "float32")):
        sizes = list(saved(lambda a, lam=lam: adapter.ops.reverse(a, lam), x))
        big = [n for n in sizes if n > 1]
        assert not big, f"λ={_short(lam)}: saved tensors of {big} elements for backward"


def check_shapes(adapter: Adapter) -> None:
    """0-d, empty and size-1 dimensions."""
    for shape in [(), (0,), (3, 0, 2), (1,), (7, 1, 5)]:
        g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        _assert_bits(_reversed(adapter, g, 0.3), g, 0.3, adapter, f"shape {shape}")


def check_chained(adapter: Adapter) -> None:
    """Two reversals multiply: (−λ1)(−λ2) = λ1·λ2."""
    g = np.array([1.0, -3.0, 0.5], np.float32)
    x = adapter.tensor(np.zeros(3, np.float32))
    R = adapter.ops.reverse
    got = adapter.vjp(lambda a: R(R(a, 0.5), -4.0), x, adapter.tensor(g))
    assert np.array_equal(got, g * np.float32(-2.0)), f"got {got}, expected {g * -2.0}"


def check_identity_forward(adapter: Adapter) -> None:
    """The forward returns the same bits (−0.0, NaN, subnormals included), as the framework's
    own tensor type, without a copy (if the adapter can tell)."""
    shares = getattr(adapter, "shares_memory", None)
    for dtype in _dtypes():
        a = probe(dtype)
        x = adapter.tensor(a)
        for lam in (0.3, adapter.scalar(0.3, "float32")):
            y = adapter.ops.reverse(x, lam)
            what = f"{dtype}, λ={_short(lam)}"
            assert type(y) is type(x), (
                f"{what}: returned a {type(y).__name__}, not a {type(x).__name__}"
            )
            got = adapter.numpy(y)
            assert got.dtype == a.dtype and got.shape == a.shape, (
                f"{what}: got {got.dtype}{got.shape}"
            )
            bad = ~_reference.same_bits(got, a)
            assert not bad.any(), (
                f"{what}: the forward changed {int(bad.sum())} elements: {got[bad][:3]}"
            )
            # Aliasing in float32 only: some frameworks cannot export a bfloat16 buffer.
            copied = dtype == "float32" and shares is not None and not shares(y, x)
            assert not copied, f"{what}: the forward copied x"


def check_dispatch(adapter: Adapter) -> None:
    """``gradrev.reverse`` picks this backend for the framework's tensors."""
    x = adapter.tensor(np.ones(3, np.float32))
    try:
        found = _dispatch._find(x)
    except TypeError as e:
        raise AssertionError(f"gradrev.reverse does not dispatch this tensor: {e}") from None
    assert found is adapter.ops.reverse, f"gradrev.reverse dispatches to {found!r}"


def check_integers_pass_through(adapter: Adapter) -> None:
    """Integer and bool tensors come back untouched (they carry no gradient)."""
    for dtype in ("int32", "int64", "bool"):
        a = np.array([0, 1, 1], dtype)
        y = adapter.numpy(adapter.ops.reverse(adapter.tensor(a), 0.3))
        assert np.array_equal(y, a) and y.dtype == a.dtype, f"{dtype}: got {y!r}"


def _raises(error: type[Exception], match: str, call: Callable[[], Any], given: str) -> None:
    try:
        call()
    except error as e:
        assert str(e).startswith("gradrev.reverse:"), f"{given}: not gradrev's own error: {e}"
        assert match in str(e), f"{given}: the message does not say {match!r}: {e}"
        return
    except Exception as e:
        raise AssertionError(f"{given}: {type(e).__name__} ({e}), expected {error.__name__}") from e
    raise AssertionError(f"{given}: accepted, expected {error.__name__}")


def check_bad_lambda(adapter: Adapter) -> None:
    """NaN, ±inf, non-scalar and non-real λ get gradrev's own errors, at the call."""
    x = adapter.tensor(np.ones(2, np.float32))
    wide = adapter.tensor(np.ones(3, np.float32))
    integer = adapter.tensor(np.array(2, np.int32))
    cases: list[tuple[type[Exception], str, Any]] = [
        (ValueError, "must be finite", lam) for lam in (np.nan, np.inf, -np.inf, 10**400)
    ]
    cases.append((ValueError, "must be a scalar", wide))
    bad_types: list[Any] = ["0.5", 0.5 + 1j, None, True, [0.5], np.ones(()), integer]
    cases += [(TypeError, adapter.name, lam) for lam in bad_types]
    for error, match, lam in cases:
        _raises(error, match, partial(adapter.ops.reverse, x, lam), f"λ = {_short(lam)}")


def check_foreign_input(adapter: Adapter) -> None:
    """The backend's own ``reverse`` refuses what is not its framework's tensor."""
    for x in (np.ones(3, np.float32), [1.0], 3.0, None):
        _raises(TypeError, "x must be", partial(adapter.ops.reverse, x, 1.0), f"x = {x!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:36] + "..."


CHECKS: dict[str, Callable[[Adapter], None]] = {
    "parity": check_parity,
    "compiled_parity": check_compiled_parity,
    "complex": check_complex,
    "large": check_large,
    "saves_only_lambda": check_saves_only_lambda,
    "shapes": check_shapes,
    "chained": check_chained,
    "identity_forward": check_identity_forward,
    "dispatch": check_dispatch,
    "integers_pass_through": check_integers_pass_through,
    "bad_lambda": check_bad_lambda,
    "foreign_input": check_foreign_input,
}
"""Every check by name; each takes an adapter and raises AssertionError when it fails."""
