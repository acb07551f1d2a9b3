"""What the PyTorch drop-ins share: a peer's α, checked and turned into gradrev's λ."""

from __future__ import annotations

import math
import numbers
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev import _lambda

ACCEPTED = "a real number or a real torch.Tensor of one element"


def as_lambda(alpha: Any, where: str) -> float | torch.Tensor:
    """A peer's α as gradrev's λ: a float, or a detached 0-d floating tensor.

    The peers broadcast α, so a tensor of one element of any shape ((), (1,), (1, 1)) is
    accepted, as tadeephuy's README passes ``torch.tensor([1.])``; an integer tensor becomes
    float64, which is exact, as the peers' type promotion is.
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
        return lam if lam.is_floating_point() else lam.to(torch.float64)
    return finite_float(alpha, where)


def finite_float(alpha: Any, where: str) -> float:
    """``float(alpha)`` for a real number or a one-element tensor, refused if not finite."""
    if isinstance(alpha, torch.Tensor):
        alpha = as_lambda(alpha, where)
    elif isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}")
    value = float(alpha)
    # Comparisons, not math.isfinite: under torch.compile a changing Python float becomes a
    # symbolic float, which compares (as a guard) but has no isfinite.
    if not -math.inf < value < math.inf:
        raise ValueError(
            f"{where}: alpha must be finite, got {value!r}; "
            "a NaN or infinite α would silently poison every gradient"
        )
    return value


def alpha_tensor(alpha: Any, where: str) -> torch.Tensor:
    """``torch.tensor(alpha)``, as pytorch-revgrad and tadeephuy's layer store α, checked."""
    if isinstance(alpha, torch.Tensor):
        stored = alpha.detach().clone()
    else:
        if isinstance(alpha, (bool, str, bytes)):
            raise TypeError(f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}")
        try:
            stored = torch.tensor(alpha)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{where}: alpha must be {ACCEPTED}, got {_lambda.describe(alpha)}"
            ) from None
    finite_float(stored, where)  # one real, finite element
    return stored
