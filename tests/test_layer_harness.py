"""The layer conformance harness fails broken layers: a NumPy toy layer on the shared state
machine passes every check, and each deliberately broken variant fails the check for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from layer_kinds import LayerKind

from gradrev import _layer
from gradrev.testing import LAYER_CHECKS, LayerCheckError, certify_layer, run_layer_check


class Toy(_layer.LambdaState):
    """A layer whose 'framework' is NumPy: λ a Python float, a checkpoint a dict."""

    _where = "Toy"

    def __init__(self, lambda_: float | None = None, *, schedule: Any = None) -> None:
        self._lam = self._init_state(lambda_, schedule)
        self._steps = 0
        self._put_schedule(schedule)

    def _get_lambda(self) -> float:
        return self._lam

    def _put_lambda(self, value: float) -> None:
        self._lam = value

    def _get_steps(self) -> int:
        return self._steps

    def _put_steps(self, steps: int) -> None:
        self._steps = steps

    def save(self) -> dict[str, Any]:
        return {
            "lam": self._lam,
            "steps": self._steps,
            "schedule": _layer.check_saveable(self.schedule),
        }

    def load(self, state: dict[str, Any]) -> None:
        lam = _layer.restored_lambda(state["lam"], "float64", self._where)
        steps = _layer.restored_steps(state["steps"], self._where)
        self._lam, self._steps = lam, steps
        self._put_schedule(_layer.schedule_from_config(state["schedule"]))


class ToyAdapter(LayerKind):
    name = "toy"

    def __init__(self, cls: type[Toy] = Toy) -> None:
        self.cls = cls

    def forward(self, layer: Any, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        lam = layer.lambda_
        return lambda g: _reference_grad(g, lam)

    def steps(self, layer: Any) -> int:
        return int(layer._get_steps())

    def restore_into(self, layer: Any, target: Any) -> Any:
        target.load(layer.save())
        return target

    def load_values(self, layer: Any, lam: Any, steps: Any) -> None:
        layer.load({**layer.save(), "lam": lam, "steps": steps})


def _reference_grad(g: np.ndarray, lam: float) -> np.ndarray:
    from gradrev import _reference

    return _reference.reverse_grad(g, lam)


class NoLoadCheck(Toy):
    def load(self, state: dict[str, Any]) -> None:
        self._lam, self._steps = float(state["lam"]), int(state["steps"])


class KeepsOwnSchedule(Toy):
    def load(self, state: dict[str, Any]) -> None:
        self._lam, self._steps = state["lam"], state["steps"]


class Wraps(Toy):
    def step(self) -> float:
        self._steps = (self._steps + 1 + 2**31) % 2**32 - 2**31
        return self._lam


class LateSchedule(Toy):
    def _put_schedule(self, schedule: Any) -> None:
        self._schedule = schedule  # and λ waits for the next step()

    @_layer.LambdaState.schedule.setter  # type: ignore[attr-defined,misc]
    def schedule(self, schedule: Any) -> None:
        self._schedule = schedule


class NotAtomic(Toy):
    def step(self) -> float:
        self._steps += 1  # before the schedule is known to work
        self._lam = _layer.lambda_at(self.schedule, self._steps, self._where)
        return self._lam


class ReadsLambdaLate(ToyAdapter):
    def forward(self, layer: Any, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda g: _reference_grad(g, layer.lambda_)


class Rounds(ToyAdapter):
    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return _reference_grad(g, float(np.float16(layer.lambda_)))


def test_a_correct_toy_passes_every_check() -> None:
    certificate = certify_layer(ToyAdapter())
    assert certificate.ok, str(certificate)
    assert set(certificate.results) == set(LAYER_CHECKS)


@pytest.mark.parametrize(
    ("adapter", "check"),
    [
        (ToyAdapter(NoLoadCheck), "loading_bad_values_is_refused"),
        (ToyAdapter(KeepsOwnSchedule), "restore_continues_the_saved_run"),
        (ToyAdapter(Wraps), "steps_never_wrap"),
        (ToyAdapter(LateSchedule), "schedule_attached_later_sets_lambda"),
        (ToyAdapter(NotAtomic), "failing_step_changes_nothing"),
        (ReadsLambdaLate(), "backward_uses_its_forward_lambda"),
        (Rounds(), "precision_grid"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_a_broken_toy_fails_its_check(adapter: Any, check: str) -> None:
    with pytest.raises(LayerCheckError):
        run_layer_check(check, adapter)
    with pytest.raises(LayerCheckError, match=check):
        certify_layer(adapter)
