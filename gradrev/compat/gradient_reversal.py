"""Drop-in for the two packages that install as ``gradient_reversal``.

- torch-gradient-reversal (PyPI): ``GradientReversalLayer(alpha=1.0)`` with its ``alpha``
  buffer, so its checkpoints load, ``set_alpha``, and ``gradient_reversal(x, alpha=1.0)``.
- tadeephuy's GradientReversal (GitHub): ``GradientReversal(alpha)`` and ``revgrad(x, alpha)``,
  α a float or a tensor of one element such as ``torch.tensor([1.])``.

Before: ``from gradient_reversal import ...``. After: ``from gradrev.compat.gradient_reversal
import ...``. The gradient is gradrev's ``grad * -alpha``.

```python
import torch  # noqa: F401  (the drop-in is a torch module)
from gradrev.compat.gradient_reversal import GradientReversalLayer

grl = GradientReversalLayer(alpha=1.0)
assert sorted(grl.state_dict()) == ["alpha"]  # the peer's checkpoint key
```
"""

# No `from __future__ import annotations`: torch.jit.script reads the annotations.
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev.backends import torch as backend
from gradrev.compat import _torch

__all__ = ["GradientReversal", "GradientReversalLayer", "gradient_reversal", "revgrad"]


class GradientReversalLayer(torch.nn.Module):
    """torch-gradient-reversal's layer, with α in the float32 buffer ``alpha``.

    The buffer is in ``state_dict`` under the peer's key and moves with ``.to()``. λ is read
    from it as a tensor, so changing α never recompiles and never syncs with the device.
    """

    alpha: torch.Tensor

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        where = "gradrev.compat.gradient_reversal.GradientReversalLayer"
        self.register_buffer(
            "alpha", _torch.stored(alpha, torch.float32, torch.device("cpu"), where)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # type: ignore[attr-defined]
            return torch.ops.gradrev.reverse_lambda_tensor(x, self.alpha)  # type: ignore[no-any-return]
        return backend.reverse(x, self.alpha)

    def set_alpha(self, alpha: float) -> None:
        """Set α (the buffer keeps its dtype and device); a backward already recorded keeps
        the α its forward saw, eagerly and under `torch.compile`, as the peer's does."""
        where = "GradientReversalLayer.set_alpha"
        # A new tensor, not fill_(): the forward saved the old one for its backward.
        self.alpha = _torch.stored(alpha, self.alpha.dtype, self.alpha.device, where)

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha):.4f}"


def gradient_reversal(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """torch-gradient-reversal's function: ``x`` forward, gradient times −``alpha`` backward.

    ``alpha`` is a float or a one-element tensor; under ``torch.jit.script``, a float.
    """
    if torch.jit.is_scripting():  # type: ignore[attr-defined]
        return torch.ops.gradrev.reverse(x, alpha)  # type: ignore[no-any-return]
    where = "gradrev.compat.gradient_reversal.gradient_reversal"
    return backend.reverse(x, _torch.as_lambda(alpha, where))


class GradientReversal(torch.nn.Module):
    """tadeephuy's layer: ``GradientReversal(alpha)``, α required.

    As there, α is ``torch.tensor(alpha)`` in the plain attribute ``alpha``, not in
    ``state_dict``; a tensor of one element, such as ``torch.tensor([1.])``, is accepted.
    """

    def __init__(self, alpha: Any) -> None:
        super().__init__()
        self.alpha = _torch.alpha_tensor(alpha, "gradrev.compat.gradient_reversal.GradientReversal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return revgrad(x, self.alpha)


def revgrad(x: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """tadeephuy's function: ``x`` forward, gradient times −``alpha`` backward."""
    if torch.jit.is_scripting():  # type: ignore[attr-defined]
        return _torch.scripted_reverse(x, alpha)
    return _torch.reverse(x, alpha, "gradrev.compat.gradient_reversal.revgrad")
