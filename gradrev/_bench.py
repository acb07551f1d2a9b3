"""gradrev benchmarks: gradrev against the floor and the anchors, side by side, as ratios.

    gradrev bench [--quick] [--json PATH]      (from a clone: python benchmarks/bench.py)

Every row is measured in this run and compared with its reference from the same run. Times
are medians over interleaved rounds (each round runs every contender once, so drift in the
machine's speed hits all of them alike). The anchors, other GRLs measured beside gradrev:
pip install -c constraints.txt pytorch-revgrad==0.2.0 torch-gradient-reversal==1.0.0
(benchmarks/requirements.txt in a clone).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROWS: list[dict[str, Any]] = []
NOTES: list[str] = []  # printed once, after the table


def note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)


def timeit(
    fns: dict[str, Callable[[], Any]], rounds: int, sync: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Median seconds per call of each fn, measured in interleaved rounds after a warm-up."""
    for fn in fns.values():
        fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def row(
    section: str,
    case: str,
    value: float,
    unit: str,
    ref: str,
    ratio: float | None,
    target: str,
    ok: bool | None,
) -> None:
    ROWS.append(
        {
            "section": section,
            "case": case,
            "value": value,
            "unit": unit,
            "reference": ref,
            "ratio": ratio,
            "target": target,
            "pass": ok,
        }
    )


# -- PyTorch eager: forward + backward through each GRL --------------------------------------


@functools.cache
def identity_function() -> Any:
    """The cheapest possible autograd.Function: a view forward, the gradient passed through."""
    import torch

    class Identity(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g

    return Identity


def torch_grls() -> dict[str, Callable[..., Any]]:
    import torch

    import gradrev

    class CopyForward(torch.autograd.Function):  # Transfer-Learning-Library's shape
        @staticmethod
        def forward(ctx: Any, x: Any, lam: float) -> Any:
            ctx.lam = lam
            return x * 1.0

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g.neg() * ctx.lam, None

    grls: dict[str, Callable[..., Any]] = {
        "gradrev": lambda x, lam: gradrev.reverse(x, lam),
        "copy-forward (x * 1.0)": lambda x, lam: CopyForward.apply(x, lam),
        "identity (view_as, no scaling)": lambda x, lam: identity_function().apply(x),
    }
    try:
        from pytorch_revgrad import RevGrad

        alpha = torch.tensor(0.5)
        revgrad = RevGrad()
        revgrad._alpha = alpha
        grls["pytorch-revgrad"] = lambda x, lam: revgrad(x)
    except ImportError:
        note("anchor pytorch-revgrad not installed: pip install pytorch-revgrad==0.2.0")
    try:
        from gradient_reversal import gradient_reversal

        grls["torch-gradient-reversal"] = lambda x, lam: gradient_reversal(x, lam)
    except ImportError:
        note(
            "anchor torch-gradient-reversal not installed: pip install torch-gradient-reversal==1.0.0"
        )
    return grls


def _grad_through(grl: Callable[..., Any], x: Any, lam: float, g: Any) -> Any:
    import torch

    return torch.autograd.grad(grl(x, lam), x, g)


def bench_torch_eager(device: str, n: int, rounds: int) -> None:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x = torch.randn(n, device=device, requires_grad=True)
    g = torch.randn(n, device=device)
    lam = 0.5
    fns: dict[str, Callable[[], Any]] = {"floor: grad * -λ": lambda: g * -lam}
    for name, grl in torch_grls().items():
        fns[name] = functools.partial(_grad_through, grl, x, lam, g)
    times = timeit(fns, rounds, sync)
    floor = times["floor: grad * -λ"]
    anchors = [
        t
        for k, t in times.items()
        if k not in ("floor: grad * -λ", "gradrev", "identity (view_as, no scaling)")
    ]
    fastest_anchor = min(anchors) if anchors else float("inf")
    for name, t in times.items():
        ok = None
        target = ""
        if name == "gradrev":
            target = "≤ 1.30× floor, ≤ 1.05× fastest anchor"
            ok = t <= 1.30 * floor and t <= 1.05 * fastest_anchor
        row(
            f"torch eager fwd+bwd, 2^{n.bit_length() - 1} float32, {device}",
            name,
            t * 1e3,
            "ms",
            "floor",
            t / floor,
            target,
            ok,
        )


def bench_saved_bytes() -> None:
    import torch

    x = torch.randn(1 << 20, requires_grad=True)
    for name, grl in torch_grls().items():
        saved: list[int] = []

        def pack(t: Any, saved: list[int] = saved) -> Any:
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            grl(x, 0.5).sum()
        total = sum(saved)
        target, ok = ("0 bytes", total == 0) if name == "gradrev" else ("", None)
        row(
            "bytes saved for backward, 2^20 float32 input (4 MiB)",
            name,
            total,
            "bytes",
            "",
            None,
            target,
            ok,
        )
    import gradrev

    saved = []

    def pack_lambda(t: Any) -> Any:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack_lambda, lambda t: t):
        gradrev.reverse(x, torch.tensor(0.5)).sum()
    row(
        "bytes saved for backward, 2^20 float32 input (4 MiB)",
        "gradrev, λ as a 0-d tensor",
        sum(saved),
        "bytes",
        "",
        None,
        "only λ",
        sum(saved) == 4,
    )


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
        "",
        None,
        "only λ (0-d)",
        only_lambda and len(lines) <= 1,
    )
    ROWS[-1]["detail"] = lines  # in the JSON: what each residual is


# -- Dispatch ---------------------------------------------------------------------------------


def bench_dispatch(rounds: int) -> None:
    import gradrev

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
    with contextlib.suppress(ImportError):
        import torch

        from gradrev.backends import torch as tb

        t = torch.ones(8, requires_grad=True)
        cases.append(("torch", lambda: gradrev.reverse(t, 0.5), lambda: tb.reverse(t, 0.5)))
    with contextlib.suppress(ImportError):
        import jax.numpy as jnp

        from gradrev.backends import jax as jb

        a = jnp.ones(8)
        cases.append(("jax", lambda: gradrev.reverse(a, 0.5), lambda: jb.reverse(a, 0.5)))
    with contextlib.suppress(ImportError):
        import tensorflow as tf

        from gradrev.backends import tensorflow as fb

        c = tf.ones(8)
        cases.append(("tensorflow", lambda: gradrev.reverse(c, 0.5), lambda: fb.reverse(c, 0.5)))
    for name, via_dispatch, direct in cases:
        loops = 200

        def many(fn: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                for _ in range(loops):
                    fn()

            return run

        times = timeit({"dispatch": many(via_dispatch), "direct": many(direct)}, rounds)
        ratio = times["dispatch"] / times["direct"]
        row(
            "dispatch: gradrev.reverse vs the backend function, 8 elements",
            name,
            times["dispatch"] / loops * 1e6,
            "µs/call",
            "direct",
            ratio,
            "≤ 1.10×",
            ratio <= 1.10,
        )


# -- Compiled gradients -----------------------------------------------------------------------


def bench_compiled(n: int, rounds: int, torch_backend: str = "inductor") -> None:
    with contextlib.suppress(ImportError):
        import jax
        import jax.numpy as jnp

        import gradrev

        x, lam = jnp.linspace(-3, 3, n), jnp.float32(0.5)
        through = jax.jit(jax.grad(lambda x, lam: jnp.sum(jnp.sin(gradrev.reverse(x, lam)))))
        by_hand = jax.jit(lambda x, lam: -lam * jax.grad(lambda x: jnp.sum(jnp.sin(x)))(x))
        times = timeit(
            {
                "through": lambda: through(x, lam).block_until_ready(),
                "by hand": lambda: by_hand(x, lam).block_until_ready(),
            },
            rounds,
        )
        _compiled_row("jax.jit", times, n)
    with contextlib.suppress(ImportError):
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

        times = timeit(
            {
                "through": lambda: grad_tf(xt, lt, True).numpy(),
                "by hand": lambda: grad_tf(xt, lt, False).numpy(),
            },
            rounds,
        )
        _compiled_row("tf.function(jit_compile=True)", times, n)
    with contextlib.suppress(ImportError):
        import torch

        import gradrev

        xs, ls = torch.linspace(-3, 3, n), torch.tensor(0.5)

        f1 = torch.compile(
            lambda x, lam: torch.sin(gradrev.reverse(x, lam)).sum(),
            fullgraph=True,
            backend=torch_backend,
        )
        f2 = torch.compile(lambda x: torch.sin(x).sum(), fullgraph=True, backend=torch_backend)

        def run_through() -> Any:
            x = xs.detach().requires_grad_(True)
            f1(x, ls).backward()
            return x.grad

        def run_by_hand() -> Any:
            x = xs.detach().requires_grad_(True)
            f2(x).backward()
            return -ls * x.grad  # type: ignore[operator]  # set by backward

        times = timeit({"through": run_through, "by hand": run_by_hand}, rounds)
        label = "" if torch_backend == "inductor" else f", backend={torch_backend!r}"
        _compiled_row(f"torch.compile(fullgraph=True{label})", times, n)


def _compiled_row(compiler: str, times: dict[str, float], n: int) -> None:
    ratio = times["through"] / times["by hand"]
    # aot_eager (--quick) runs the traced ops one by one, without fusion: no target there.
    target, ok = ("(no fusion)", None) if "aot_eager" in compiler else ("≤ 1.10×", ratio <= 1.10)
    row(
        f"compiled gradient of Σ sin(R(x)), 2^{n.bit_length() - 1} float32, vs -λ·∇Σ sin(x) by hand",
        compiler,
        times["through"] * 1e3,
        "ms",
        "by hand",
        ratio,
        target,
        ok,
    )


# -- Recompiles -------------------------------------------------------------------------------


def bench_recompiles(values: int) -> None:
    lambdas = [i / values for i in range(values)]
    with contextlib.suppress(ImportError):
        import torch
        from torch._dynamo.testing import CompileCounterWithBackend

        import gradrev

        for form in ("0-d tensor", "Python float"):
            torch._dynamo.reset()
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
            _recompile_row("torch.compile", form, counter.frame_count, values)
    with contextlib.suppress(ImportError):
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
        _recompile_row("jax.jit", "0-d array", len(traces), values)
    with contextlib.suppress(ImportError):
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
        _recompile_row(
            "tf.function(jit_compile=True)",
            "tf.Variable",
            h.experimental_get_tracing_count(),
            values,
        )


def _recompile_row(compiler: str, form: str, count: int, values: int) -> None:
    expect_one = form != "Python float"
    row(
        f"compiles over {values} λ values",
        f"{compiler}, λ as {form}",
        count,
        "compiles",
        "",
        None,
        "1" if expect_one else "(for contrast)",
        count == 1 if expect_one else None,
    )


# -- DANN training step -----------------------------------------------------------------------


def bench_dann_step(rounds: int, conv_batch: int = 64) -> None:
    import torch

    # Small layers: intra-op threads cannot help them, and on a busy machine they fight over
    # the cores (30x slower on 2 shared cores), which would drown the ratio in noise.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _bench_dann_step(rounds, conv_batch)
    finally:
        torch.set_num_threads(threads)


def _bench_dann_step(rounds: int, conv_batch: int) -> None:
    import torch
    from torch import nn

    from gradrev.torch import GradientReversal

    torch.manual_seed(0)

    def moons_model(grl: nn.Module) -> tuple[nn.Module, Callable[[], Any]]:
        feat = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
        label, dom = (
            nn.Linear(32, 2),
            nn.Sequential(grl, nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)),
        )
        model = nn.ModuleList([feat, label, dom])
        x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
        d = torch.cat([torch.zeros(32), torch.ones(32)])
        return (
            model,
            lambda: (
                nn.functional.cross_entropy(label(feat(x)), y)
                + nn.functional.binary_cross_entropy_with_logits(dom(feat(x))[:, 0], d)
            ),
        )

    def conv_model(grl: nn.Module) -> tuple[nn.Module, Callable[[], Any]]:
        feat = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        label = nn.Linear(64 * 8 * 8, 10)
        dom = nn.Sequential(grl, nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 1))
        model = nn.ModuleList([feat, label, dom])
        x, y = torch.randn(conv_batch, 3, 32, 32), torch.randint(0, 10, (conv_batch,))
        d = torch.cat([torch.zeros(conv_batch // 2), torch.ones(conv_batch - conv_batch // 2)])

        def loss() -> Any:
            h = feat(x)
            return nn.functional.cross_entropy(
                label(h), y
            ) + nn.functional.binary_cross_entropy_with_logits(dom(h)[:, 0], d)

        return model, loss

    class IdentityNode(nn.Module):
        def forward(self, x: Any) -> Any:
            return identity_function().apply(x)

    for name, build, n_rounds in (
        ("moons MLP, batch 64", moons_model, rounds * 20),
        (f"conv net, {conv_batch}×3×32×32", conv_model, rounds),
    ):
        fns: dict[str, Callable[[], Any]] = {}
        variants = (
            ("reversal", GradientReversal(0.5)),
            ("identity", nn.Identity()),
            ("identity node", IdentityNode()),
        )
        for variant, grl in variants:
            torch.manual_seed(0)
            model, loss_fn = build(grl)
            opt = torch.optim.SGD(
                model.parameters(), lr=0.0
            )  # weights fixed: no drift between rounds

            def step(loss_fn: Callable[[], Any] = loss_fn, opt: Any = opt) -> None:
                opt.zero_grad()
                loss_fn().backward()
                opt.step()

            fns[variant] = step
        times = timeit(fns, n_rounds)
        ratio = times["reversal"] / times["identity"]
        section = "DANN training step (torch eager, SGD, 1 thread), GRL vs nn.Identity"
        row(
            section,
            name,
            times["reversal"] * 1e3,
            "ms",
            "identity",
            ratio,
            "≤ 1.02×",
            ratio <= 1.02,
        )
        node = times["identity node"] / times["identity"]
        row(
            section,
            f"{name}: a do-nothing autograd.Function",
            times["identity node"] * 1e3,
            "ms",
            "identity",
            node,
            "(the floor for any GRL)",
            None,
        )


# -- Report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else None
    for mod in ("torch", "jax", "tensorflow"):
        if mod in sys.modules:
            info[mod] = sys.modules[mod].__version__
    with contextlib.suppress(ImportError):
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def table() -> str:
    """The rows under their section titles, in columns as wide as their widest cell."""
    cells = []
    for r in ROWS:
        ratio = f"{r['ratio']:.3f}× {r['reference']}" if r["ratio"] is not None else ""
        verdict = {True: "ok", False: "MISSED", None: ""}[r["pass"]]
        cells.append((r["case"], f"{r['value']:.4g} {r['unit']}", ratio, r["target"], verdict))
    widths = [max([len(c[i]) for c in cells] + [0]) for i in range(5)]
    lines, section = [], None
    for r, (case, value, ratio, target, verdict) in zip(ROWS, cells):
        if r["section"] != section:
            section = r["section"]
            lines.append(f"\n{section}")
        line = (
            f"  {case:<{widths[0]}}  {value:>{widths[1]}}  {ratio:<{widths[2]}}  "
            f"{target:<{widths[3]}}  {verdict}"
        )
        lines.append(line.rstrip())
    return "\n".join(lines)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2^20-element tensors, 5 rounds, torch.compile through aot_eager (no Inductor "
        "compile): about 30 s on 2 cores, up to twice that when other jobs load them",
    )
    from gradrev._args import output_file

    parser.add_argument(
        "--json",
        metavar="PATH",
        type=output_file,
        help="also write the rows and the machine as JSON",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_options(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run every section whose framework is installed; print the table (and write JSON)."""
    ROWS.clear()
    NOTES.clear()
    n = 1 << (20 if args.quick else 24)
    rounds = 5 if args.quick else 15

    import importlib.util

    has = {m: importlib.util.find_spec(m) is not None for m in ("torch", "jax", "tensorflow")}
    if has["torch"]:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        bench_torch_eager("cpu", n, rounds)
        if torch.cuda.is_available():
            bench_torch_eager("cuda", n, rounds)
        bench_saved_bytes()
    if has["jax"]:
        bench_jax_residuals()
    bench_dispatch(rounds)
    # Inductor alone takes about 10 s to compile the two small graphs: --quick skips it.
    bench_compiled(
        1 << 16 if args.quick else 1 << 20, rounds, "aot_eager" if args.quick else "inductor"
    )
    bench_recompiles(100 if not args.quick else 12)
    if has["torch"]:
        bench_dann_step(rounds, conv_batch=16 if args.quick else 64)
    print(table())
    report = {"machine": machine(), "rows": ROWS}
    if args.json:  # checked at parse time (gradrev/_args.py); its folders are made here
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"report: {args.json}")
    missed = [r for r in ROWS if r["pass"] is False]
    print(f"\n{len(ROWS)} rows, {len(missed)} targets missed")
    for text in NOTES:
        print(f"note: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
