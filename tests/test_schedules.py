"""λ schedules: values, clamping, serialization, and tracing with framework integers."""

from __future__ import annotations

import json
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
    schedules.warm_start(0.0, 1.0, 1.0, 1000.0, clamp=False),
    schedules.warm_start(0.0, 0.1, 10.0, 7),
    schedules.dann(1000, gamma=1.0, normalize=True),
    schedules.dann(30, gamma=5.0, lambda_max=0.1, lambda_init=0.02, normalize=True),
    schedules.dann(10, gamma=-1000.0),
]


def tllib_coefficient(
    i: int, lo: float = 0.0, hi: float = 1.0, alpha: float = 1.0, max_iters: float = 1000.0
) -> float:
    """Transfer-Learning-Library's WarmStartGradientReverseLayer coefficient, as tllib computes it."""
    return float(2.0 * (hi - lo) / (1.0 + np.exp(-alpha * i / max_iters)) - (hi - lo) + lo)


def test_dann_formula() -> None:
    s = schedules.dann(total_steps=200, gamma=10.0, lambda_max=0.8)
    for step in (0, 1, 50, 199, 200, 1000):
        p = min(step / 200, 1.0)
        assert s(step) == 0.8 * (2 / (1 + float(np.exp(-10 * p))) - 1)
    assert s(0) == 0.0 and s(10_000) == s(200)


def test_linear_and_constant() -> None:
    s = schedules.linear(1.0, 0.0, 4)
    assert [s(i) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert schedules.constant(0.3)(12345) == 0.3


def test_warm_start_matches_transfer_learning_library() -> None:
    """Bit for bit, NumPy's exp included; clamped by default, tllib's own sequence unclamped."""
    clamped = schedules.warm_start(0.0, 1.0, 1.0, 1000)
    unclamped = schedules.warm_start(clamp=False)  # tllib's defaults, max_iters=1000.
    for i in range(3001):
        assert unclamped(i) == tllib_coefficient(i)
        assert clamped(i) == tllib_coefficient(min(i, 1000))
    assert unclamped(2000) == pytest.approx(0.7616, abs=1e-4)
    assert clamped(2000) == pytest.approx(0.4621, abs=1e-4)


def test_warm_start_other_parameters_match_tllib() -> None:
    s = schedules.warm_start(lo=0.0, hi=0.1, alpha=1.0, max_iters=1000, clamp=False)  # MDD's
    t = schedules.warm_start(lo=0.0, hi=2.0, alpha=1.0, max_iters=1000.0, clamp=False)  # ADDA's
    for i in range(0, 3001, 7):
        assert s(i) == tllib_coefficient(i, 0.0, 0.1)
        assert t(i) == tllib_coefficient(i, 0.0, 2.0)


def test_warm_start_accepts_tllib_float_max_iters_and_zero_alpha() -> None:
    assert schedules.warm_start(max_iters=1000.0) == schedules.warm_start(max_iters=1000)
    assert schedules.warm_start(lo=0.3, alpha=0.0, clamp=False)(10**6) == 0.3
    with pytest.raises(ValueError, match="max_iters must be a finite number > 0, got 0"):
        schedules.warm_start(max_iters=0)
    with pytest.raises(ValueError, match="clamp must be True or False, got 1"):
        schedules.WarmStart(clamp=1)  # type: ignore[arg-type]


def test_warm_start_from_an_older_dict_is_clamped() -> None:
    old = {"name": "warm_start", "lo": 0.0, "hi": 1.0, "alpha": 1.0, "max_iters": 1000}
    assert schedules.from_dict(old) == schedules.warm_start()


def adapt_ramp(
    step: int, max_steps: int, gamma: float, lambda_init: float, lambda_max: float
) -> float:
    """adapt's UpdateLambda in float64 (adapt itself computes it in float32 with tf.exp)."""
    progress = min(step / max_steps, 1.0)
    lam = 2.0 / (1.0 + np.exp(-gamma * progress)) - 1.0
    lam /= 2.0 / (1.0 + np.exp(-gamma)) - 1.0
    return float(lam * (lambda_max - lambda_init) + lambda_init)


def test_normalized_dann_is_adapts_ramp() -> None:
    plain = schedules.dann(1000, gamma=1.0)
    s = schedules.dann(1000, gamma=1.0, normalize=True)
    assert plain(1000) == pytest.approx(0.4621, abs=1e-4)  # what adapt's normalisation fixes
    assert s(0) == 0.0 and s(1000) == 1.0 and s(5000) == 1.0
    t = schedules.dann(400, gamma=10.0, lambda_max=0.1, lambda_init=0.02, normalize=True)
    assert t(0) == 0.02 and t(400) == 0.1
    for step in range(0, 1201, 3):
        assert s(step) == adapt_ramp(step, 1000, 1.0, 0.0, 1.0)
        assert t(step) == adapt_ramp(step, 400, 10.0, 0.02, 0.1)


def test_normalized_dann_refuses_a_flat_ramp() -> None:
    with pytest.raises(ValueError, match=r"normalize=True needs \|gamma\| ≥ 0.001, got 0.0"):
        schedules.dann(100, gamma=0.0, normalize=True)
    assert schedules.dann(100, gamma=0.0)(50) == 0.0  # unnormalised: flat at lambda_init


def test_dann_lambda_init_without_normalisation() -> None:
    s = schedules.dann(100, gamma=10.0, lambda_max=1.0, lambda_init=0.5)
    assert s(0) == 0.5
    assert s(100) == (2 / (1 + float(np.exp(-10.0))) - 1) * 0.5 + 0.5


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
    with pytest.raises(ValueError, match="Constant: value must be finite, got nan"):
        schedules.Constant(float("nan"))
    with pytest.raises(ValueError, match="Constant: value must be a finite number, got 'a'"):
        schedules.Constant("a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a dict with 'name'"):
        schedules.from_dict({"name": "cosine"})
    with pytest.raises(TypeError, match="step must be an int or a 0-d integer tensor"):
        schedules.dann(10)("3")
    with pytest.raises(TypeError, match="cannot save the schedule"):
        schedules.to_dict(lambda step: 0.5)
    with pytest.raises(ValueError, match=r"unknown fields \['cycles'\] for 'dann'"):
        schedules.from_dict({"name": "dann", "total_steps": 10, "cycles": 2})
    with pytest.raises(ValueError, match="normalize must be True or False"):
        schedules.dann(10, normalize="yes")  # type: ignore[arg-type]


# Issue 14: bad schedule parameters get gradrev's own behaviour, the same for every kind of step.


def test_dann_steep_negative_gamma_is_computed_stably(backend: Any) -> None:
    """exp(−γp) overflows for γ = −1000: the ramp's limit, −lambda_max, for int and tensor steps."""
    s = schedules.dann(10, gamma=-1000)
    assert s(50) == -1.0 and s(0) == 0.0
    for step, expected in ((50, -1.0), (0, 0.0)):
        got = backend.numpy(s(backend.tensor(np.asarray(step, np.int32))))
        assert got == np.float32(expected)


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.dann(10, gamma=1e308),
        schedules.dann(10, gamma=-1e308, normalize=True),
        schedules.warm_start(alpha=1e308, max_iters=10, clamp=False),
    ],
    ids=["dann", "normalized", "warm_start"],
)
def test_huge_steepness_never_gives_nan(backend: Any, schedule: Any) -> None:
    """float32 steps cannot hold a steepness of 1e308: still no inf·0 = NaN at step 0."""
    for step in (0, 1, 5, 50):
        got = backend.numpy(schedule(backend.tensor(np.asarray(step, np.int32))))
        assert got == np.float32(schedule(step)), step


def test_warm_start_refuses_negative_alpha() -> None:
    with pytest.raises(
        ValueError, match=r"WarmStart: alpha must be a finite number ≥ 0, got -1\.0"
    ):
        schedules.warm_start(0.0, 1.0, -1.0, 1000)


def test_native_layer_runs_the_new_schedules() -> None:
    """gradrev.torch's layer steps through tllib's unclamped curve and adapt's ramp."""
    pytest.importorskip("torch")
    from gradrev.torch import GradientReversal

    for schedule, reference in (
        (schedules.warm_start(clamp=False), tllib_coefficient),
        (
            schedules.dann(1000, gamma=1.0, normalize=True),
            lambda i: adapt_ramp(i, 1000, 1.0, 0.0, 1.0),
        ),
    ):
        layer = GradientReversal(schedule=schedule)
        for _ in range(2000):
            layer.step()
        assert layer.lambda_ == reference(2000)  # λ is stored in float64: exactly


# --- Configs and checkpoints from elsewhere (issue 20) -----------------------------------------

HOSTILE_CONFIGS: list[tuple[str, Any]] = [
    ("huge int value", {"name": "constant", "value": 10**400}),  # was OverflowError
    ("missing field", {"name": "dann"}),  # was DANN.__init__()'s TypeError
    ("unhashable name", {"name": ["dann"]}),  # was unhashable-type TypeError
    ("dict name", {"name": {"a": 1}}),
    ("non-str key", {"name": "constant", "value": 1.0, 1: 2}),
    ("huge total_steps", {"name": "linear", "start": 0.0, "end": 1.0, "total_steps": 10**400}),
    ("huge max_iters", {"name": "warm_start", "max_iters": 10**400}),
    ("string value", {"name": "constant", "value": "__import__('os').system('echo pwned')"}),
    ("list value", {"name": "constant", "value": [1.0]}),
    ("bool total_steps", {"name": "dann", "total_steps": True}),
    ("nan gamma", {"name": "dann", "total_steps": 10, "gamma": float("nan")}),
    ("not a dict", [("name", "constant")]),
    ("None", None),
    ("class name", {"name": "Constant", "value": 1.0}),
    ("dunder name", {"name": "__class__"}),
]


@pytest.mark.parametrize(("what", "config"), HOSTILE_CONFIGS, ids=[w for w, _ in HOSTILE_CONFIGS])
def test_hostile_configs_get_gradrevs_value_error(what: str, config: Any) -> None:
    with pytest.raises(
        ValueError, match=r"^(gradrev\.schedules\.from_dict|Constant|Linear|DANN|WarmStart): "
    ):
        schedules.from_dict(config)


@pytest.mark.parametrize(
    "data",
    [
        b'{"name": "dann"',  # truncated: was JSONDecodeError
        b'{"name": "dann", "total_steps": 1',
        b"[" * 100_000,  # nested deeper than json reads: was RecursionError
        b"\xff\xfe\x00",
        b'{"name": "constant", "value": 1e400}',
        b'{"name": "constant", "value": NaN}',
        b"null",
        b'"dann"',
    ],
)
def test_hostile_saved_schedule_bytes_get_gradrevs_error(data: bytes) -> None:
    """The codec every layer's saved state goes through (NNX, MLX, torch, Keras)."""
    from gradrev import _layer

    with pytest.raises(ValueError):
        _layer.decode(data, "gradrev.layer")


@pytest.mark.parametrize(
    "extra", [{"schedule": {"name": "dann"}}, {"schedule": 5}, {"schedule": {"name": ["x"]}}]
)
def test_torch_layer_with_a_malformed_extra_state_gets_gradrevs_error(extra: Any) -> None:
    """Was: a malformed torch ``_extra_state`` raised KeyError or TypeError from inside."""
    torch = pytest.importorskip("torch")
    from gradrev.torch import GradientReversal

    old = {"lam": torch.tensor(0.5), "_extra_state": extra}  # gradrev 0.1's layout
    with pytest.raises(ValueError, match=r"gradrev.schedules.from_dict: "):
        GradientReversal().load_state_dict(old)
