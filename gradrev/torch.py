"""PyTorch layer: ``gradrev.torch.GradientReversal``.

>>> import torch
>>> from gradrev.torch import GradientReversal
>>> from gradrev import schedules
>>> grl = GradientReversal(schedule=schedules.dann(total_steps=100))
>>> grl.step(); round(grl.lambda_, 4)
0.0500
"""

from __future__ import annotations

from typing import Any

import torch

from gradrev import _layer
from gradrev.backends import torch as backend

__all__ = ["GradientReversal"]


class GradientReversal(torch.nn.Module):
    """Identity forward, gradient times −λ backward, with λ held in a buffer.

    λ is the float32 buffer ``lam`` and the step count the int64 buffer ``steps``: both are
    in ``state_dict`` and move with ``.to()``. Changing λ, by hand or by :meth:`step`, does
    not recompile under ``torch.compile``. With a ``schedule``, λ starts at ``schedule(0)``
    and only :meth:`step` advances it.
    """

    lam: torch.Tensor
    steps: torch.Tensor

    def __init__(self, lambda_: float = 1.0, *, schedule: Any = None) -> None:
        super().__init__()
        value = _layer.initial_lambda(lambda_, schedule, "gradrev.torch.GradientReversal")
        self.schedule = schedule
        self.register_buffer("lam", torch.tensor(value, dtype=torch.float32))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return backend.reverse(x, self.lam)

    @property
    def lambda_(self) -> float:
        return float(self.lam)

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        value = _layer.initial_lambda(value, None, "gradrev.torch.GradientReversal.lambda_")
        self.lam.fill_(value)

    @torch.no_grad()
    def step(self) -> float:
        """Advance the schedule by one step and return the new λ (a no-op on λ without one)."""
        self.steps += 1
        if self.schedule is not None:
            self.lam.fill_(_layer.lambda_at(self.schedule, int(self.steps), "GradientReversal"))
        return self.lambda_

    def get_extra_state(self) -> dict[str, Any]:
        return {"schedule": _layer.schedule_config(self.schedule)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.schedule = _layer.schedule_from_config(state["schedule"])

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:.6g}, steps={int(self.steps)}, schedule={self.schedule!r}"
