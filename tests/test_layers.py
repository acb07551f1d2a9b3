"""The layer contract, run against every layer kind: torch, nnx, linen, and keras on each of
its three backends (each in a subprocess, since a process has one Keras backend)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import KERAS_CHILD, run_keras_child
from layer_kinds import KINDS, x64

from gradrev import _reference, _registry, schedules
from gradrev.testing import LAYER_CHECKS, run_layer_check

LAMBDAS = [0.0, 0.3, -0.7, 1.0, 2.5, 0.125, -3.0, 1e-3, 0.9, 0.5, 7.0, 0.25]


def kind_param(name: str) -> Any:
    if name == "keras" and not os.environ.get(KERAS_CHILD):
        reason = "runs in a subprocess per Keras backend (test_keras_backend)"
        return pytest.param(name, marks=pytest.mark.skip(reason=reason))
    if name != "keras" and os.environ.get(KERAS_CHILD):
        return pytest.param(name, marks=pytest.mark.skip(reason="Keras child process"))
    if importlib_missing(name):
        reason = f"{KINDS[name].needs} is not installed"
        return pytest.param(name, marks=pytest.mark.skip(reason=reason))
    return name


def importlib_missing(name: str) -> bool:
    return not _registry.importable(KINDS[name].needs)


@pytest.fixture(params=[kind_param(n) for n in KINDS])
def kind(request: pytest.FixtureRequest) -> Any:
    return KINDS[request.param]()


def _setup_params() -> list[Any]:
    params = []
    for name, cls in KINDS.items():
        marks = kind_param(name).marks if not isinstance(kind_param(name), str) else ()
        params += [
            pytest.param(name, setup, marks=marks, id=f"{name}-{setup}") for setup in cls.SETUPS
        ]
    return params


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
        assert kind.step(layer) == schedule(n)
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
    with pytest.raises(ValueError, match="overflows a float64"):
        kind.make(10**400)
    with pytest.raises(TypeError, match="lambda_ must be"):
        kind.make("0.5")
    if kind.has_state:
        with pytest.raises(TypeError, match="schedule must be"):
            kind.make(schedule=0.5)


# Signed zeros, infinities and NaN: λ = 0 turns g into g · −0.0 (each zero's sign flipped).
SIGNED = np.array([0.0, -0.0, 1.0, -2.0, np.inf, -np.inf, np.nan, 1e-3], np.float32)


@pytest.mark.parametrize("lam", [0.0, -0.0, -0.5])
def test_zero_and_negative_lambda_give_the_bits_of_reverse(kind: Any, lam: float) -> None:
    """docs/semantics.md, "The sign of λ": λ = 0 blocks, λ < 0 scales without reversing. A
    layer holding λ (built with it, set to it, or scheduled to it) gives reverse(x, λ)'s bits."""
    import gradrev

    x, a = np.zeros_like(SIGNED), kind.adapter
    want = a.vjp(lambda t: gradrev.reverse(t, lam), a.tensor(x), a.tensor(SIGNED))
    assert _reference.same_bits(want, _reference.reverse_grad(SIGNED, lam)).all(), want
    layers = {"built": kind.make(lam), "set": kind.make(1.0)}
    kind.set(layers["set"], lam)
    if kind.has_state:
        layers["scheduled"] = kind.make(schedule=schedules.constant(lam))
        kind.step(layers["scheduled"])
    for how, layer in layers.items():
        assert np.copysign(1.0, kind.get(layer)) == np.copysign(1.0, lam), how
        got = kind.grad(layer, x, SIGNED)
        assert got.dtype == want.dtype and _reference.same_bits(got, want).all(), (how, got, want)


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_keras_backend(keras_backend: str) -> None:
    """The same contract for the Keras layer, on one Keras backend per subprocess."""
    here = Path(__file__).parent
    run_keras_child(keras_backend, Path(__file__), here / "test_layer_state.py")


# ---------------------------------------------------------------------------------------------
# The precision rule: a layer holding λ = v gives the bits of reverse(x, v), v a Python float,
# in every input dtype and under every precision set-up (module casts, dtype policies, x64).

DTYPES = ("float16", "bfloat16", "float32", "float64")
GRID_LAMBDAS = (0.3, -0.7, 1e-3, 1 / 3, 2.5, 1e5)


def _normal_values(seed: int, dtype: str) -> np.ndarray:
    """Normal numbers only (no subnormal inputs or products), so no backend flushes anything."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 10.0, 64) * rng.choice([-1.0, 1.0], 64)
    return a.reshape(8, 8).astype(_reference.dtype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kind_name", "setup"), _setup_params())
def test_layer_gives_the_bits_of_reverse(kind_name: str, setup: str, dtype: str) -> None:
    kind = KINDS[kind_name]()
    if not kind.supports(setup, dtype):
        pytest.skip(f"{dtype} inputs do not exist under {setup}")
    x, g = _normal_values(0, dtype), _normal_values(1, dtype)
    with kind.context(setup):
        for v in GRID_LAMBDAS:
            got = kind.grad(kind.made_under(setup, v), x, g)
            want = _reference.reverse_grad(g, v)
            same = _reference.same_bits(got, want)
            assert same.all(), f"λ={v}: {int((~same).sum())} of {same.size} elements differ"


def test_a_lambda_beyond_float32_is_exact_or_refused(kind: Any) -> None:
    """1e39 is a finite Python float: float64 storage keeps it; float32 storage refuses it."""
    g = _normal_values(1, "float64")
    if kind.name == "linen":
        np.testing.assert_array_equal(kind.grad(kind.make(1e39), g, g), g * -1e39)
        return
    np.testing.assert_array_equal(kind.grad(kind.make(1e39), g, g), g * -1e39)
    if kind.name in ("nnx", "keras") and getattr(kind, "backend", "jax") == "jax":
        with x64(kind.adapter.jax, False), pytest.raises(ValueError, match="does not fit"):
            kind.make(1e39)


# ---------------------------------------------------------------------------------------------
# The λ lifecycle.

SCHEDULE = schedules.dann(total_steps=10)


def test_backward_uses_the_lambda_its_forward_saw(kind: Any) -> None:
    stateful(kind)
    layer = kind.make(0.5)
    finish = kind.forward(layer, X)
    kind.set(layer, -2.0)  # between forward and backward: allowed, and not seen by backward
    np.testing.assert_array_equal(finish(G), _reference.reverse_grad(G, 0.5))

    layer = kind.make(schedule=SCHEDULE)
    kind.step(layer)
    finish = kind.forward(layer, X)
    kind.step(layer)
    kind.step(layer)
    np.testing.assert_array_equal(finish(G), _reference.reverse_grad(G, SCHEDULE(1)))
    np.testing.assert_array_equal(kind.grad(layer, X, G), _reference.reverse_grad(G, SCHEDULE(3)))


def test_a_failing_step_changes_nothing(kind: Any) -> None:
    stateful(kind)
    failures: list[Any] = [RuntimeError("schedule broke"), float("nan"), float("inf"), "0.5"]

    def schedule(step: int) -> Any:
        if step == 3 and failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return 0.125 * step

    layer = kind.make(schedule=schedule)
    kind.step(layer)
    kind.step(layer)
    for error, match in [
        (RuntimeError, "schedule broke"),
        (ValueError, "must be finite"),
        (ValueError, "must be finite"),
        (TypeError, "must return a real number"),
    ]:
        with pytest.raises(error, match=match):
            kind.step(layer)
        assert kind.steps(layer) == 2 and kind.get(layer) == 0.25
    assert kind.step(layer) == 0.375 and kind.steps(layer) == 3


def test_lambda_and_schedule_are_never_ambiguous(kind: Any) -> None:
    stateful(kind)
    with pytest.raises(ValueError, match=r"got both lambda_=0\.5 and a schedule"):
        kind.make(0.5, schedule=SCHEDULE)
    layer = kind.make(schedule=SCHEDULE)
    with pytest.raises(ValueError, match="follows its schedule"):
        kind.set(layer, 0.5)
    assert kind.get(layer) == 0.0
    layer.schedule = None  # the documented way to take λ over by hand
    kind.set(layer, 0.5)
    assert kind.step(layer) == 0.5 and kind.get(layer) == 0.5


def test_a_layer_restored_without_its_schedule_continues_it(kind: Any) -> None:
    """The schedule is part of what is saved: a layer built plainly picks it up on restore."""
    stateful(kind)
    layer = kind.make(schedule=SCHEDULE)
    for _ in range(4):
        kind.step(layer)
    restored = kind.restore_into_plain(layer)
    assert kind.get(restored) == SCHEDULE(4) and kind.steps(restored) == 4
    assert kind.step(restored) == SCHEDULE(5) == kind.step(layer)


def test_a_schedule_may_return_a_0d_tensor(kind: Any) -> None:
    stateful(kind)
    tensor = kind.adapter.tensor  # a 0-d float32 tensor of the layer's framework
    layer = kind.make(schedule=lambda step: tensor(np.asarray(0.25 * step, np.float32)))
    assert kind.step(layer) == 0.25
    assert kind.step(layer) == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_keras_scheduler_counts_every_batch(kind: Any, steps_per_execution: int) -> None:
    if kind.name != "keras":
        pytest.skip("LambdaScheduler is the Keras callback")
    if kind.backend == "torch" and steps_per_execution > 1:
        pytest.skip("Keras on torch refuses steps_per_execution > 1")
    schedule = schedules.dann(total_steps=100)
    layer = kind.make(schedule=schedule)
    kind.fit(layer, batches=24, epochs=2, steps_per_execution=steps_per_execution)
    assert kind.steps(layer) == 48
    assert kind.get(layer) == schedule(48)


def test_nnx_step_inside_jit_has_eager_bits_and_never_retraces(kind: Any) -> None:
    if kind.name != "nnx":
        pytest.skip("nnx.jit")
    nnx, traces = kind.nnx, []

    @nnx.jit
    def train_step(layer: Any) -> Any:
        traces.append(1)
        return layer.step()

    for sched in (SCHEDULE, None):
        layer = kind.make(schedule=sched) if sched else kind.make(0.75)
        traces.clear()
        values = [float(train_step(layer)) for _ in range(5)]
        want = [SCHEDULE(n) for n in range(1, 6)] if sched else [0.75] * 5
        assert values == want and kind.get(layer) == want[-1] and kind.steps(layer) == 5
        assert len(traces) == 1


def test_nnx_setting_lambda_keeps_the_graphdef(kind: Any) -> None:
    if kind.name != "nnx":
        pytest.skip("nnx graphdef")
    layer = kind.make(0.5)
    before = kind.nnx.graphdef(layer)
    kind.set(layer, 0.25)
    assert kind.nnx.graphdef(layer) == before


def test_torch_deferred_initialization(kind: Any) -> None:
    if kind.name != "torch":
        pytest.skip("torch meta device")
    torch = kind.torch
    for make in (
        lambda: kind.make(0.3),
        lambda: kind.make(schedule=schedules.linear(0.5, 1.0, 10)),
    ):
        with torch.device("meta"):
            layer = make()
        assert "lambda_=<meta>" in repr(layer)
        layer.to_empty(device="cpu")
        layer.reset_parameters()
        assert kind.steps(layer) == 0 and kind.get(layer) in (0.3, 0.5)
        assert layer.lam.dtype == torch.float64


def test_torch_checkpoint_recomputes_with_the_current_lambda(kind: Any) -> None:
    """Pinned difference (docs/semantics.md): torch.utils.checkpoint runs the forward again at
    backward time, and that forward reads λ again."""
    if kind.name != "torch":
        pytest.skip("torch.utils.checkpoint")
    torch = kind.torch
    layer = kind.make(0.5)
    x = torch.tensor(X, requires_grad=True)
    y = torch.utils.checkpoint.checkpoint(lambda a: layer(a * 1.0), x, use_reentrant=False)
    layer.lambda_ = -2.0
    y.backward(torch.tensor(G))
    np.testing.assert_array_equal(x.grad.numpy(), _reference.reverse_grad(G, -2.0))


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true", "bf16-mixed", "32-true"])
def test_torch_layer_under_lightning_precision(precision: str) -> None:
    """Lightning's precision plugins (.ci/run installs lightning for this test)."""
    if os.environ.get(KERAS_CHILD) or importlib_missing("torch"):
        pytest.skip("torch layer")
    if not os.environ.get("GRADREV_TEST_LIGHTNING"):  # set by .ci/run, which installs it
        pytest.importorskip("lightning", reason="pip install lightning (as .ci/run does)")
    import torch
    from lightning.fabric import Fabric

    from gradrev.torch import GradientReversal

    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)  # type: ignore[arg-type]
    with fabric.init_module():
        linear, grl = torch.nn.Linear(4, 4), GradientReversal(0.3)
    fabric.setup(torch.nn.Sequential(linear, grl))
    x = fabric.to_device(torch.randn(8, 4))
    with fabric.autocast():
        h = linear(fabric._precision.convert_input(x))
        h.retain_grad()
        y = grl(h)
    g = torch.randn_like(y)
    y.backward(g)
    assert grl.lambda_ == 0.3
    assert torch.equal(h.grad, g * -0.3), f"{h.dtype}: λ was rounded"


def test_mlx_step_inside_the_loss_keeps_the_forward_lambda(kind: Any) -> None:
    """tllib steps its GRL inside the forward; in MLX that is inside the loss function."""
    if kind.name != "mlx":
        pytest.skip("mlx.nn")
    mx, layer = kind.mx, kind.make(schedule=SCHEDULE)

    def loss(x: Any) -> Any:
        y = layer(x)
        layer.step()  # after the reversal saw λ = SCHEDULE(0) ... and later SCHEDULE(1)
        return (y * mx.array(G)).sum()

    got = mx.grad(loss)(mx.array(X))
    np.testing.assert_array_equal(np.array(got), _reference.reverse_grad(G, SCHEDULE(0)))
    assert kind.steps(layer) == 1 and kind.get(layer) == SCHEDULE(1)


@pytest.mark.slow
def test_mlx_compiled_training_step(kind: Any) -> None:
    """mx.compile over the model state: λ stepped between calls is seen, without recompiling,
    and the optimizer (weight decay included) never touches λ or the step count."""
    if kind.name != "mlx":
        pytest.skip("mlx.nn")
    mx, nn = kind.mx, kind.nn
    import mlx.optimizers as optim

    schedule = schedules.linear(0.5, 2.0, total_steps=3)
    grl = kind.make(schedule=schedule)
    model = nn.Sequential(nn.Linear(3, 3), grl, nn.Linear(3, 1))
    optimizer = optim.AdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.init(model.trainable_parameters())  # else the first update grows the state
    traces: list[int] = []

    def loss(model: Any, x: Any) -> Any:
        return model(x).sum()

    def counted(model: Any, x: Any) -> Any:
        traces.append(1)
        return loss(model, x)

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def train_step(x: Any) -> Any:
        _, grads = nn.value_and_grad(model, counted)(model, x)
        optimizer.update(model, grads)
        return grads["layers"][0]["weight"]

    x = mx.array(X)
    for n in range(4):
        _, eager = nn.value_and_grad(model, loss)(model, x)
        compiled = train_step(x)
        np.testing.assert_array_equal(np.array(compiled), np.array(eager["layers"][0]["weight"]))
        assert kind.get(grl) == schedule(n) and kind.steps(grl) == n
        grl.step()
    assert len(traces) == 1
    assert "lam" not in str(optimizer.state)  # λ is no parameter the optimizer sees


# ---------------------------------------------------------------------------------------------
# The public layer conformance harness (gradrev.testing.certify_layer), on every layer kind.


@pytest.mark.parametrize("check", list(LAYER_CHECKS))
def test_layer_conformance(kind: Any, check: str) -> None:
    if not run_layer_check(check, kind):
        pytest.skip(f"{kind.name} is stateless: {check} does not apply")
