"""Property-based conformance (hypothesis): random shapes, strides, dtypes, λ and AD paths,
every backend against the reference bits. Kept apart so that the rest of the suite runs
where hypothesis is not installed (the GPU machines)."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from conftest import KERAS_CHILD, lacks, run_keras_child
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parity import DTYPES, assert_same_bits, expected, reversed_grad

from gradrev import _reference, schedules


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_property_parity(backend: Any, data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    shape = data.draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), label="shape"
    )
    dt = _reference.dtype(dtype)
    g = data.draw(
        hnp.arrays(np.float64, shape, elements=st.floats(allow_nan=True, allow_infinity=True)),
        label="g",
    )
    with np.errstate(over="ignore", invalid="ignore"):
        g = g.astype(dt)
    lam = data.draw(st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False), label="lam")
    as_tensor = data.draw(st.booleans(), label="lambda as tensor")
    held = float(np.asarray(lam, np.float32)) if as_tensor else lam
    if as_tensor and backend.flushes_subnormals() and abs(held) < np.finfo(np.float32).tiny:
        held = float(np.copysign(0.0, held))  # a subnormal float32 λ tensor reads as zero
    lam_arg = backend.scalar(lam, "float32") if as_tensor else lam
    assert_same_bits(reversed_grad(backend, g, lam_arg), expected(backend, g, held))


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_property_every_path_matches_torch(backend: Any, data: st.DataObject) -> None:
    """1,000 random cases per backend: shape, strides, dtype, λ and AD path, zero mismatches."""
    dtype = data.draw(st.sampled_from(["float16", "bfloat16", "float32", "float64"]), label="dtype")
    shape = data.draw(
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6), label="shape"
    )
    paths = ["vjp", "strided", "chained", "twice"]
    if backend.name == "jax" and lacks("strided-sign-of-zero"):
        paths.remove("strided")  # test_strided_view_keeps_the_sign_of_zero skips with the reason
    path = data.draw(st.sampled_from(paths), label="path")
    lam = data.draw(st.floats(-8, 8, allow_nan=False, allow_subnormal=False), label="lam")
    lam2 = data.draw(st.floats(-8, 8, allow_nan=False, allow_subnormal=False), label="lam2")
    dt = _reference.dtype(dtype)
    g = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e4, 1e4)), label="g").astype(
        dt
    )
    flush = backend.flushes_subnormals()
    ref = lambda a, lam_: _reference.reverse_grad(a, lam_, flush_subnormals=flush)
    R = backend.ops.reverse
    if path == "strided":  # reverse a transposed, step-sliced view
        x = backend.tensor(np.zeros(shape[::-1], dt))
        g_view = g[::2]
        got = backend.vjp(lambda a: R(backend.strided(a), lam), x, backend.tensor(g_view))
        want = np.zeros(shape[::-1], dt)
        want.T[::2] = ref(g_view, lam)
    else:
        x = backend.tensor(np.zeros(shape, dt))
        if path == "vjp":
            fn, want = (lambda a: R(a, lam)), ref(g, lam)
        elif path == "chained":
            fn, want = (lambda a: R(R(a, lam), lam2)), ref(ref(g, lam2), lam)
        else:  # the same reversal used twice: gradients add
            fn = lambda a: R(a, lam) + R(a, lam2)
            op = _reference.opmath(dt)  # autograd adds the two gradients in opmath too
            with np.errstate(all="ignore"):
                total = ref(g, lam).astype(op) + ref(g, lam2).astype(op)
                want = (_reference.flush(total) if flush else total).astype(dt)
        got = backend.vjp(fn, x, backend.tensor(g))
    diff = ~_reference.same_bits(got, want)
    assert not diff.any(), f"{int(diff.sum())} mismatches on path {path}"


# --- Hostile input at every edge (issue 20): only gradrev's errors, or correct results ----------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "value",
    "start",
    "end",
    "total_steps",
    "gamma",
    "lambda_max",
    "lambda_init",
    "normalize",
    "lo",
    "hi",
    "alpha",
    "max_iters",
    "clamp",
]
configs = st.fixed_dictionaries(
    {"name": st.sampled_from(["constant", "linear", "dann", "warm_start"]) | json_values}
) | st.dictionaries(st.sampled_from(["name", *FIELDS]) | st.text(max_size=4), json_values)
named_configs = st.builds(
    lambda name, fields: {"name": name, **fields},
    st.sampled_from(["constant", "linear", "dann", "warm_start"]),
    st.dictionaries(st.sampled_from(FIELDS), json_values | st.floats(-1e3, 1e3), max_size=6),
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(configs, named_configs, json_values))
def test_fuzzed_configs_give_a_schedule_or_gradrevs_value_error(config: Any) -> None:
    try:
        schedule = schedules.from_dict(config)
    except ValueError as e:
        assert str(e).startswith(
            ("gradrev.schedules.from_dict: ", "Constant: ", "Linear: ", "DANN: ", "WarmStart: ")
        ), e
        return
    assert schedules.from_dict(schedule.to_dict()) == schedule
    value = schedule(3)
    assert isinstance(value, float)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()[:256]))
def test_fuzzed_saved_schedule_bytes_give_a_schedule_or_gradrevs_error(data: bytes) -> None:
    from gradrev import _layer

    try:
        _layer.decode(data, "gradrev.layer")
    except (ValueError, TypeError) as e:
        assert str(e).startswith(("gradrev.", "Constant: ", "Linear: ", "DANN: ", "WarmStart: ")), e


# Random bad (and good) values for λ and α: the answer is a correct gradient or gradrev's error.
hostile_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(), max_size=3),
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int32, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
    ),
    st.just(object()),
)
GRADREV_ERROR = (TypeError, ValueError)


def _finite_real(value: Any) -> float | None:
    """The float a valid λ stands for, or None where gradrev must refuse it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if np.isfinite(number) else None


def _assert_gradrevs(error: Exception, *prefixes: str) -> None:
    assert isinstance(error, GRADREV_ERROR), f"{type(error).__name__}: {error}"
    assert str(error).startswith(prefixes), f"not gradrev's own error: {error}"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(lam=hostile_scalars)
def test_fuzzed_lambda_into_reverse(backend: Any, lam: Any) -> None:
    g = np.array([1.0, -2.0, 0.5], np.float32)
    x = backend.tensor(np.zeros(3, np.float32))
    want = _finite_real(lam)
    try:
        got = backend.vjp(lambda a: backend.ops.reverse(a, lam), x, backend.tensor(g))
    except Exception as e:
        assert want is None, f"λ={lam!r} is valid, but: {e!r}"
        _assert_gradrevs(e, "gradrev.reverse: ")
        return
    assert want is not None, f"λ={lam!r} was accepted"
    flushes = getattr(backend, "flushes_subnormals", lambda: False)()
    assert_same_bits(got, _reference.reverse_grad(g, want, flush_subnormals=flushes))


def _torch_lambdas() -> Any:
    import torch

    dtypes = [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool, torch.complex64]
    return st.builds(
        lambda dt, shape, v: torch.full(shape, v, dtype=torch.float64).to(dt),
        st.sampled_from(dtypes),
        st.sampled_from([(), (1,), (3,), (2, 1)]),
        st.floats(allow_nan=True, allow_infinity=True, width=16),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_lambda_into_the_raw_torch_operators(data: st.DataObject) -> None:
    """Values PyTorch's operator schema admits (a float, a tensor); other Python types are
    refused by PyTorch's dispatcher before gradrev's kernel runs (docs/deployment.md)."""
    torch = pytest.importorskip("torch")
    import gradrev.backends.torch  # noqa: F401  (registers the operators)

    lam = data.draw(
        st.floats(allow_nan=True, allow_infinity=True) | _torch_lambdas(), label="lambda_"
    )
    tensor = isinstance(lam, torch.Tensor)
    op = torch.ops.gradrev.reverse_lambda_tensor if tensor else torch.ops.gradrev.reverse
    valid = (
        lam.ndim == 0 and lam.is_floating_point() and bool(torch.isfinite(lam))
        if tensor
        else _finite_real(lam) is not None
    )
    x = torch.zeros(3, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.5])
    try:
        (got,) = torch.autograd.grad(op(x, lam), x, g)
    except Exception as e:
        assert not valid, f"λ={lam!r} is valid, but: {e!r}"
        _assert_gradrevs(e, "torch.ops.gradrev.")
        return
    held = float(lam) if tensor else lam
    if tensor and bool(torch.isfinite(lam)) is False:  # the kernel reads no tensor values
        return
    assert valid or (tensor and lam.ndim == 0 and lam.is_floating_point()), f"λ={lam!r} accepted"
    assert_same_bits(got.numpy(), _reference.reverse_grad(g.numpy(), held))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(alpha=hostile_scalars)
def test_fuzzed_alpha_into_the_drop_ins(alpha: Any) -> None:
    torch = pytest.importorskip("torch")
    from gradrev.compat import gradient_reversal, revgrad, tllib

    want = _finite_real(alpha)
    for name, fn in {
        "revgrad.RevGrad": lambda x: revgrad.RevGrad(alpha)(x),
        "revgrad.revgrad": lambda x: revgrad.revgrad(x, alpha),
        "gradient_reversal.GradientReversalLayer": lambda x: (
            gradient_reversal.GradientReversalLayer(alpha)(x)
        ),
        "gradient_reversal.gradient_reversal": lambda x: gradient_reversal.gradient_reversal(
            x, alpha
        ),
        "tllib.GradientReverseFunction": lambda x: tllib.GradientReverseFunction.apply(x, alpha),
    }.items():
        x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        try:
            fn(x).backward(torch.ones(3, dtype=torch.float64))
        except Exception as e:
            _assert_gradrevs(e, "gradrev.compat.")
            float32_held = name in ("revgrad.RevGrad", "gradient_reversal.GradientReversalLayer")
            assert want is None or (float32_held and abs(want) > 3.4e38), (name, e)
            continue
        if want is not None:
            assert x.grad is not None and np.isfinite(x.grad.numpy()).all(), name


_LAYER_NEEDS = {"torch": "torch", "nnx": "flax", "linen": "flax", "mlx": "mlx"}


@pytest.mark.parametrize("name", list(_LAYER_NEEDS))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(lam=hostile_scalars)
def test_fuzzed_lambda_into_the_layers(name: str, lam: Any) -> None:
    """Each layer's constructor and λ setter (Keras runs in its own child processes)."""
    pytest.importorskip(_LAYER_NEEDS[name])
    from layer_kinds import KINDS

    kind = KINDS[name]()
    layer = kind.make(0.5)
    g = np.ones(2, np.float32)
    for action in ("construct", "set"):
        # GradientReversal(None) is the default λ, 1.0.
        want = 1.0 if lam is None and action == "construct" else _finite_real(lam)
        if name == "linen" and action == "set" and lam is None:
            want = 1.0  # lambda_=None per call means the field's λ
        try:
            if action == "construct":
                layer = kind.make(lam)
            elif name == "linen":  # Linen's λ "setter" is the per-call argument, as given
                layer["lambda_"] = lam
            else:
                kind.set(layer, lam)
            got = kind.grad(layer, np.zeros(2, np.float32), g)
        except Exception as e:
            _assert_gradrevs(e, "gradrev.")
            assert want is None or abs(want) > 3.4e38, e  # beyond float32: the layers refuse
            continue
        assert want is not None, f"λ={lam!r} accepted by {action}"
        flushes = name in ("nnx", "linen")  # XLA's CPU flushes subnormals
        assert_same_bits(got, _reference.reverse_grad(g, want, flush_subnormals=flushes))


# The layers' loaders: random bad (and good) λ, step counts and schedule bytes, written the way
# a checkpoint restore writes them. The answer is gradrev's error with the layer unchanged, or
# a restore of exactly what was given.
_RAW_DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool", "complex64"]
_SAVED_SCHEDULES = [
    schedules.dann(total_steps=100),
    schedules.linear(0.0, 1.0, 10),
    schedules.constant(-0.5),
    None,
]


def _raw(dtype: str, shape: tuple[int, ...], value: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.full(shape, value, np.float64).astype(dtype)


raw_numbers = st.builds(
    _raw,
    st.sampled_from(_RAW_DTYPES),
    st.sampled_from([(), (1,), (2,)]),
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**32), 2**32).map(float)
    | st.sampled_from([0.0, -0.0, 0.5, 3.0, 2.0**31 - 1, 2.0**31, 1e39]),
)


def _config_bytes(data: bytes, dtype: str, fraction: float, length: int | None) -> np.ndarray:
    from gradrev import _layer

    array = np.frombuffer(data.ljust(_layer.CONFIG_BYTES, b"\0"), np.uint8).astype(np.float64)
    array = array[:length] if length is not None else array
    with np.errstate(all="ignore"):
        return (array + fraction).astype(dtype)


raw_configs = st.builds(
    _config_bytes,
    st.sampled_from([s.to_dict() if s else None for s in _SAVED_SCHEDULES]).map(
        lambda c: json.dumps(c, sort_keys=True).encode() if c else b""
    )
    | st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode()[:256]),
    st.sampled_from(["uint8", "uint8", "float16", "float32", "int64"]),
    st.sampled_from([0.0, 0.0, 0.0, 0.5, -1.0, 256.0, float("nan")]),
    st.sampled_from([None, None, 100, 300]),
)


def _denoted(raw: np.ndarray, *, whole: bool) -> float | None:
    """What a raw λ or step count stands for, or None where gradrev must refuse it."""
    if raw.size != 1 or raw.dtype.kind == "c":
        return None
    number = float(raw.reshape(()).astype(np.float64))
    if not np.isfinite(number):
        return None
    if whole and not (number.is_integer() and 0 <= number <= 2**31 - 1):
        return None
    return number


def _bytes_of(raw: np.ndarray) -> np.ndarray | None:
    """The bytes a raw array holds (whole numbers in [0, 255], any real dtype), or None."""
    if raw.dtype.kind == "c":
        return None
    wide = raw.astype(np.float64)
    if not (np.all(wide == np.floor(wide)) and np.all((wide >= 0) & (wide <= 255))):
        return None
    return wide.astype(np.uint8)


def _denoted_schedule(raw: np.ndarray) -> tuple[bool, Any]:
    """(whether the bytes are a valid saved config, the schedule they hold)."""
    from gradrev import _layer

    data = _bytes_of(raw)
    if data is None or raw.shape != (_layer.CONFIG_BYTES,):
        return False, None
    try:
        return True, _layer.decode(data.tobytes(), "gradrev.layer")
    except (TypeError, ValueError):
        return False, None


def _load(name: str, layer: Any, lam: np.ndarray, steps: np.ndarray, config: np.ndarray) -> None:
    """Write the raw arrays into ``layer`` through its framework's restore path."""
    if name == "torch":
        import torch

        state = {
            k: torch.from_numpy(np.array(v))
            for k, v in {"lam": lam, "steps": steps, "schedule_config": config}.items()
        }
        layer.load_state_dict(state)
    elif name == "nnx":
        from flax import nnx

        state = nnx.state(layer)
        nnx.replace_by_pure_dict(state, {"lam": lam, "steps": steps, "schedule_config": config})
        nnx.update(layer, state)
    else:
        import mlx.core as mx

        # MLX holds λ as its float64's 8 bytes: a finite-λ raw value travels as those bytes.
        arrays = {"lam": lam, "steps": steps, "schedule_config": config}
        layer.load_weights([(k, mx.array(v)) for k, v in arrays.items()])


def _state(layer: Any, name: str) -> tuple[float, int, Any]:
    steps = layer.steps
    count = int(np.asarray(steps[...] if name == "nnx" else steps))
    return layer.lambda_, count, layer.schedule


_LOADER_NEEDS = {"torch": "torch", "nnx": "flax", "mlx": "mlx"}


@pytest.mark.parametrize("name", list(_LOADER_NEEDS))
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(lam=raw_numbers, steps=raw_numbers, config=raw_configs, as_bits=st.booleans())
def test_fuzzed_state_into_the_layer_loaders(
    name: str, lam: np.ndarray, steps: np.ndarray, config: np.ndarray, as_bits: bool
) -> None:
    """torch load_state_dict, NNX nnx.update, MLX load_weights (Keras set_weights: the next test)."""
    pytest.importorskip(_LOADER_NEEDS[name])
    from layer_kinds import KINDS

    want_lam = _denoted(lam, whole=False)
    if name == "mlx":  # MLX holds λ as its float64's 8 bytes, in any dtype that holds them
        if as_bits and want_lam is not None:
            lam = np.frombuffer(np.float64(want_lam).tobytes(), np.uint8).astype(lam.dtype)
        bits = _bytes_of(lam) if lam.shape == (8,) else None
        want_lam = None if bits is None else _denoted(bits.view(np.float64), whole=False)
    want_steps = _denoted(steps, whole=True)
    if name == "mlx" and steps.dtype in (np.float16,) and want_steps is not None:
        want_steps = want_steps if want_steps < 2048 else None  # a cast may have rounded it
    valid_config, want_schedule = _denoted_schedule(config)
    layer = KINDS[name]().make(schedule=schedules.linear(0.0, 1.0, 10))
    layer.step()
    before = _state(layer, name)
    try:
        _load(name, layer, lam, steps, config)
        after = _state(layer, name)
    except Exception as e:
        _assert_gradrevs(e, "gradrev.")
        if name == "torch":  # NNX and MLX write variable by variable (docs/semantics.md)
            assert _state(layer, name) == before, f"a refused load changed the layer: {e}"
        return
    assert want_lam is not None and want_steps is not None and valid_config, (
        f"accepted λ={lam!r}, steps={steps!r}, config={config!r}: {after}"
    )
    assert after == (want_lam, int(want_steps), want_schedule)


@pytest.mark.skipif(
    not __import__("os").environ.get(KERAS_CHILD),
    reason="runs in a Keras child process per backend (test_fuzzed_keras_loaders)",
)
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(lam=raw_numbers, steps=raw_numbers)
def test_fuzzed_state_into_keras_set_weights(lam: np.ndarray, steps: np.ndarray) -> None:
    """The Keras layer's set_weights([λ, step count]), on the child's Keras backend."""
    import keras

    from gradrev.keras import GradientReversal

    layer = GradientReversal(schedule=schedules.linear(0.0, 1.0, 10))
    layer.step()
    dtype = layer.lam.dtype
    want_lam, want_steps = _denoted(lam, whole=False), _denoted(steps, whole=True)
    if want_lam is not None and dtype == "float32" and abs(want_lam) > 3.4028234663852886e38:
        want_lam = None  # beyond float32 storage (JAX without x64): refused
    try:
        layer.set_weights([lam, steps])
    except Exception as e:
        _assert_gradrevs(e, "gradrev.")
        return
    assert want_lam is not None and want_steps is not None, f"accepted λ={lam!r}, steps={steps!r}"
    got_steps = int(keras.ops.convert_to_numpy(layer.steps.value))
    # λ exactly as given: float32 storage (JAX without x64) keeps λ's float64 bytes too.
    assert (layer.lambda_, got_steps) == (want_lam, int(want_steps))


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_fuzzed_keras_loaders(keras_backend: str) -> None:
    from pathlib import Path

    run_keras_child(keras_backend, Path(__file__), select="fuzzed_state_into_keras_set_weights")
