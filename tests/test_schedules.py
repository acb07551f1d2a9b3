"""λ schedules: values, clamping, serialization, and tracing with framework integers."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from gradrev import schedules

ALL = [
    schedules.constant(0.3),
    schedules.linear(0.0, 2.0, 10),
    schedules.dann(100),
    schedules.dann(50, gamma=5.0, lambda_max=0.5),
    schedules.warm_start(0.0, 1.0, 1.0, 1000),
]


def test_dann_formula() -> None:
    s = schedules.dann(total_steps=200, gamma=10.0, lambda_max=0.8)
    for step in (0, 1, 50, 199, 200, 1000):
        p = min(step / 200, 1.0)
        assert s(step) == 0.8 * (2 / (1 + math.exp(-10 * p)) - 1)
    assert s(0) == 0.0 and s(10_000) == s(200)


def test_linear_and_constant() -> None:
    s = schedules.linear(1.0, 0.0, 4)
    assert [s(i) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert schedules.constant(0.3)(12345) == 0.3


def test_warm_start_matches_transfer_learning_library() -> None:
    lo, hi, alpha, max_iters = 0.0, 1.0, 1.0, 1000
    s = schedules.warm_start(lo, hi, alpha, max_iters)
    for i in (0, 10, 500, 1000):
        tllib = 2.0 * (hi - lo) / (1.0 + np.exp(-alpha * i / max_iters)) - (hi - lo) + lo
        assert s(i) == pytest.approx(float(tllib), abs=1e-15)  # math.exp vs np.exp
    assert s(5000) == s(1000)  # clamped, unlike the original


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_dict_roundtrip_through_json(schedule: Any) -> None:
    config = json.loads(json.dumps(schedule.to_dict()))
    restored = schedules.from_dict(config)
    assert restored == schedule and restored(17) == schedule(17)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_framework_integer_steps_are_traceable(backend: Any, schedule: Any) -> None:
    for step in (0, 3, 7, 10_000):
        value = schedule(backend.tensor(np.asarray(step, np.int32)))
        got = backend.numpy(value)
        assert got.shape == () and got.dtype == np.float32
        assert got == pytest.approx(schedule(step), rel=1e-6, abs=1e-7)


def test_jit_traces_once_over_steps() -> None:
    jax = pytest.importorskip("jax")
    traces = []

    @jax.jit
    def lam(step: Any) -> Any:
        traces.append(1)
        return schedules.dann(100)(step)

    values = [float(lam(jax.numpy.int32(i))) for i in range(12)]
    assert len(traces) == 1
    assert values == pytest.approx([schedules.dann(100)(i) for i in range(12)], rel=1e-6)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="total_steps must be a positive int, got 0"):
        schedules.dann(0)
    with pytest.raises(ValueError, match="value must be a finite number"):
        schedules.Constant(float("nan"))
    with pytest.raises(ValueError, match="expected a dict with 'name'"):
        schedules.from_dict({"name": "cosine"})
    with pytest.raises(TypeError, match="step must be an int or a 0-d integer tensor"):
        schedules.dann(10)("3")
    with pytest.raises(TypeError, match="cannot save the schedule"):
        schedules.to_dict(lambda step: 0.5)
