"""Drop-in for Transfer-Learning-Library's ``tllib.modules.grl``.

Before: ``from tllib.modules.grl import WarmStartGradientReverseLayer``. After: ``from
gradrev.compat.tllib import WarmStartGradientReverseLayer``. The warm-start coefficient is
tllib's, computed as tllib computes it (float64, NumPy's exp), past ``max_iters`` too; the
gradient is gradrev's ``grad * -coeff``, which equals tllib's ``grad.neg() * coeff``.

```python
import torch  # noqa: F401  (the drop-in is a torch module)
from gradrev.compat.tllib import WarmStartGradientReverseLayer

grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=1000, auto_step=True)
assert grl.iter_num == 0
```
"""

from __future__ import annotations

from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

try:
    import numpy as np
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "numpy", e) from e

from gradrev import _lambda
from gradrev.compat import _torch

__all__ = ["GradientReverseFunction", "GradientReverseLayer", "WarmStartGradientReverseLayer"]


class GradientReverseFunction:
    """tllib's function: ``GradientReverseFunction.apply(input, coeff=1.0)``.

    Like tllib's, the output is a copy of ``input`` (in-place ops on it leave ``input``
    alone); the gradient is ``grad * -coeff``. ``coeff`` is a float or a one-element tensor.
    """

    @staticmethod
    def apply(input: torch.Tensor, coeff: Any = 1.0) -> torch.Tensor:
        where = "gradrev.compat.tllib.GradientReverseFunction"
        if isinstance(input, torch.Tensor) and not (
            input.is_floating_point() or input.is_complex()
        ):
            _torch.as_lambda(coeff, where)
            return input * 1.0  # tllib's forward: an integer input becomes float32
        return _torch.reverse(input, coeff, where).clone()


class GradientReverseLayer(torch.nn.Module):
    """tllib's layer: ``GradientReverseLayer()(input, coeff=1.0)``."""

    def forward(self, *input: Any) -> torch.Tensor:
        return GradientReverseFunction.apply(*input)

    def __prepare_scriptable__(self) -> Any:
        raise _torch.no_script(
            "gradrev.compat.tllib.GradientReverseLayer",
            "tllib",
            "gradrev.torch.GradientReversal(lambda_)",
        )


class WarmStartGradientReverseLayer(torch.nn.Module):
    """tllib's warm-start layer: λ goes from ``lo`` towards ``hi``, stepped by ``step()``.

    λ = 2 (hi − lo) / (1 + exp(−alpha · iter_num / max_iters)) − (hi − lo) + lo, as tllib
    computes it, and it keeps rising past ``max_iters``. With ``auto_step=True`` each forward
    steps once, after computing λ. Like tllib's, the layer has no ``state_dict`` entries:
    save ``iter_num`` yourself to resume. gradrev's own curve, for its native layers, is
    ``schedules.warm_start(lo, hi, alpha, max_iters, clamp=False)``.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        lo: float = 0.0,
        hi: float = 1.0,
        max_iters: float = 1000.0,
        auto_step: bool = False,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.lo = lo
        self.hi = hi
        self.iter_num = 0
        self.max_iters = max_iters
        self.auto_step = auto_step
        self._coeff()  # bad arguments fail here, not at the first forward

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        coeff = self._coeff()
        if self.auto_step:
            self.step()
        return GradientReverseFunction.apply(input, coeff)

    def step(self) -> None:
        """Increase ``iter_num`` by 1."""
        self.iter_num += 1

    def __prepare_scriptable__(self) -> Any:
        raise _torch.no_script(
            "gradrev.compat.tllib.WarmStartGradientReverseLayer",
            "tllib",
            "gradrev.torch.GradientReversal(schedule=schedules.warm_start(lo, hi, alpha, "
            "max_iters, clamp=False))",
        )

    def _coeff(self) -> float:
        where = "gradrev.compat.tllib.WarmStartGradientReverseLayer"
        for name in ("alpha", "lo", "hi", "max_iters", "iter_num"):
            _lambda.real(getattr(self, name), where, name)
        if self.max_iters <= 0:
            raise ValueError(f"{where}: max_iters must be > 0, got {self.max_iters!r}")
        if not isinstance(self.auto_step, bool):
            raise TypeError(f"{where}: auto_step must be True or False, got {self.auto_step!r}")
        span = self.hi - self.lo
        # tllib's expression and evaluation order; only exp is NumPy's. A negative alpha, which
        # tllib accepts, can overflow exp: then λ is the limit lo − (hi − lo), as in tllib.
        with np.errstate(over="ignore"):
            e = np.exp(-self.alpha * self.iter_num / self.max_iters)
        return float(2.0 * span / (1.0 + e) - span + self.lo)
