"""What the PyTorch drop-ins share: a peer's α, checked and turned into gradrev's λ."""

# No `from __future__ import annotations`: torch.jit.script compiles scripted_lambda, and
# cannot read 'torch.Tensor' as a string.
import numbers
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev import _lambda
from gradrev.backends import torch as backend

ACCEPTED = "a real number or a real torch.Tensor of one element"
_WIDE = (torch.float64, torch.complex128)


def as_lambda(alpha: Any, where: str) -> float | torch.Tensor:
    """A peer's α as gradrev's λ: a float, or a detached 0-d floating tensor.

    The peers broadcast α, so a tensor of one element of any shape ((), (1,), (1, 1)) is
    accepted, as tadeephuy's README passes ``torch.tensor([1.])``; an integer tensor becomes
    float64, which is exact, as the peers' type promotion is. A NaN or infinite tensor is
    refused eagerly (it costs a device sync); inside torch.compile it is not checked.
    """
    if isinstance(alpha, torch.Tensor):
        if alpha.numel() != 1:
            raise ValueError(
                f"{where}: alpha must be {ACCEPTED} (one α for the whole gradient), "
                f"got {_lambda.describe(alpha)}"
            )
        if alpha.dtype == torch.bool or alpha.is_complex():
            raise TypeError(f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}")
        lam = alpha.detach().reshape(())
        lam = lam if lam.is_floating_point() else lam.to(torch.float64)
        if _checkable(lam) and not bool(torch.isfinite(lam)):
            raise ValueError(
                f"{where}: alpha must be finite, got a tensor holding {lam.item()!r}; "
                "a NaN or infinite α would silently poison every gradient"
            )
        return lam
    return finite_float(alpha, where)


def _checkable(lam: torch.Tensor) -> bool:
    # Not while a compiler or tracer records the program (reading the value would break the
    # graph or bake it in), and not on the meta device, which holds no value.
    if torch.compiler.is_compiling() or lam.device.type == "meta":
        return False
    return not torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]


def finite_float(alpha: Any, where: str) -> float:
    """``float(alpha)`` for a real number or a one-element tensor, refused if not finite."""
    if isinstance(alpha, torch.Tensor):
        alpha = as_lambda(alpha, where)
    elif isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}")
    return _lambda.finite(alpha, where, "alpha", "α")


def alpha_tensor(alpha: Any, where: str) -> torch.Tensor:
    """``torch.tensor(alpha)``, as pytorch-revgrad and tadeephuy's layer store α, checked."""
    if isinstance(alpha, torch.Tensor):
        stored = alpha.detach().clone()
    else:
        if isinstance(alpha, (bool, str, bytes)):
            raise TypeError(f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}")
        if isinstance(alpha, numbers.Real):
            finite_float(alpha, where)  # 10**400 and NaN get gradrev's error, not torch's
        try:
            stored = torch.tensor(alpha)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise TypeError(
                f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}"
            ) from None
    if isinstance(alpha, numbers.Real):
        _fits(stored, alpha, where)
    finite_float(stored, where)  # one real, finite element
    return stored


def stored(alpha: Any, dtype: torch.dtype, device: torch.device, where: str) -> torch.Tensor:
    """A finite real α as a 0-d tensor of the buffer's dtype, refused if it overflows it."""
    value = finite_float(alpha, where)
    tensor = torch.tensor(value, dtype=dtype, device=device)
    _fits(tensor, value, where)
    return tensor


def _fits(tensor: torch.Tensor, value: Any, where: str) -> None:
    if tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
        raise ValueError(
            f"{where}: alpha = {value!r} overflows the {tensor.dtype} in which α is stored; "
            f"accepted: |alpha| ≤ {torch.finfo(tensor.dtype).max}"
        )


def reverse(x: torch.Tensor, alpha: Any, where: str) -> torch.Tensor:
    """``x`` forward; backward the peers' ``-grad * alpha``, bit for bit.

    A 0-d α or a number gives gradrev's canonical bits, as in the peers. An α with dimensions
    takes part in PyTorch's type promotion there: a float64 α of shape (1,) makes a float32
    gradient compute in float64 and round once to float32. So does this, by reversing x in
    the promoted dtype (two copies in the forward, only in that case).
    """
    lam = as_lambda(alpha, where)
    if (
        isinstance(alpha, torch.Tensor)
        and alpha.ndim > 0
        and isinstance(x, torch.Tensor)
        and (x.is_floating_point() or x.is_complex())
        and x.dtype not in _WIDE
    ):
        wide = torch.promote_types(x.dtype, alpha.dtype)
        if wide in _WIDE:
            return backend.reverse(x.to(wide), lam).to(x.dtype)
    return backend.reverse(x, lam)


def scripted_lambda(alpha: torch.Tensor) -> torch.Tensor:
    """α as the 0-d floating λ of ``torch.ops.gradrev.reverse_lambda_tensor``, for
    ``torch.jit.script`` (the operator checks it: finite, one element, real)."""
    lam = alpha.detach().reshape(())
    if not lam.is_floating_point():
        lam = lam.to(torch.float64)
    return lam


def scripted_reverse(x: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """The drop-in functions under ``torch.jit.script``: gradrev's operators."""
    if isinstance(alpha, float):
        return torch.ops.gradrev.reverse(x, alpha)  # type: ignore[no-any-return]
    return torch.ops.gradrev.reverse_lambda_tensor(x, scripted_lambda(alpha))  # type: ignore[no-any-return]


def no_script(where: str, peer: str, instead: str) -> TypeError:
    """``torch.jit.script`` of a drop-in its peer cannot script either."""
    return TypeError(
        f"{where} cannot be compiled by torch.jit.script, nor can {peer}'s. Use "
        f"torch.jit.trace, torch.export or torch.compile, or {instead}, which scripts"
    )
