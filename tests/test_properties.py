"""Property-based conformance (hypothesis): random shapes, strides, dtypes, λ and AD paths,
every backend against the reference bits. Kept apart so that the rest of the suite runs
where hypothesis is not installed (the GPU machines)."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from conftest import lacks
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
