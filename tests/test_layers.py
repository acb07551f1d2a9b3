"""The layer contract, run against every layer kind: torch, nnx, linen, and keras on each of
its three backends (each in a subprocess, since a process has one Keras backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import installed
from layer_kinds import KINDS

from gradrev import schedules

KERAS_CHILD = "GRADREV_KERAS_CHILD"  # set in the subprocess that tests one Keras backend
_NEEDS = {"torch": "torch", "nnx": "flax", "linen": "flax", "keras": "keras"}
LAMBDAS = [0.0, 0.3, -0.7, 1.0, 2.5, 0.125, -3.0, 1e-3, 0.9, 0.5, 7.0, 0.25]


def _kind_param(name: str) -> Any:
    if name == "keras" and not os.environ.get(KERAS_CHILD):
        reason = "runs in a subprocess per Keras backend (test_keras_backend)"
        return pytest.param(name, marks=pytest.mark.skip(reason=reason))
    if name != "keras" and os.environ.get(KERAS_CHILD):
        return pytest.param(name, marks=pytest.mark.skip(reason="Keras child process"))
    if importlib_missing(name):
        return pytest.param(name, marks=pytest.mark.skip(reason=f"{_NEEDS[name]} is not installed"))
    return name


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_NEEDS[name]) is None


@pytest.fixture(params=[_kind_param(n) for n in KINDS])
def kind(request: pytest.FixtureRequest) -> Any:
    return KINDS[request.param]()


def stateful(kind: Any) -> None:
    if not kind.has_state:
        pytest.skip(f"{kind.name} is stateless: λ is passed per call, there is no step")


X = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -4.0]], np.float32)
G = np.array([[0.3, -1.0, 2.0], [1e-3, 5.0, -0.7]], np.float32)


def test_forward_is_identity_backward_is_minus_lambda(kind: Any) -> None:
    layer = kind.make(0.3)
    want = (G * -np.float32(0.3)).astype(np.float32)
    np.testing.assert_array_equal(kind.grad(layer, X, G), want)


def test_lambda_is_readable_and_settable(kind: Any) -> None:
    layer = kind.make(0.5)
    assert kind.get(layer) == 0.5
    kind.set(layer, -2.0)
    assert kind.get(layer) == -2.0
    np.testing.assert_array_equal(kind.grad(layer, X, G), G * np.float32(2.0))


def test_only_step_advances_the_schedule(kind: Any) -> None:
    stateful(kind)
    schedule = schedules.dann(total_steps=10)
    layer = kind.make(schedule=schedule)
    assert kind.get(layer) == 0.0
    for _ in range(3):
        kind.grad(layer, X, G)  # forward and backward passes never step
    assert kind.steps(layer) == 0 and kind.get(layer) == 0.0
    for n in range(1, 5):
        assert kind.step(layer) == float(np.float32(schedule(n)))
    assert kind.steps(layer) == 4


def test_roundtrip_keeps_lambda_and_position(kind: Any) -> None:
    stateful(kind)
    layer = kind.make(schedule=schedules.dann(total_steps=50, gamma=7.0))
    for _ in range(7):
        kind.step(layer)
    restored = kind.roundtrip(layer)
    assert kind.get(restored) == kind.get(layer)
    assert kind.steps(restored) == 7
    assert kind.step(restored) == kind.step(layer)  # the schedule came back too


def test_roundtrip_of_a_plain_callable_schedule_is_a_clear_error(kind: Any) -> None:
    stateful(kind)
    if kind.name == "nnx":
        pytest.skip("nnx.split keeps Python attributes in the graphdef: nothing is serialized")
    layer = kind.make(schedule=lambda step: 0.1 * step)
    with pytest.raises(TypeError, match="cannot save the schedule"):
        kind.roundtrip(layer)


@pytest.mark.slow
def test_changing_lambda_never_recompiles(kind: Any) -> None:
    assert kind.traces(kind.make(LAMBDAS[0]), LAMBDAS) == 1


def test_two_layers_are_independent(kind: Any) -> None:
    a, b = kind.make(0.5), kind.make(2.0)
    kind.set(a, -1.0)
    assert kind.get(b) == 2.0
    np.testing.assert_array_equal(kind.grad(b, X, G), G * np.float32(-2.0))
    np.testing.assert_array_equal(kind.grad(a, X, G), G)


def test_sgd_update_is_minus_lambda_times_plain_update(kind: Any) -> None:
    w, c, lr = np.array([0.5, -1.0, 2.0], np.float32), np.array([1.0, 3.0, -0.5], np.float32), 0.25
    x = X[0]
    plain = -lr * kind.weight_grad(None, w, x, c)
    for lam in (0.5, -2.0, 0.0):
        through = -lr * kind.weight_grad(kind.make(lam), w, x, c)
        np.testing.assert_array_equal(through, -np.float32(lam) * plain)


def test_bad_lambda_and_schedule_are_clear_errors(kind: Any) -> None:
    with pytest.raises(ValueError, match="lambda_ must be finite"):
        kind.make(float("nan"))
    with pytest.raises(TypeError, match="lambda_ must be"):
        kind.make("0.5")
    if kind.has_state:
        with pytest.raises(TypeError, match="schedule must be"):
            kind.make(schedule=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_keras_backend(keras_backend: str) -> None:
    """The same contract for the Keras layer, on one Keras backend per subprocess."""
    if os.environ.get(KERAS_CHILD):
        pytest.skip("already in a Keras child process")
    for module in ("keras", keras_backend):
        if (
            not installed(module)
            if module in ("torch", "jax", "tensorflow")
            else importlib_missing("keras")
        ):
            pytest.skip(f"{module} is not installed")
    env = {
        **os.environ,
        KERAS_CHILD: "1",
        "KERAS_BACKEND": keras_backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "keras", __file__],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
