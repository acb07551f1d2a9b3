"""The sections that hold in every framework: dispatch, compiled gradients, recompiles, and
what JAX keeps for backward. One case table per section, keyed by framework."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

from gradrev.tools.bench_core import ROWS, compare, median, quartiles, ratios, repeated, row, timeit

# -- Dispatch ---------------------------------------------------------------------------------


def _dispatch_torch() -> tuple[Any, Any]:
    import torch

    from gradrev.backends import torch as backend

    return torch.ones(8, requires_grad=True), backend


def _dispatch_jax() -> tuple[Any, Any]:
    import jax.numpy as jnp

    from gradrev.backends import jax as backend

    return jnp.ones(8), backend


def _dispatch_tensorflow() -> tuple[Any, Any]:
    import tensorflow as tf

    from gradrev.backends import tensorflow as backend

    return tf.ones(8), backend


def _dispatch_mlx() -> tuple[Any, Any]:
    import mlx.core as mx

    from gradrev.backends import mlx as backend

    return mx.ones(8), backend


DISPATCH: dict[str, Callable[[], tuple[Any, Any]]] = {
    "torch": _dispatch_torch,
    "jax": _dispatch_jax,
    "tensorflow": _dispatch_tensorflow,
    "mlx": _dispatch_mlx,
}


def bench_dispatch(framework: str, rounds: int) -> None:
    """What ``gradrev.reverse`` adds to the backend function: ≤ 1.10× it, or ≤ 0.5 µs.

    The second bound is for backends whose direct call now costs about 1 µs (JAX, MLX),
    where dispatch's one dict lookup and torch.compile check alone read as 1.3×.
    """
    import gradrev

    x, backend = DISPATCH[framework]()
    loops = 200
    samples = timeit(
        {
            "dispatch": repeated(lambda: gradrev.reverse(x, 0.5), loops),
            "direct": repeated(lambda: backend.reverse(x, 0.5), loops),
        },
        rounds,
    )
    each = ratios(samples, "dispatch", "direct")
    added = [(a - b) / loops * 1e6 for a, b in zip(samples["dispatch"], samples["direct"])]
    spread = quartiles(each)
    row(
        "dispatch: gradrev.reverse vs the backend function, 8 elements",
        framework,
        median(samples["dispatch"]) / loops * 1e6,
        "µs/call",
        "direct",
        median(each),
        f"≤ 1.10× or ≤ 0.5 µs added ({median(added):.2f} µs)",
        spread[0] <= 1.10 or quartiles(added)[0] <= 0.5,
        spread,
    )


# -- Compiled gradients -----------------------------------------------------------------------


def _compiled_jax(n: int, quick: bool) -> tuple[str, Callable[[], Any], Callable[[], Any]]:
    import jax
    import jax.numpy as jnp

    import gradrev

    x, lam = jnp.linspace(-3, 3, n), jnp.float32(0.5)
    through = jax.jit(jax.grad(lambda x, lam: jnp.sum(jnp.sin(gradrev.reverse(x, lam)))))
    by_hand = jax.jit(lambda x, lam: -lam * jax.grad(lambda x: jnp.sum(jnp.sin(x)))(x))
    return (
        "jax.jit",
        lambda: through(x, lam).block_until_ready(),
        lambda: by_hand(x, lam).block_until_ready(),
    )


def _compiled_tensorflow(n: int, quick: bool) -> tuple[str, Callable[[], Any], Callable[[], Any]]:
    import tensorflow as tf

    import gradrev

    xt, lt = tf.linspace(-3.0, 3.0, n), tf.constant(0.5)

    @tf.function(jit_compile=True)
    def grad_tf(x: Any, lam: Any, through: bool) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.sin(gradrev.reverse(x, lam) if through else x))
        g = tape.gradient(y, x)
        return g if through else -lam * g

    return (
        "tf.function(jit_compile=True)",
        lambda: grad_tf(xt, lt, True).numpy(),
        lambda: grad_tf(xt, lt, False).numpy(),
    )


def _compiled_torch(n: int, quick: bool) -> tuple[str, Callable[[], Any], Callable[[], Any]]:
    import torch

    import gradrev

    # Inductor alone takes about 10 s to compile the two small graphs: --quick skips it.
    backend = "aot_eager" if quick else "inductor"
    xs, ls = torch.linspace(-3, 3, n), torch.tensor(0.5)
    f1 = torch.compile(
        lambda x, lam: torch.sin(gradrev.reverse(x, lam)).sum(), fullgraph=True, backend=backend
    )
    f2 = torch.compile(lambda x: torch.sin(x).sum(), fullgraph=True, backend=backend)

    def through() -> Any:
        x = xs.detach().requires_grad_(True)
        f1(x, ls).backward()
        return x.grad

    def by_hand() -> Any:
        x = xs.detach().requires_grad_(True)
        f2(x).backward()
        return -ls * x.grad  # type: ignore[operator]  # set by backward

    label = "" if backend == "inductor" else f", backend={backend!r}"
    return f"torch.compile(fullgraph=True{label})", through, by_hand


def _compiled_mlx(n: int, quick: bool) -> tuple[str, Callable[[], Any], Callable[[], Any]]:
    import mlx.core as mx

    import gradrev

    x, lam = mx.linspace(-3, 3, n), mx.array(0.5)
    through = mx.compile(mx.grad(lambda x, lam: mx.sum(mx.sin(gradrev.reverse(x, lam)))))
    plain = mx.grad(lambda x: mx.sum(mx.sin(x)))
    by_hand = mx.compile(lambda x, lam: -lam * plain(x))
    return "mx.compile", lambda: mx.eval(through(x, lam)), lambda: mx.eval(by_hand(x, lam))


COMPILED: dict[str, Callable[[int, bool], tuple[str, Callable[[], Any], Callable[[], Any]]]] = {
    "torch": _compiled_torch,
    "jax": _compiled_jax,
    "tensorflow": _compiled_tensorflow,
    "mlx": _compiled_mlx,
}


def bench_compiled(framework: str, n: int, rounds: int, quick: bool) -> None:
    compiler, through, by_hand = COMPILED[framework](n, quick)
    loops = 10 if quick else 3  # a sample of at least a few milliseconds
    samples = timeit(
        {"through": repeated(through, loops), "by hand": repeated(by_hand, loops)}, rounds
    )
    # aot_eager (--quick) runs the traced ops one by one, without fusion: no target there.
    limit = None if "aot_eager" in compiler else 1.10
    compare(
        f"compiled gradient of Σ sin(R(x)), 2^{n.bit_length() - 1} float32, vs -λ·∇Σ sin(x) by hand",
        compiler,
        samples,
        "through",
        "by hand",
        limit,
        per_call=loops,
        scale=1e3,
        unit="ms",
        target="(no fusion)" if limit is None else None,
    )


# -- Recompiles -------------------------------------------------------------------------------


def _recompiles_torch(lambdas: list[float]) -> None:
    import torch

    # private API [torch-compile-counter]: docs/private-apis.md
    from torch._dynamo.testing import CompileCounterWithBackend

    import gradrev

    for form in ("0-d tensor", "Python float"):
        torch.compiler.reset()
        counter = CompileCounterWithBackend("aot_eager")
        f = torch.compile(
            lambda x, lam: gradrev.reverse(x, lam).sum(), backend=counter, fullgraph=True
        )
        lam_t = torch.tensor(0.0)
        for v in lambdas:
            x = torch.ones(4, requires_grad=True)
            if form == "0-d tensor":
                lam_t.fill_(v)
                f(x, lam_t).backward()
            else:
                f(x, v).backward()
        _recompile_row("torch.compile", form, counter.frame_count, len(lambdas))


def _recompiles_jax(lambdas: list[float]) -> None:
    import jax
    import jax.numpy as jnp

    import gradrev

    traces: list[int] = []

    @jax.jit
    def g(x: Any, lam: Any) -> Any:
        traces.append(1)
        return jax.grad(lambda x: jnp.sum(gradrev.reverse(x, lam)))(x)

    for v in lambdas:
        g(jnp.ones(4), jnp.float32(v))
    _recompile_row("jax.jit", "0-d array", len(traces), len(lambdas))


def _recompiles_tensorflow(lambdas: list[float]) -> None:
    import tensorflow as tf

    import gradrev

    lam_v = tf.Variable(0.0)

    @tf.function(jit_compile=True)
    def h(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(gradrev.reverse(x, lam_v))
        return tape.gradient(y, x)

    for v in lambdas:
        lam_v.assign(v)
        h(tf.ones(4))
    count = h.experimental_get_tracing_count()
    _recompile_row("tf.function(jit_compile=True)", "tf.Variable", count, len(lambdas))


def _recompiles_mlx(lambdas: list[float]) -> None:
    import mlx.core as mx

    import gradrev

    traces: list[int] = []

    def step(x: Any, lam: Any) -> Any:
        traces.append(1)  # Python runs only while mx.compile traces
        return mx.grad(lambda x: mx.sum(gradrev.reverse(x, lam)))(x)

    compiled = mx.compile(step)
    for v in lambdas:
        mx.eval(compiled(mx.ones(4), mx.array(v)))
    _recompile_row("mx.compile", "0-d array", len(traces), len(lambdas))


RECOMPILES: dict[str, Callable[[list[float]], None]] = {
    "torch": _recompiles_torch,
    "jax": _recompiles_jax,
    "tensorflow": _recompiles_tensorflow,
    "mlx": _recompiles_mlx,
}


def bench_recompiles(framework: str, values: int) -> None:
    RECOMPILES[framework]([i / values for i in range(values)])


def _recompile_row(compiler: str, form: str, count: int, values: int) -> None:
    expect_one = form != "Python float"
    row(
        f"compiles over {values} λ values",
        f"{compiler}, λ as {form}",
        count,
        "compiles",
        target="1" if expect_one else "(for contrast)",
        ok=count == 1 if expect_one else None,
    )


# -- What JAX keeps for backward --------------------------------------------------------------


def bench_jax_residuals() -> None:
    import jax.numpy as jnp

    import gradrev

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        from jax.ad_checkpoint import print_saved_residuals

        print_saved_residuals(
            lambda x, lam: gradrev.reverse(x, lam), jnp.ones(1 << 20), jnp.float32(0.5)
        )
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    only_lambda = all("[]" in ln for ln in lines)  # scalars only: λ
    row(
        "JAX residuals of reverse(x: f32[2^20], λ)",
        "gradrev",
        len(lines),
        "residuals",
        target="only λ (0-d)",
        ok=only_lambda and len(lines) <= 1,
    )
    ROWS[-1]["detail"] = lines  # in the JSON: what each residual is
