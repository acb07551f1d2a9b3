"""Dispatch under each framework's tracer: no graph breaks, no recompiles, tracers accepted.

Each test first empties the dispatch cache, so that its first resolution happens inside
the trace, which is the case that used to recompile.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradrev
from gradrev import _dispatch


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    _dispatch._BACKEND_FOR_TYPE.clear()


@pytest.mark.slow
def test_torch_compile_fullgraph_one_graph_across_lambdas() -> None:
    torch = pytest.importorskip("torch")
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    step = torch.compile(
        lambda x, lam: (gradrev.reverse(x, lam) * 2).sum(), backend=counter, fullgraph=True
    )
    lam = torch.tensor(0.0)
    for i, value in enumerate([0.3, 0.5, -1.0, 2.0]):
        x = torch.ones(4, requires_grad=True)
        lam.fill_(value)
        step(x, lam).backward()
        torch.testing.assert_close(x.grad, torch.full((4,), -2 * value))
        if i == 1:  # a new entry in the dispatch cache must not invalidate the graph
            gradrev.reverse(torch.nn.Parameter(torch.ones(1)))
    assert counter.frame_count == 1


@pytest.mark.slow
def test_torch_compile_with_changing_python_float_lambda() -> None:
    """A changing Python float becomes a symbolic float under torch.compile; it still works."""
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    step = torch.compile(lambda x, lam: (gradrev.reverse(x, lam) * 2).sum(), fullgraph=True)
    for value in (0.3, 0.5, -1.0, 2.0):
        x = torch.ones(4, requires_grad=True)
        step(x, value).backward()
        assert torch.equal(x.grad, torch.full((4,), -2 * torch.tensor(value).item()))


@pytest.mark.slow
def test_torch_compile_python_float_lambda_compiles_twice() -> None:
    """Twelve Python-float λ values, more than TorchDynamo's cache holds: two compiles (torch >= 2.13)."""
    torch = pytest.importorskip("torch")
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    step = torch.compile(
        lambda x, lam: gradrev.reverse(x, lam).sum(), backend=counter, fullgraph=True
    )
    for i in range(12):
        x = torch.ones(4, requires_grad=True)
        step(x, i / 12).backward()
        assert torch.equal(x.grad, torch.full((4,), -(i / 12)))
    assert counter.frame_count == 2


def test_torch_parameter_and_subclass() -> None:
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.ones(3))
    gradrev.reverse(p, 0.5).sum().backward()
    assert torch.equal(p.grad, torch.full((3,), -0.5))


def test_jax_tracers_under_jit_vmap_grad() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = lambda x, lam: jnp.sum(gradrev.reverse(x, lam) ** 2)
    x = jnp.arange(6.0).reshape(2, 3)
    want = -0.5 * 2 * x
    traces = []

    @jax.jit
    def grad(x, lam):
        traces.append(1)
        return jax.grad(f)(x, lam)

    for lam in (0.5, 0.25, -3.0):
        np.testing.assert_array_equal(grad(x, jnp.float32(lam)), -lam * 2 * x)
    assert len(traces) == 1
    per_row = jax.vmap(jax.grad(f), in_axes=(0, None))(x, 0.5)
    np.testing.assert_array_equal(per_row, want)


def test_tf_function_and_variables_one_trace() -> None:
    tf = pytest.importorskip("tensorflow")
    v = tf.Variable([1.0, 2.0, 3.0])
    lam = tf.Variable(0.0, trainable=False)
    traces = []

    @tf.function(jit_compile=True)
    def grad():
        traces.append(1)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(gradrev.reverse(v, lam) * 2.0)
        return tape.gradient(y, v)

    for value in (0.3, 0.5, -1.0):
        lam.assign(value)
        np.testing.assert_array_equal(grad().numpy(), np.full(3, -2 * np.float32(value)))
    assert len(traces) == 1


def test_mlx_compile_one_trace_across_tensor_lambdas() -> None:
    mx = pytest.importorskip("mlx.core")
    traces = []

    def loss(x, lam):
        traces.append(1)
        return (gradrev.reverse(x, lam) * 2).sum()

    grad = mx.compile(mx.grad(loss))
    for value in (0.3, 0.5, -1.0, 2.0):
        got = grad(mx.ones(4), mx.array(value))
        np.testing.assert_array_equal(np.array(got), np.full(4, -2 * np.float32(value)))
    assert len(traces) == 1


def test_mlx_grad_of_a_vmapped_reversal() -> None:
    """mx.vmap must keep the custom VJP: grad of vmap(reverse) is −λ·g, never +g."""
    mx = pytest.importorskip("mlx.core")
    xb = mx.array(np.arange(6.0, dtype=np.float32).reshape(3, 2))
    w = mx.array(np.array([[1.0, 2.0]] * 3, np.float32))
    for in_axes in (0, 1):
        f = mx.vmap(lambda a: gradrev.reverse(a, 0.5), in_axes=in_axes, out_axes=in_axes)
        got = mx.grad(lambda b, f=f: (f(b) * w).sum())(xb)
        np.testing.assert_array_equal(np.array(got), -0.5 * np.array(w))


def test_mlx_vmap_over_lambda() -> None:
    """A batch of λ under mx.vmap: each example gets its own −λ·g (with and without grad outside)."""
    mx = pytest.importorskip("mlx.core")
    xb = mx.ones((3, 2))
    lams = mx.array([1.0, 2.0, 3.0])
    want = -np.array([[1.0] * 2, [2.0] * 2, [3.0] * 2], np.float32)
    per_example = mx.vmap(mx.grad(lambda a, lam: gradrev.reverse(a, lam).sum()))(xb, lams)
    np.testing.assert_array_equal(np.array(per_example), want)
    outside = mx.grad(lambda b: mx.vmap(gradrev.reverse)(b, lams).sum())(xb)
    np.testing.assert_array_equal(np.array(outside), want)
    shared = mx.grad(lambda b: mx.vmap(lambda lam: gradrev.reverse(b, lam))(lams).sum())(xb)
    np.testing.assert_array_equal(np.array(shared), np.full((3, 2), -6.0, np.float32))
