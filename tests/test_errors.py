"""Inputs that used to fail deep inside a framework get gradrev's own error, at the call.

Each test names the input from issue 14 it covers. The message names what was given and
what is accepted; the error is raised by ``reverse`` itself, never later at backward.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import gradrev
from gradrev import _dispatch, _lambda, _registry


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.mark.parametrize("lam", [10**400, -(10**400)], ids=["+10**400", "-10**400"])
def test_int_too_large_for_a_float_is_a_value_error(backend: Any, lam: int) -> None:
    x = backend.tensor(np.ones(2, np.float32))
    with pytest.raises(
        ValueError, match=r"gradrev.reverse: lambda_ must be finite, got int -?1000"
    ):
        gradrev.reverse(x, lam)


def test_describe_shortens_huge_values() -> None:
    assert len(_lambda.describe(10**400)) < 80
    assert _lambda.describe(0.5) == "float 0.5"


def test_describe_is_safe_on_odd_objects() -> None:
    class NoShape:
        @property
        def shape(self) -> Any:
            raise ValueError("Cannot iterate over a shape with unknown rank")

    assert "NoShape" in _lambda.describe(NoShape())


# -- PyTorch ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_numpy_scalar_lambda_under_torch_compile_fullgraph() -> None:
    """Eagerly a NumPy scalar λ works; under torch.compile(fullgraph=True) it must too."""
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    step = torch.compile(lambda x, lam: gradrev.reverse(x, lam).sum(), fullgraph=True)
    for lam in (np.float32(0.5), np.float64(-0.25)):
        x = torch.ones(3, requires_grad=True)
        step(x, lam).backward()
        assert torch.equal(x.grad, torch.full((3,), -float(lam)))


@pytest.mark.parametrize(
    "case", ["sparse_coo", "sparse_csr", "nested_strided", "nested_jagged"], ids=str
)
def test_torch_sparse_and_nested_inputs_are_type_errors(case: str) -> None:
    torch = pytest.importorskip("torch")
    ones = [torch.ones(2), torch.ones(3)]
    x = {
        "sparse_coo": lambda: torch.eye(3).to_sparse(),
        "sparse_csr": lambda: torch.eye(3).to_sparse_csr(),
        "nested_strided": lambda: torch.nested.nested_tensor(ones),
        "nested_jagged": lambda: torch.nested.nested_tensor(ones, layout=torch.jagged),
    }[case]().requires_grad_(True)
    kind = "sparse" if case.startswith("sparse") else "nested"
    with pytest.raises(
        TypeError, match=rf"gradrev.reverse: x must be a dense .*torch.Tensor.*, got a {kind}"
    ):
        gradrev.reverse(x, 0.5)


def test_torch_lambda_on_another_device_is_refused_at_the_call() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"lambda_ is on device meta, .* x is on device cpu"):
        gradrev.reverse(x, torch.tensor(0.5, device="meta"))


def test_torch_cpu_lambda_is_accepted_with_x_on_any_device() -> None:
    """A 0-d CPU tensor multiplies a tensor on any device, as in PyTorch itself."""
    torch = pytest.importorskip("torch")
    x = torch.ones(3, device="meta", requires_grad=True)
    (g,) = torch.autograd.grad(gradrev.reverse(x, torch.tensor(0.5)).sum(), x)
    assert g.device.type == "meta"


# -- JAX and TensorFlow ----------------------------------------------------------------------


def test_jax_array_subclass_is_a_type_error() -> None:
    jax = pytest.importorskip("jax")

    class NotReallyAnArray(jax.Array):  # type: ignore[misc]
        pass

    with pytest.raises(TypeError, match=r"gradrev.reverse: x must be a jax.Array .*NotReally"):
        gradrev.reverse(NotReallyAnArray(), 0.5)


def test_tensorflow_lambda_of_unknown_rank() -> None:
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([2]), tf.TensorSpec(None)])
    def f(x: Any, lam: Any) -> Any:
        return gradrev.reverse(x, lam)

    with pytest.raises(
        ValueError,
        match=r"gradrev.reverse: lambda_ .*of unknown shape and dtype float32, whose rank is unknown.*TensorSpec",
    ):
        f(tf.ones(2), tf.constant(0.5))


# -- Dispatch beside a half-imported framework ----------------------------------------------

_HALF_IMPORTED = """
import sys, types
sys.modules[{name!r}] = types.ModuleType({name!r})  # a stub, or one still being imported
{setup}
import gradrev
y = gradrev.reverse(x, 0.5)
print(type(y).__name__)
"""

_SETUPS = {
    "jax": "import jax.numpy as jnp\nx = jnp.ones(3)",
    "torch": "import torch\nx = torch.ones(3)",
    "tensorflow": "import tensorflow as tf\nx = tf.ones(3)",
}


@pytest.mark.parametrize(
    ("stub", "real"),
    [("torch", "jax"), ("jax", "torch"), ("tensorflow", "torch"), ("torch", "tensorflow")],
)
def test_dispatch_survives_a_stub_or_half_imported_framework(stub: str, real: str) -> None:
    pytest.importorskip(real)
    proc = run_python(_HALF_IMPORTED.format(name=stub, setup=_SETUPS[real]))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_dispatch_while_another_thread_imports_torch() -> None:
    """The failure from the issue: 'partially initialized module torch' (3 of 3 runs)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    code = (
        "import sys, threading\n"
        "import jax.numpy as jnp\n"
        "import gradrev\n"
        "t = threading.Thread(target=lambda: __import__('torch'))\n"
        "t.start()\n"
        "errors = []\n"
        "while t.is_alive():\n"
        "    try:\n"
        "        gradrev.reverse(jnp.ones(3), 0.5)\n"
        "    except Exception as e:\n"
        "        errors.append(repr(e)); break\n"
        "t.join()\n"
        "print(errors)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_dispatch_cache_is_untouched_by_an_unknown_type() -> None:
    with pytest.raises(TypeError):
        gradrev.reverse(object(), 1.0)
    assert object not in _dispatch._BACKEND_FOR_TYPE


# -- The raw operators torch.ops.gradrev.* (issue 20) ------------------------------------------


def _raw_op_grad(op: Any, lam: Any) -> Any:
    torch = pytest.importorskip("torch")
    x = torch.ones(3, requires_grad=True)
    op(x, lam).sum().backward()
    return x.grad


@pytest.mark.parametrize(
    ("lam", "error", "match"),
    [
        ("ones21", ValueError, r"must be a scalar"),
        ("ones3", ValueError, r"must be a scalar"),
        ("int", TypeError, r"0-d floating torch tensor, got a torch.Tensor of shape \(\)"),
        ("meta", ValueError, r"lambda_ is on device meta, but x is on device cpu"),
    ],
)
def test_raw_tensor_operator_checks_lambda(lam: str, error: type, match: str) -> None:
    """Was: a (2, 1) λ gave the gradient [-2, -2, -2]; int and (3,) λ were accepted; a meta λ
    failed at backward with torch's error."""
    torch = pytest.importorskip("torch")
    import gradrev.backends.torch  # noqa: F401  (registers the operators)

    value = {
        "ones21": torch.ones(2, 1),
        "ones3": torch.ones(3),
        "int": torch.tensor(2),
        "meta": torch.tensor(2.0, device="meta"),
    }[lam]
    with pytest.raises(error, match=r"torch.ops.gradrev.reverse_lambda_tensor: .*" + match):
        _raw_op_grad(torch.ops.gradrev.reverse_lambda_tensor, value)


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -float("inf")])
def test_raw_float_operator_refuses_non_finite_lambda(lam: float) -> None:
    torch = pytest.importorskip("torch")
    import gradrev.backends.torch  # noqa: F401

    with pytest.raises(ValueError, match=r"torch.ops.gradrev.reverse: lambda_ must be finite"):
        _raw_op_grad(torch.ops.gradrev.reverse, lam)


def test_raw_operators_still_give_the_canonical_gradient() -> None:
    torch = pytest.importorskip("torch")
    import gradrev.backends.torch  # noqa: F401

    assert _raw_op_grad(torch.ops.gradrev.reverse, 0.5).tolist() == [-0.5] * 3
    got = _raw_op_grad(torch.ops.gradrev.reverse_lambda_tensor, torch.tensor(0.5))
    assert got.tolist() == [-0.5] * 3


def test_exported_program_checks_a_lambda_input() -> None:
    """Was: an exported program with λ as an input accepted a λ of shape (3,)."""
    torch = pytest.importorskip("torch")
    from gradrev.backends.torch import reverse

    class Model(torch.nn.Module):
        def forward(self, x: Any, lam: Any) -> Any:
            return reverse(x, lam)

    program = torch.export.export(Model(), (torch.ones(3), torch.tensor(0.5))).module()
    with pytest.raises(ValueError, match=r"reverse_lambda_tensor: lambda_ must be a scalar"):
        program(torch.ones(3), torch.ones(3))
    x = torch.ones(3, requires_grad=True)
    program(x, torch.tensor(0.25)).sum().backward()
    assert x.grad.tolist() == [-0.25] * 3


def test_fx_graph_checks_a_lambda_argument() -> None:
    """Was: an fx graph that takes λ as an argument accepted NaN."""
    torch = pytest.importorskip("torch")
    from gradrev.backends.torch import reverse

    class Model(torch.nn.Module):
        def forward(self, x: Any, lam: Any) -> Any:
            return reverse(x, lam)

    graph = torch.fx.symbolic_trace(Model())
    with pytest.raises(ValueError, match=r"torch.ops.gradrev.reverse: lambda_ must be finite"):
        graph(torch.ones(3), float("nan"))


def test_forward_mode_through_an_exported_program_is_refused() -> None:
    """Was: torch.func.jvp through an exported program gave a zero tangent, silently."""
    torch = pytest.importorskip("torch")
    from torch.autograd import forward_ad

    from gradrev.backends.torch import reverse

    class Model(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return reverse(x, torch.tensor(0.5))

    program = torch.export.export(Model(), (torch.ones(3),)).module()
    with pytest.raises(RuntimeError, match=r"forward-mode AD .* is not supported"):
        torch.func.jvp(program, (torch.ones(3),), (torch.ones(3),))
    with forward_ad.dual_level(), pytest.raises(RuntimeError, match=r"forward-mode AD"):
        torch.ops.gradrev.reverse(forward_ad.make_dual(torch.ones(3), torch.ones(3)), 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("transform", ["grad", "vjp", "vmap", "jvp"])
def test_torch_func_transforms_inside_torch_compile_are_never_silent(transform: str) -> None:
    """Was: TorchDynamo ignored the reversal under torch.func transforms: grad, vjp and a vmap
    followed by backward gave +g, jvp gave +t. Now fullgraph=True refuses with gradrev's
    message, and without it Dynamo falls back to eager, which is right."""
    torch = pytest.importorskip("torch")
    from gradrev.backends.torch import reverse

    def fn(x: Any) -> Any:
        if transform == "grad":
            return torch.func.grad(lambda a: reverse(a, 0.5).sum())(x)
        if transform == "vjp":
            return torch.func.vjp(lambda a: reverse(a, 0.5), x)[1](torch.ones(2))[0]
        if transform == "jvp":
            return torch.func.jvp(lambda a: reverse(a, 0.5), (x,), (torch.ones(2),))[1]
        return torch.func.vmap(lambda a: reverse(a, 0.5))(x)

    def run(fullgraph: bool) -> Any:
        torch._dynamo.reset()
        x = torch.ones(2, requires_grad=True)
        y = torch.compile(fn, fullgraph=fullgraph)(x)
        if transform != "vmap":
            return y
        y.sum().backward()
        return x.grad

    with pytest.raises(Exception, match=r"gradrev.reverse: torch.func transforms"):
        run(fullgraph=True)
    assert run(fullgraph=False).tolist() == [-0.5, -0.5]


# -- Plug-ins (the gradrev.backends entry point group) -------------------------------------------

TOY = __import__("pathlib").Path(__file__).parent / "toy"


def _install_plugin(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A dist-info with one entry point, as ``pip install`` would leave it, and the toys."""
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[gradrev.backends]\n{name} = {value}\n")
    (tmp_path / "plugin_fails.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "plugin_no_is_tensor.py").write_text("def reverse(x, lambda_=1.0):\n    return x\n")
    (tmp_path / "plugin_is_tensor_raises.py").write_text(
        "def is_tensor(x):\n    raise ValueError('boom in is_tensor')\n\n"
        "def reverse(x, lambda_=1.0):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.entry_points.cache_clear()
    monkeypatch.setattr(_dispatch, "_BACKEND_FOR_TYPE", {})
    monkeypatch.setattr(
        _dispatch, "_BACKEND_FOR_SUBCLASS", __import__("weakref").WeakKeyDictionary()
    )


@pytest.fixture
def plugin_cleanup() -> Any:
    yield
    _registry.entry_points.cache_clear()


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        ("plugin_fails", ImportError, r"failed to load: RuntimeError: boom at import"),
        ("no_such_module_anywhere", ImportError, r"failed to load: ModuleNotFoundError"),
        ("plugin_no_is_tensor", ImportError, r"is not a gradrev backend: it has no is_tensor"),
        ("plugin_is_tensor_raises", RuntimeError, r"raised in is_tensor\(.*\): ValueError: boom"),
    ],
)
def test_a_broken_plugin_is_named_with_its_distribution(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    plugin_cleanup: Any,
    value: str,
    error: type,
    says: str,
) -> None:
    """Was: the plug-in's raw error (RuntimeError, ModuleNotFoundError, AttributeError,
    ValueError), which named neither the entry point nor the distribution."""
    _install_plugin(tmp_path, monkeypatch, "toygrad", value)
    import toygrad

    point = rf"'toygrad' \(entry point 'toygrad = {value}' in gradrev.backends of the distribution broken-plugin 0.1\)"
    with pytest.raises(error, match=rf"gradrev.reverse: the backend plug-in {point}.*{says}"):
        gradrev.reverse(toygrad.Tensor(np.ones(3, np.float32)), 0.5)


@pytest.mark.parametrize("name", ["numpy", "builtins", "torch"])
def test_a_plugin_cannot_take_over_numpy_builtins_or_a_shipped_framework(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, plugin_cleanup: Any, name: str
) -> None:
    """Was: a broken plug-in named numpy or builtins replaced gradrev's TypeError for
    gradrev.reverse(np.ones(3)) and gradrev.reverse([1.0])."""
    _install_plugin(tmp_path, monkeypatch, name, "plugin_fails")
    for x in (np.ones(3), [1.0], 3.0):
        with pytest.raises(TypeError, match=r"gradrev.reverse: x must be a torch.Tensor"):
            gradrev.reverse(x, 0.5)
    assert name not in _registry.entry_points()


def test_the_dispatch_cache_does_not_keep_classes_alive() -> None:
    """Was: 5,000 throwaway torch.Tensor subclasses left 5,001 cache entries, each holding its
    class alive."""
    torch = pytest.importorskip("torch")
    import gc
    import weakref

    gradrev.reverse(torch.ones(1), 0.5)
    strong = len(_dispatch._BACKEND_FOR_TYPE)
    refs = []
    for i in range(300):
        cls = type(f"Throwaway{i}", (torch.Tensor,), {})
        x = torch.ones(2, requires_grad=True).as_subclass(cls)
        gradrev.reverse(x, 0.5).sum().backward()
        refs.append(weakref.ref(cls))
        del cls, x
    gc.collect()
    assert len(_dispatch._BACKEND_FOR_TYPE) == strong
    assert sum(r() is not None for r in refs) <= 1
    assert len(_dispatch._BACKEND_FOR_SUBCLASS) <= 1


# -- The sign of λ: any finite λ, documented in docs/semantics.md --------------------------------


def _lambda_grad(backend: Any, g: np.ndarray, lam: Any) -> np.ndarray:
    x = backend.tensor(np.zeros_like(g))
    return backend.vjp(lambda a: gradrev.reverse(a, lam), x, backend.tensor(g))  # type: ignore[no-any-return]


@pytest.mark.parametrize("form", ["number", "tensor"])
def test_negative_lambda_scales_without_reversing(backend: Any, form: str) -> None:
    """The decided rule: λ < 0 is allowed and gives g·|λ| (no reversal), in every framework."""
    g = np.array([1.0, -3.0, 0.5, 0.0], np.float32)
    lam = -0.5 if form == "number" else backend.scalar(-0.5, "float32")
    got = _lambda_grad(backend, g, lam)
    assert got.tolist() == [0.5, -1.5, 0.25, 0.0]
    assert not np.signbit(got[3])  # 0.0 · 0.5 is +0.0


@pytest.mark.parametrize("form", ["number", "tensor"])
def test_zero_lambda_blocks_the_gradient_with_signed_zeros(backend: Any, form: str) -> None:
    """λ = 0 gives g · −0.0: zeros of the opposite sign, NaN for ±inf (as PyTorch computes)."""
    g = np.array([2.0, -3.0, np.inf], np.float32)
    lam = 0.0 if form == "number" else backend.scalar(0.0, "float32")
    got = _lambda_grad(backend, g, lam)
    assert got[:2].tolist() == [0.0, 0.0]
    assert np.signbit(got[0]) and not np.signbit(got[1])
    assert np.isnan(got[2])
