"""What every framework's GradientReversal layer shares. Imports no framework."""

from __future__ import annotations

from typing import Any

from gradrev import _lambda, schedules


def initial_lambda(lambda_: Any, schedule: Any, where: str) -> float:
    """λ at step 0: the schedule's value if there is one, else ``lambda_``."""
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"{where}: schedule must be a gradrev.schedules object or a callable step -> λ, "
            f"got {_lambda.describe(schedule)}"
        )
    value = schedule(0) if schedule is not None else lambda_
    return _lambda.as_float(value, where, "layer")


def lambda_at(schedule: Any, step: int, where: str) -> float:
    """λ for ``step``, checked: a schedule must give a finite real number."""
    return _lambda.as_float(schedule(step), f"{where}: schedule({step})", "layer")


def schedule_config(schedule: Any) -> dict[str, Any] | None:
    return None if schedule is None else schedules.to_dict(schedule)


def schedule_from_config(config: dict[str, Any] | None) -> Any:
    return None if config is None else schedules.from_dict(config)
