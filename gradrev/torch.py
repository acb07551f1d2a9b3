"""PyTorch layer: ``gradrev.torch.GradientReversal``.

```python
import torch
from gradrev import schedules
from gradrev.torch import GradientReversal

grl = GradientReversal(schedule=schedules.dann(total_steps=100))
grl.step()
assert round(grl.lambda_, 4) == 0.0500
```
"""

from collections.abc import Callable
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev import _layer
from gradrev.backends import torch as backend

__all__ = ["GradientReversal"]

_WHERE = "gradrev.torch.GradientReversal"


class GradientReversal(torch.nn.Module):
    """Identity forward, gradient times −λ backward, with λ held in a float64 buffer.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype, whatever the module is cast to: `.half()`, `.bfloat16()`, `.to(dtype)` and
    precision plugins move λ but never round it. λ (buffer `lam`, float64 of shape (1,)) and
    the step count (buffer `steps`) are in `state_dict`, the schedule in its extra state. Changing λ never
    recompiles `torch.compile`, and a backward always uses the λ its forward saw.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on.
    """

    # Annotations evaluated at import (no `from __future__ import annotations` here): the
    # TorchScript compiler reads them, and cannot read 'torch.Tensor' as a string.
    lam: torch.Tensor
    steps: torch.Tensor
    # The setter is Python (it checks λ): TorchScript compiles forward only.
    __jit_unused_properties__ = ("lambda_",)

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        super().__init__()
        value = _layer.initial_lambda(lambda_, schedule, _WHERE)
        self._lambda_init = value
        self.schedule = schedule
        # Shape (1,), not (): TorchDynamo treats a 0-d float64 input like a Python float and
        # recompiles once its value changes.
        self.register_buffer("lam", torch.tensor([value], dtype=torch.float64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The backward must use this forward's λ even if step() or `lambda_ =` rewrites the
        # buffer in place before backward() runs, so it gets a copy. The copy is already
        # rounded to the dtype the backward computes in (float32 below float64), exactly as
        # PyTorch rounds a Python float, which saves the backward that conversion.
        wide = x.dtype in (torch.float64, torch.complex128)
        lam = self.lam.to(torch.float64 if wide else torch.float32, copy=True).view(())
        # torch.jit.script compiles only this branch (backend.reverse is Python dispatch):
        # the operator that torch.export and torch.jit.trace record too.
        if torch.jit.is_scripting():  # type: ignore[attr-defined]
            return torch.ops.gradrev.reverse_lambda_tensor(x, lam)  # type: ignore[no-any-return]
        return backend.reverse(x, lam)

    @property
    def lambda_(self) -> float:
        """The current λ, as a Python float."""
        return float(self.lam)

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        if self.schedule is not None:
            raise _layer.refuse_manual_lambda(f"{_WHERE}.lambda_")
        self.lam.fill_(_layer.check_lambda(value, f"{_WHERE}.lambda_"))

    @torch.no_grad()
    def step(self) -> float:
        """Advance one step and return the new λ; λ changes only with a schedule.

        Atomic: if the schedule raises or gives a non-finite λ, nothing changes.
        """
        steps = int(self.steps) + 1
        if self.schedule is None:
            value = self.lambda_
        else:
            value = _layer.lambda_at(self.schedule, steps, _WHERE)
        self.lam.fill_(value)
        self.steps.fill_(steps)
        return value

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Back to the initial λ and step 0 (e.g. after `to_empty()` from the meta device)."""
        value = (
            self._lambda_init
            if self.schedule is None
            else _layer.lambda_at(self.schedule, 0, _WHERE)
        )
        self.lam.fill_(value)
        self.steps.zero_()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        # Module casts (.half(), .bfloat16(), .to(dtype), Lightning's precision plugins) reach
        # buffers only through this private hook. λ follows the device but keeps float64, or a
        # bfloat16 cast would turn 0.3 into 0.30078125 and a float16 cast 1e5 into inf.
        lam = self.lam
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        if self.lam.dtype != torch.float64:
            self.lam = lam.to(self.lam.device)
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # gradrev 0.1 saved λ as a 0-d float32 buffer: load it into today's (1,) float64 one.
        lam = state_dict.get(prefix + "lam")
        if isinstance(lam, torch.Tensor) and lam.ndim == 0:
            state_dict[prefix + "lam"] = lam.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        # The legacy ONNX exporter calls .detach() on every state_dict value
        # (torch.jit._unique_state_dict): the schedule, a dict, must stay out. An inference
        # graph has no use for it.
        if backend._onnx_exporting():
            del destination[prefix + "_extra_state"]

    def get_extra_state(self) -> dict[str, Any]:
        return {"schedule": _layer.schedule_config(self.schedule)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.schedule = _layer.schedule_from_config(state["schedule"])

    def extra_repr(self) -> str:
        if self.lam.is_meta:  # deferred initialization: no values yet
            return f"lambda_=<meta>, schedule={self.schedule!r}"
        return f"lambda_={self.lambda_:.6g}, steps={int(self.steps)}, schedule={self.schedule!r}"
