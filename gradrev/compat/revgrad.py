"""Drop-in for pytorch-revgrad: ``RevGrad`` and ``revgrad``.

Before: ``from pytorch_revgrad import RevGrad``. After: ``from gradrev.compat.revgrad import
RevGrad``. The gradient is gradrev's ``grad * -alpha``.

```python
import torch
from gradrev.compat.revgrad import RevGrad

x = torch.ones(2, requires_grad=True)
RevGrad(alpha=0.5)(x).sum().backward()
assert x.grad.tolist() == [-0.5, -0.5]
```
"""

# No `from __future__ import annotations`: torch.jit.script reads the annotations.
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev.compat import _torch

__all__ = ["RevGrad", "revgrad"]


class RevGrad(torch.nn.Module):
    """pytorch-revgrad's layer: identity forward, gradient times −alpha backward.

    As in pytorch-revgrad, α is ``torch.tensor(alpha)`` in the plain attribute ``_alpha``
    (float32 for a Python float): it is not in ``state_dict``, so checkpoints load both ways.
    ``alpha`` may be a float or a tensor of one element. It compiles with ``torch.jit.script``,
    as pytorch-revgrad's does (and the scripted module saves, which pytorch-revgrad's does not).
    """

    def __init__(self, alpha: Any = 1.0, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._alpha = _torch.alpha_tensor(alpha, "gradrev.compat.revgrad.RevGrad")

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        return revgrad(input_, self._alpha)


def revgrad(input_: torch.Tensor, alpha_: torch.Tensor | float) -> torch.Tensor:
    """pytorch-revgrad's function: ``input_`` forward, gradient times −``alpha_`` backward.

    ``alpha_`` is a tensor of one element, as pytorch-revgrad needs, or a float.
    """
    if torch.jit.is_scripting():  # type: ignore[attr-defined]
        return _torch.scripted_reverse(input_, alpha_)
    return _torch.reverse(input_, alpha_, "gradrev.compat.revgrad.revgrad")
