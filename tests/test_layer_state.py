"""The λ state machine (docs/semantics.md, "Layers"), beyond what the public harness
(gradrev.testing.LAYER_CHECKS, run on every kind by test_layers.test_layer_conformance)
checks: per-framework load, cast, compile and training paths. Each test is an example that
was wrong on 0b3caed."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from layer_kinds import KINDS, x64
from test_layers import G, X, kind_param, stateful

from gradrev import _reference, schedules

MAX_STEPS = 2**31 - 1


@pytest.fixture(params=[kind_param(n) for n in KINDS])
def kind(request: pytest.FixtureRequest) -> Any:
    return KINDS[request.param]()


def test_a_lambda_beyond_float32_storage_is_refused_on_load(kind: Any) -> None:
    """Keras-JAX and NNX without x64 keep λ in float32: 1e39 would be stored as inf."""
    stateful(kind)
    if kind.name not in ("nnx", "keras") or getattr(kind, "backend", "jax") != "jax":
        pytest.skip("float32 storage exists only on JAX without x64")
    with x64(kind.adapter.jax, False):
        layer = kind.make(0.5)
        with pytest.raises(ValueError, match="does not fit"):
            kind.load_values(layer, 1e39, 0)
        assert kind.get(layer) == 0.5


def test_keras_scheduled_layer_without_its_scheduler_warns(kind: Any) -> None:
    if kind.name != "keras":
        pytest.skip("Keras fit")
    keras = kind.keras
    layer = kind.make(schedule=schedules.dann(total_steps=100))
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(layer(inp)))
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), np.float32)
    with pytest.warns(UserWarning, match="nothing steps it"):
        model.fit(x, x[:, :1], batch_size=2, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh = kind.make(schedule=schedules.dann(total_steps=100))
        model = keras.Model(inp, keras.layers.Dense(1)(fresh(inp)))
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, x[:, :1], batch_size=2, verbose=0, callbacks=[kind.scheduler()])
    assert not [w for w in caught if "nothing steps it" in str(w.message)]
    assert kind.steps(fresh) == 2


def test_keras_on_torch_model_to_half_keeps_lambda(kind: Any) -> None:
    """Keras on torch: a model is a torch.nn.Module, and model.to(float16) reached λ."""
    if kind.name != "keras" or kind.backend != "torch":
        pytest.skip("Keras on torch")
    import torch

    layer = kind.make(0.3)
    inp = kind.keras.Input((3,))
    kind.keras.Model(inp, layer(inp)).to(torch.float16)
    assert kind.get(layer) == 0.3  # 0b3caed: 0.300048828125
    x = torch.ones(3, dtype=torch.float32, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.tolist() == [-np.float32(0.3)] * 3


@pytest.mark.slow
def test_keras_steps_per_execution_counts_the_batches_run(kind: Any) -> None:
    """7 batches, k = 3, 2 epochs: 14 steps (Keras reports index 8 for the last call's one)."""
    if kind.name != "keras" or kind.backend == "torch":
        pytest.skip("steps_per_execution > 1 (Keras on torch refuses it)")
    schedule = schedules.dann(total_steps=100)
    layer = kind.make(schedule=schedule)
    kind.fit(layer, batches=7, epochs=2, steps_per_execution=3)
    assert kind.steps(layer) == 14 and kind.get(layer) == schedule(14)


def test_nnx_transforms(kind: Any) -> None:
    """The setter refuses inside nnx.jit as eagerly; step() works under nnx.vmap."""
    if kind.name != "nnx":
        pytest.skip("nnx transforms")
    nnx = kind.nnx
    layer = kind.make(schedule=schedules.dann(total_steps=10))

    @nnx.jit
    def set_lambda(layer: Any) -> None:
        layer.lambda_ = 0.5

    with pytest.raises(ValueError, match="follows its schedule"):
        set_lambda(layer)

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(_: Any) -> Any:
        return kind.make(schedule=schedules.dann(total_steps=10))

    layers = make(np.arange(3))

    @nnx.vmap(in_axes=0)
    def step(layer: Any) -> Any:
        return layer.step()

    got = np.asarray(step(layers))
    np.testing.assert_array_equal(got, [schedules.dann(total_steps=10)(1)] * 3)


def test_mlx_step_inside_compile_is_a_clear_error(kind: Any) -> None:
    if kind.name != "mlx":
        pytest.skip("mx.compile")
    mx, layer = kind.mx, kind.make(schedule=schedules.dann(total_steps=10))

    def fn(x: Any) -> Any:
        layer.step()
        return layer(x)

    with pytest.raises(RuntimeError, match="runs eagerly"):
        mx.compile(fn, inputs=layer.state, outputs=layer.state)(mx.ones(3))


def test_mlx_a_cast_file_loads_exactly_or_is_refused(kind: Any) -> None:
    """A file whose arrays were all cast to float16: λ's bytes survive any float cast, so λ
    loads exactly; a step count that the cast rounded is refused."""
    if kind.name != "mlx":
        pytest.skip("mlx load_weights")
    layer = kind.make(1.0)
    kind.load_values(layer, 0.5, 7, dtype=kind.mx.float16)
    assert kind.get(layer) == 0.5 and kind.steps(layer) == 7  # 0b3caed: λ stayed 1.0
    for steps in (2049, 70000):  # 0b3caed: 2048, and -2**31
        with pytest.raises(ValueError, match="exactly only below 2048"):
            kind.load_values(layer, 0.5, steps, dtype=kind.mx.float16)
    assert kind.steps(layer) == 7


# ---------------------------------------------------------------------------------------------
# x64 turned on after the layer was built, and refused loads that leave the layer as it was.


def _jax_kind(kind: Any) -> None:
    stateful(kind)
    if kind.name not in ("nnx", "keras") or getattr(kind, "backend", "jax") != "jax":
        pytest.skip("JAX's x64 switch")


@pytest.mark.parametrize("how", ["built", "set", "scheduled"])
def test_x64_turned_on_after_the_layer_was_built(kind: Any, how: str) -> None:
    """Built without jax_enable_x64 (float32 storage), then x64 on: float64 gradients use the
    float64 λ (b26c8e3: g * -0.10000000149)."""
    _jax_kind(kind)
    schedule = schedules.linear(0.1, 1.1, 10)  # schedule(0) = 0.1, schedule(1) = 0.2
    with x64(kind.adapter.jax, False):
        layer = kind.make(schedule=schedule) if how == "scheduled" else kind.make(0.1)
        if how == "set":
            kind.set(layer, 0.7)
    want = {"built": 0.1, "set": 0.7, "scheduled": 0.1}[how]
    g = G.astype(np.float64)
    assert kind.get(layer) == want
    np.testing.assert_array_equal(kind.grad(layer, X.astype(np.float64), g), g * -want)
    np.testing.assert_array_equal(kind.grad(layer, X, G), _reference.reverse_grad(G, want))
    if how == "scheduled":
        assert kind.step(layer) == schedule(1)
        np.testing.assert_array_equal(kind.grad(layer, X.astype(np.float64), g), g * -schedule(1))


def test_nnx_x64_turned_on_after_build_inside_jit(kind: Any) -> None:
    if kind.name != "nnx":
        pytest.skip("nnx.jit")
    nnx, jnp = kind.nnx, kind.jax.numpy
    with x64(kind.adapter.jax, False):
        layer = kind.make(0.1)

    @nnx.jit
    def grad(layer: Any, x: Any) -> Any:
        return kind.jax.grad(lambda x: layer(x).sum())(x)

    assert float(grad(layer, jnp.ones(2, jnp.float64))[0]) == -0.1
    layer.lambda_ = 0.3  # no retrace, and still the float64 λ
    assert float(grad(layer, jnp.ones(2, jnp.float64))[0]) == -0.3


def test_a_refused_load_leaves_the_layer_as_it_was(kind: Any) -> None:
    """nnx.update and a model's MLX load_weights write variable by variable: b26c8e3 wrote λ
    before refusing the step count, so the refused load left λ changed."""
    stateful(kind)
    layer = kind.make(schedule=schedules.linear(0.0, 1.0, 10))
    kind.step(layer)
    before = (kind.get(layer), kind.steps(layer), layer.schedule)
    for steps in (-1, 1.5, 2**31):
        with pytest.raises(ValueError, match="step count"):
            _load_model_level(kind, layer, 0.25, steps)
        if kind.name == "nnx":  # the documented gap: nnx.update wrote λ before the refusal
            assert (kind.steps(layer), layer.schedule) == before[1:], steps
            assert kind.get(layer) == 0.25
            continue
        assert (kind.get(layer), kind.steps(layer), layer.schedule) == before, steps


def _load_model_level(kind: Any, layer: Any, lam: float, steps: Any) -> None:
    """λ and the step count written by the framework's model-level load, not the layer's."""
    if kind.name == "mlx":
        import struct

        mx = kind.mx
        model = kind.nn.Sequential(layer)
        weights = dict(__import__("mlx.utils").utils.tree_flatten(model.parameters()))
        weights["layers.0.lam"] = mx.array(list(struct.pack("<d", lam)), mx.uint8)
        weights["layers.0.steps"] = mx.array(steps, mx.float32)
        model.load_weights(list(weights.items()))
    elif kind.name == "keras":
        inp = kind.keras.Input((3,))
        model = kind.keras.Model(inp, layer(inp))
        weights = model.get_weights()
        weights[0], weights[1] = np.asarray(lam), np.asarray(steps)
        model.set_weights(weights)
    else:
        kind.load_values(layer, lam, steps)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_keras_model_set_weights_is_checked(kind: Any, bad: float) -> None:
    """Model.set_weights assigns the variables directly, past the layer's set_weights:
    b26c8e3 stored a NaN or inf λ and gave NaN gradients."""
    if kind.name != "keras":
        pytest.skip("Keras Model.set_weights")
    layer = kind.make(0.5)
    with pytest.raises(ValueError, match=r"gradrev\.keras\.GradientReversal"):
        _load_model_level(kind, layer, bad, 0)
    assert kind.get(layer) == 0.5 and kind.steps(layer) == 0
    np.testing.assert_array_equal(kind.grad(layer, X, G), _reference.reverse_grad(G, 0.5))


def test_mlx_model_level_load_of_a_misshapen_lambda_changes_nothing(kind: Any) -> None:
    """MLX's strict load_weights checks every shape before writing, with its own message
    (docs/semantics.md says why gradrev cannot word it); strict=False reaches the layer and
    gets gradrev's error. Either way the layer is unchanged."""
    if kind.name != "mlx":
        pytest.skip("mlx load_weights")
    mx, layer = kind.mx, kind.make(0.5)
    model = kind.nn.Sequential(layer)
    weights = dict(__import__("mlx.utils").utils.tree_flatten(model.parameters()))
    weights["layers.0.lam"] = mx.array([0.5, 0.5, 0.5])
    weights["layers.0.steps"] = mx.array(3, mx.int32)
    with pytest.raises(ValueError, match=r"Expected shape \(8,\) but received shape \(3,\)"):
        model.load_weights(list(weights.items()))
    assert kind.get(layer) == 0.5 and kind.steps(layer) == 0
    with pytest.raises(ValueError, match=r"gradrev\.mlx\.GradientReversal: lam holds"):
        model.load_weights(list(weights.items()), strict=False)
    assert kind.get(layer) == 0.5 and kind.steps(layer) == 0


def test_keras_weights_without_or_with_lambda_bits(kind: Any, tmp_path: Any) -> None:
    """A [λ, steps] list (the layout before lambda_bits) still loads; through Model.set_weights
    a float32 λ weight next to the exact bytes (a Keras-JAX run without x64) gives the exact
    λ, and a λ edited on its own in the list wins over the stale bytes."""
    if kind.name != "keras":
        pytest.skip("Keras weights")
    keras = kind.keras
    layer = kind.make(0.5)
    layer.set_weights([np.asarray(0.1), np.asarray(3)])  # the two-weight layout
    assert kind.get(layer) == 0.1 and kind.steps(layer) == 3
    inp = keras.Input((3,))
    model = keras.Model(inp, layer(inp))
    weights = model.get_weights()
    weights[0] = np.float32(0.1)  # the weight a Keras-JAX run without x64 saves
    model.set_weights(weights)
    assert kind.get(layer) == 0.1
    if kind.backend != "jax":  # float64 inputs (Keras-JAX here may run without x64)
        g = G.astype(np.float64)
        np.testing.assert_array_equal(kind.grad(layer, X.astype(np.float64), g), g * -0.1)
    weights[0] = np.asarray(0.7)  # edited on its own: the stale bytes say 0.1
    model.set_weights(weights)
    assert kind.get(layer) == 0.7
    np.testing.assert_array_equal(kind.grad(layer, X, G), _reference.reverse_grad(G, 0.7))


_SAVE_WITHOUT_X64 = """
import sys, keras
from gradrev import schedules
from gradrev.keras import GradientReversal
inp = keras.Input((3,))
a, b = GradientReversal(0.1, name="a"), GradientReversal(schedule=schedules.linear(0.1, 1.1, 10), name="b")
model = keras.Model(inp, b(a(inp)))
assert a.lam.dtype == "float32", a.lam.dtype  # JAX without x64
model.save(sys.argv[1] + "/model.keras")
model.save_weights(sys.argv[1] + "/model.weights.h5")
"""

_LOAD = """
import sys, keras
from gradrev.keras import GradientReversal
loaded = keras.saving.load_model(sys.argv[1] + "/model.keras")
inp = keras.Input((3,))
a, b = GradientReversal(1.0, name="a"), GradientReversal(1.0, name="b")
fresh = keras.Model(inp, b(a(inp)))
fresh.load_weights(sys.argv[1] + "/model.weights.h5")
print(repr([loaded.get_layer("a").lambda_, loaded.get_layer("b").lambda_, a.lambda_, b.lambda_]))
"""


def _keras_script(backend: str, script: str, *args: str, x64_on: bool = False) -> str:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_ENABLE_X64": "1" if x64_on else "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (proc.stdout.strip().splitlines() or [""])[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "x64_on"), [("tensorflow", False), ("torch", False), ("jax", True)]
)
def test_keras_jax_file_saved_without_x64_loads_the_exact_lambda(
    tmp_path: Any, backend: str, x64_on: bool
) -> None:
    """b26c8e3: a Keras-JAX file saved without x64 held float32 λ, which loaded elsewhere as
    0.10000000149011612 (.keras files and .weights.h5 alike)."""
    from test_layers import KERAS_CHILD, importlib_missing

    if __import__("os").environ.get(KERAS_CHILD) or importlib_missing("keras"):
        pytest.skip("runs Keras in child processes, one per backend")
    for module in ("jax", backend):
        pytest.importorskip(module)
    _keras_script("jax", _SAVE_WITHOUT_X64, str(tmp_path))
    got = _keras_script(backend, _LOAD, str(tmp_path), x64_on=x64_on)
    assert got == repr([0.1, 0.1, 0.1, 0.1])


# ---------------------------------------------------------------------------------------------
# torch: the load, cast and compile paths.


@pytest.fixture
def torch() -> Any:
    from conftest import KERAS_CHILD
    from test_layers import importlib_missing

    if importlib_missing("torch") or __import__("os").environ.get(KERAS_CHILD):
        pytest.skip("torch layer")
    import torch

    return torch


def _grad(torch: Any, module: Any, dtype: Any = None) -> Any:
    x = torch.tensor(X, dtype=dtype or torch.float32, requires_grad=True)
    module(x).backward(torch.tensor(G, dtype=x.dtype))
    return x.grad


def test_torch_assign_load_of_a_float32_checkpoint_keeps_float64(torch: Any) -> None:
    """gradrev 0.1's checkpoint (0-d float32 λ) loaded with assign=True, as into a meta model."""
    from gradrev.torch import GradientReversal

    with torch.device("meta"):
        layer = GradientReversal()
    layer.load_state_dict({"lam": torch.tensor(0.5), "steps": torch.tensor(3)}, assign=True)
    assert layer.lam.dtype == torch.float64 and layer.lam.shape == (1,)
    assert layer.lambda_ == 0.5 and int(layer.steps) == 3 and layer.schedule is None
    layer.lambda_ = 0.1
    got = _grad(torch, layer, torch.float64)
    np.testing.assert_array_equal(got.numpy(), G.astype(np.float64) * -0.1)  # not −0.10000000149


def test_torch_state_dict_holds_tensors_only_and_old_checkpoints_load(torch: Any) -> None:
    """safetensors (Accelerate, Hugging Face) saves tensors only; 0b3caed put a dict in it."""
    from gradrev.torch import GradientReversal

    dann = schedules.dann(total_steps=100)
    layer = GradientReversal(schedule=dann)
    layer.step()
    state = layer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values()), state
    old = {
        "lam": state["lam"],
        "steps": state["steps"],
        "_extra_state": {"schedule": dann.to_dict()},
    }
    restored = GradientReversal()
    restored.load_state_dict(old)  # 0b3caed's format
    assert restored.schedule == dann and restored.step() == dann(2)


# gradrev 0.1's torch layer (6854578, the first one; __version__ "0.1.0") saved λ as a 0-d
# float32 buffer, the step count as a 0-d int64 buffer and the schedule as a dict in
# get_extra_state. These are the state dicts it wrote, key for key and dtype for dtype
# (generated with that commit's gradrev.torch, torch 2.13): name -> (torch) -> (state,
# prefix, λ its lambda_ read, steps, schedule, λ after one more step()).
_GRADREV_0_1: dict[str, Any] = {
    "dann(100), 3 steps": lambda t: (
        {
            "lam": t.tensor(schedules.dann(100)(3), dtype=t.float32),
            "steps": t.tensor(3),
            "_extra_state": {
                "schedule": {"name": "dann", "total_steps": 100, "gamma": 10.0, "lambda_max": 1.0}
            },
        },
        "",
        float(np.float32(schedules.dann(100)(3))),
        3,
        schedules.dann(100),
        schedules.dann(100)(4),
    ),
    "constant 0.3, 1 step": lambda t: (
        {"lam": t.tensor(0.3), "steps": t.tensor(1), "_extra_state": {"schedule": None}},
        "",
        float(np.float32(0.3)),  # what 0.1's lambda_ read: float(float32 buffer)
        1,
        None,
        float(np.float32(0.3)),
    ),
    "linear in a Sequential": lambda t: (
        {
            "0.weight": t.ones(2, 2),
            "0.bias": t.zeros(2),
            "1.lam": t.tensor(0.0),
            "1.steps": t.tensor(0),
            "1._extra_state": {
                "schedule": {"name": "linear", "start": 0.0, "end": 1.0, "total_steps": 10}
            },
        },
        "1.",
        0.0,
        0,
        schedules.linear(0.0, 1.0, 10),
        0.1,
    ),
}


@pytest.mark.parametrize("assign", [False, True], ids=["copy", "assign"])
@pytest.mark.parametrize("case", list(_GRADREV_0_1))
def test_torch_loads_gradrev_0_1_checkpoints(torch: Any, case: str, assign: bool) -> None:
    """Issue 21: the _load_from_state_dict path for gradrev 0.1's checkpoints had no test (the
    one above loads today's (1,) float64 λ with a dict beside it, never 0.1's 0-d float32)."""
    import io

    from gradrev.torch import GradientReversal

    old, prefix, lam, steps, schedule, after = _GRADREV_0_1[case](torch)
    buffer = io.BytesIO()
    torch.save(old, buffer)  # as 0.1 saved it: the extra state's dict loads with weights_only
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), GradientReversal(0.7))
    layer = model[1] if prefix else GradientReversal(schedule=schedules.linear(0.5, 0.0, 4))
    (model if prefix else layer).load_state_dict(loaded, strict=True, assign=assign)
    assert (layer.lambda_, int(layer.steps), layer.schedule) == (lam, steps, schedule)
    assert layer.lam.dtype == torch.float64 and layer.lam.shape == (1,)
    assert sorted(layer.state_dict()) == ["lam", "schedule_config", "steps"]  # today's format
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.tolist() == [-lam] * 3  # the λ 0.1's buffer held, bit for bit
    assert layer.step() == after and int(layer.steps) == steps + 1


def _saved_state(torch: Any) -> dict[str, Any]:
    from gradrev.torch import GradientReversal

    layer = GradientReversal(schedule=schedules.dann(total_steps=100))
    layer.step()
    return layer.state_dict()


# State-dict entries that no gradrev layer saved: name -> (torch, saved config) -> (key, value).
_MALFORMED: dict[str, Any] = {
    "config shorter": lambda t, c: ("schedule_config", c[:200]),
    "config shorter, all JSON": lambda t, c: ("schedule_config", c[: c.nonzero().max() + 1]),
    "config longer": lambda t, c: ("schedule_config", t.cat([c, c])),
    "config 2-D": lambda t, c: ("schedule_config", c.reshape(16, 16)),
    "config 0-d": lambda t, c: ("schedule_config", t.tensor(3, dtype=t.uint8)),
    "config fractional": lambda t, c: ("schedule_config", c.double() + 0.5),
    "config negative": lambda t, c: ("schedule_config", -c.double()),
    "config above 255": lambda t, c: ("schedule_config", c.long() + 256),
    "config nan": lambda t, c: ("schedule_config", t.full((256,), float("nan"))),
    "config complex": lambda t, c: ("schedule_config", c.to(t.complex64)),
    "config meta": lambda t, c: ("schedule_config", c.to("meta")),
    "config a list": lambda t, c: ("schedule_config", c.tolist()),
    "lam a list": lambda t, c: ("lam", [0.5]),
    "lam complex": lambda t, c: ("lam", t.tensor([1 + 2j])),
    "lam meta": lambda t, c: ("lam", t.zeros(1, dtype=t.float64, device="meta")),
    "steps an int": lambda t, c: ("steps", 3),
    "steps shape (3,)": lambda t, c: ("steps", t.zeros(3)),
}


@pytest.mark.parametrize("bad", list(_MALFORMED))
def test_torch_malformed_state_is_gradrevs_error_and_changes_nothing(torch: Any, bad: str) -> None:
    """0b9fe08: torch's size-mismatch RuntimeError (or another of torch's errors), a
    misleading "not gradrev's" message, or a silent load (a NaN config read as no schedule)."""
    from gradrev.torch import GradientReversal

    saved = _saved_state(torch)
    key, value = _MALFORMED[bad](torch, saved["schedule_config"])
    layer = GradientReversal(schedule=schedules.linear(0.0, 1.0, 10))
    layer.step()
    with pytest.raises((ValueError, TypeError)) as caught:
        layer.load_state_dict({**saved, key: value})
    message = str(caught.value)
    assert message.startswith(f"gradrev.torch.GradientReversal: the restored {key} "), message
    assert "got " in message, message
    assert layer.schedule == schedules.linear(0.0, 1.0, 10) and int(layer.steps) == 1
    assert layer.lambda_ == schedules.linear(0.0, 1.0, 10)(1)


def test_torch_schedule_config_cast_to_a_float_dtype_loads(torch: Any) -> None:
    """A state dict whose tensors were all cast to float (bytes are whole numbers below 256,
    which float16 holds exactly) restores the same schedule, as an MLX cast file does."""
    from gradrev.torch import GradientReversal

    state = _saved_state(torch)
    for dtype in (torch.float16, torch.float32, torch.int64):
        cast = {**state, "schedule_config": state["schedule_config"].to(dtype)}
        layer = GradientReversal()
        layer.load_state_dict(cast)
        assert layer.schedule == schedules.dann(total_steps=100) and int(layer.steps) == 1
        assert layer.schedule_config.dtype == torch.uint8
        assert layer.step() == schedules.dann(total_steps=100)(2)


def test_torch_safetensors_round_trip_continues_the_run(torch: Any, tmp_path: Any) -> None:
    """safetensors' save_file/load_file (HF Accelerate's save_state default) of a model holding
    a scheduled layer: the loaded copy, built with another schedule, trains on bit-exactly.
    0b3caed: save_file refused the dict in the state dict ("Key `1._extra_state` is invalid,
    expected torch.Tensor"; Accelerate's save_state: AttributeError on its 'storage')."""
    st = pytest.importorskip("safetensors.torch")
    from gradrev.torch import GradientReversal

    def model(schedule: Any, seed: int) -> Any:
        torch.manual_seed(seed)
        grl = GradientReversal(schedule=schedule)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), grl, torch.nn.Linear(4, 1)), grl

    def train(net: Any, grl: Any, steps: int) -> None:
        sgd = torch.optim.SGD(net.parameters(), lr=0.1)  # no momentum: no optimizer state
        for _ in range(steps):
            sgd.zero_grad()
            net(torch.tensor(X[:, :3])).square().sum().backward()
            sgd.step()
            grl.step()

    dann = schedules.dann(total_steps=20)
    net, grl = model(dann, 0)
    train(net, grl, 3)
    st.save_file(net.state_dict(), str(tmp_path / "model.safetensors"))
    loaded, loaded_grl = model(schedules.linear(0.0, 1.0, 5), 1)
    loaded.load_state_dict(st.load_file(str(tmp_path / "model.safetensors")))
    assert loaded_grl.schedule == dann and int(loaded_grl.steps) == 3
    assert loaded_grl.lambda_ == grl.lambda_ == dann(3)
    train(net, grl, 4)
    train(loaded, loaded_grl, 4)
    assert loaded_grl.lambda_ == grl.lambda_ == dann(7)
    for (name, want), got in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert want.dtype == got.dtype and torch.equal(want, got), name


def test_torch_buffer_data_rewritten_to_bfloat16_keeps_lambda(torch: Any) -> None:
    """FSDP1's MixedPrecision(buffer_dtype=bfloat16) sets the buffer's .data directly."""
    from gradrev.torch import GradientReversal

    layer = GradientReversal(0.3)
    layer.lam.data = layer.lam.data.to(torch.bfloat16)  # what FSDP1's lazy init does
    assert layer.lambda_ == 0.3
    assert float(layer.state_dict()["lam"]) == 0.3  # not 0.30078125
    np.testing.assert_array_equal(_grad(torch, layer).numpy(), _reference.reverse_grad(G, 0.3))
    assert layer.lam.dtype == torch.float64  # put back by the forward


def test_torch_functional_call_with_cast_buffers_keeps_lambda(torch: Any) -> None:
    from gradrev.torch import GradientReversal

    layer = GradientReversal(0.3)
    cast = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in layer.state_dict().items()
    }
    x = torch.tensor(X, requires_grad=True)
    torch.func.functional_call(layer, cast, (x,)).backward(torch.tensor(G))
    np.testing.assert_array_equal(x.grad.numpy(), _reference.reverse_grad(G, 0.3))
    other = {**layer.state_dict(), "lam": torch.tensor([0.7], dtype=torch.bfloat16)}
    with pytest.raises(ValueError, match="must be held in float64"):
        torch.func.functional_call(layer, other, (x,))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_step_before_backward_uses_the_forward_lambda(
    torch: Any, backend: str
) -> None:
    from gradrev.compat.gradient_reversal import GradientReversalLayer
    from gradrev.torch import GradientReversal

    torch._dynamo.reset()
    layer = GradientReversal(schedule=schedules.linear(0.5, 1.0, 10))
    compiled = torch.compile(layer, backend=backend)
    x = torch.tensor(X, requires_grad=True)
    y = compiled(x)
    layer.step()  # docs/semantics.md: allowed between forward and backward, never raises
    y.backward(torch.tensor(G))
    np.testing.assert_array_equal(x.grad.numpy(), _reference.reverse_grad(G, 0.5))

    compat = GradientReversalLayer(alpha=0.5)
    for module in (compat, torch.compile(compat, backend=backend)):
        compat.set_alpha(0.5)
        x = torch.ones(2, requires_grad=True)
        y = module(x)
        compat.set_alpha(2.0)
        y.sum().backward()
        assert x.grad.tolist() == [-0.5, -0.5]  # as torch-gradient-reversal 1.0.0 gives


_FSDP1 = """
import os, socket, warnings
import torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, MixedPrecision
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from gradrev.torch import GradientReversal

warnings.filterwarnings("ignore")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
dist.init_process_group("gloo", rank=0, world_size=1)
linear, grl = torch.nn.Linear(3, 3), GradientReversal(0.3)
model = FSDP(torch.nn.Sequential(linear, grl), device_id=torch.device("cpu"),
             mixed_precision=MixedPrecision(buffer_dtype=torch.bfloat16))
seen = {}
linear.register_forward_hook(lambda m, i, o: seen.update(h=o) or o.retain_grad())
model(torch.ones(2, 3)).backward(torch.full((2, 3), 2.0))
config = FullStateDictConfig(rank0_only=False)
with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, config):
    saved = model.state_dict()["1.lam"]
print(grl.lambda_, seen["h"].grad[0, 0].item(), saved.dtype, saved.item())
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_torch_fsdp1_buffer_dtype_keeps_lambda(torch: Any) -> None:
    """FSDP1's MixedPrecision(buffer_dtype=bfloat16) (0b3caed: λ 0.30078125, saved so too)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _FSDP1], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lam, grad, dtype, saved = proc.stdout.split()[-4:]
    assert float(lam) == 0.3 and float(saved) == 0.3 and dtype == "torch.float64"
    assert float(grad) == float(np.float32(2.0) * -np.float32(0.3))
