"""The canonical backward written in NumPy, for ``gradrev check`` and the conformance suite.

``reverse_grad(g, lam)`` equals PyTorch's ``g * -lam`` bit for bit (the suite proves it);
``flush_subnormals=True`` models a backend whose CPU runs with flush-to-zero and
denormals-are-zero (XLA and TensorFlow do).
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import ml_dtypes

    BFLOAT16: Any = np.dtype(ml_dtypes.bfloat16)
    finfo: Any = ml_dtypes.finfo
except ImportError:  # bfloat16 rows are then skipped by the caller
    BFLOAT16 = None
    finfo = np.finfo

REDUCED = tuple(d for d in (np.dtype(np.float16), BFLOAT16) if d is not None)


def is_bfloat16(dt: Any) -> bool:
    """Whether ``dt`` is bfloat16; False for every dtype when ml_dtypes is missing.

    Not ``dt == BFLOAT16``: NumPy compares a dtype with None as with float64.
    """
    return BFLOAT16 is not None and np.dtype(dt) == BFLOAT16


def dtype(name: str) -> np.dtype[Any]:
    """NumPy dtype for a name such as 'bfloat16' or 'float32'."""
    if name == "bfloat16":
        if BFLOAT16 is None:
            raise ImportError("bfloat16 needs ml_dtypes: pip install ml_dtypes")
        return BFLOAT16
    return np.dtype(name)


def opmath(dt: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype PyTorch computes in: float32 for float16 and bfloat16, else the dtype itself."""
    return np.dtype(np.float32) if dt in REDUCED else np.dtype(dt)


def reverse_grad(g: np.ndarray, lam: float, *, flush_subnormals: bool = False) -> np.ndarray:
    """``cast(opmath(g) * opmath(-lam))`` in ``g``'s dtype."""
    op = opmath(g.dtype)
    neg = np.asarray(-lam, dtype=finfo(op).dtype)  # λ is real even for complex g
    go = g.astype(op)
    if flush_subnormals:  # denormals-are-zero applies to both operands
        go, neg = flush(go), flush(neg)
    with np.errstate(all="ignore"):
        out = go * neg
        if flush_subnormals:
            out = flush(out)
        return out.astype(g.dtype)


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: equal bits, or both NaN (complex: per component).

    NaN sign and payload are not part of the contract: PyTorch itself writes a bfloat16 NaN
    as 0xFFFF or 0x7FC0 depending on whether the element fell in a SIMD body or its tail.
    """
    if a.dtype != b.dtype or a.shape != b.shape:
        raise ValueError(f"cannot compare {a.dtype}{a.shape} with {b.dtype}{b.shape}")
    if np.iscomplexobj(a):
        return same_bits(a.real, b.real) & same_bits(a.imag, b.imag)
    view = f"u{a.dtype.itemsize}"
    equal = np.ascontiguousarray(a).view(view) == np.ascontiguousarray(b).view(view)
    return equal | (np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64)))


def flush(a: np.ndarray) -> np.ndarray:
    """Subnormals to zeros of the same sign, as flush-to-zero hardware does."""
    if np.iscomplexobj(a):
        out = np.empty_like(a)
        out.real, out.imag = flush(a.real), flush(a.imag)
        return out
    tiny = finfo(a.dtype).tiny
    return np.where(np.abs(a) < tiny, np.copysign(np.zeros_like(a), a), a)
