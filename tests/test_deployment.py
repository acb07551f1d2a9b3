"""The deployment matrix of docs/deployment.md: one test per cell, each checking numbers.

A cell exports a small model (a feature layer, the reversal, a head) through one path, runs
the result, and compares it with eager: the forward with the eager output, and the gradient
of the feature layer with -λ times the gradient of the same model without the reversal
(PyTorch programs must also give eager's gradient bit for bit).
A path that cannot keep the reversal must refuse loudly; the test checks the error. Reloads
that the docs promise in a fresh process run in one, importing only what the docs say.
Run with ``-rP`` to see each cell's numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradrev

LAM = 0.3
RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 4)).astype(np.float32)
COT = RNG.standard_normal((5, 2)).astype(np.float32)  # the cotangent of the model's output


def report(cell: str, out: np.ndarray, want_out: np.ndarray, **grads: Any) -> None:
    """Print a cell's numbers (``pytest -rP`` shows them) and assert them.

    ``grads`` maps a name to ``(got, want, rtol)``: the gradient and -λ times the plain one.
    """
    line = f"{cell}: forward error {np.max(np.abs(out - want_out)):.3g}"
    for name, (got, want, _) in grads.items():
        line += f"; {name} error vs -λ·plain {np.max(np.abs(got - want)):.3g}"
    print(line)
    np.testing.assert_allclose(out, want_out, rtol=1e-6, atol=1e-6)
    for got, want, rtol in grads.values():
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: nothing is imported that the code does not import."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# -- PyTorch -----------------------------------------------------------------------------------


def torch_net(lam: float | None, *, tensor_lambda: bool = True) -> Any:
    """A feature layer, ``gradrev.reverse``, a head; ``lam=None`` leaves the reversal out."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.features = torch.nn.Linear(4, 3)
            self.head = torch.nn.Linear(3, 2)
            self.lam: Any = lam
            if lam is not None and tensor_lambda:
                del self.lam
                self.register_buffer("lam", torch.tensor(lam))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.features(x))
            if self.lam is not None:
                h = gradrev.reverse(h, self.lam)
            return self.head(h)

    return Net()


def torch_train_step(module: Any) -> tuple[np.ndarray, np.ndarray]:
    """The output and the feature layer's weight gradient, from one backward pass."""
    import torch

    weight = dict(module.named_parameters())["features.weight"]
    weight.grad = None
    out = module(torch.from_numpy(X))
    (out * torch.from_numpy(COT)).sum().backward()
    assert weight.grad is not None, "the feature layer got no gradient"
    return out.detach().numpy(), weight.grad.numpy()


@pytest.fixture(scope="module")
def torch_eager() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eager output, -λ times the plain gradient, and the eager gradient through gradrev."""
    out, grad = torch_train_step(torch_net(LAM))
    _, plain = torch_train_step(torch_net(None))
    return out, -LAM * plain, grad


def torch_report(cell: str, module: Any, eager: tuple[np.ndarray, ...]) -> None:
    """Report a program's numbers; its gradient must also be eager's, bit for bit."""
    out, grad = torch_train_step(module)
    report(cell, out, eager[0], gradient=(grad, eager[1], 1e-6))
    np.testing.assert_array_equal(grad, eager[2])


@pytest.mark.parametrize("tensor_lambda", [True, False], ids=["tensor-lambda", "float-lambda"])
@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
def test_torch_export_trains_with_reversal(
    strict: bool, tensor_lambda: bool, torch_eager: Any
) -> None:
    torch = pytest.importorskip("torch")
    ep = torch.export.export(
        torch_net(LAM, tensor_lambda=tensor_lambda), (torch.from_numpy(X),), strict=strict
    )
    torch_report(f"torch.export strict={strict}", ep.module(), torch_eager)
    torch_report("  .run_decompositions()", ep.run_decompositions().module(), torch_eager)


def test_torch_export_with_a_dynamic_batch_trains_with_reversal(torch_eager: Any) -> None:
    torch = pytest.importorskip("torch")
    batch = torch.export.Dim("batch")
    ep = torch.export.export(
        torch_net(LAM), (torch.from_numpy(X[:2]),), dynamic_shapes={"x": {0: batch}}
    )
    torch_report("torch.export, dynamic batch, run on another batch size", ep.module(), torch_eager)


@pytest.mark.slow
def test_torch_compile_of_exported_program_trains_with_reversal(torch_eager: Any) -> None:
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    module = torch.export.export(torch_net(LAM), (torch.from_numpy(X),)).module()
    compiled = torch.compile(module, fullgraph=True)
    out = compiled(torch.from_numpy(X))
    (out * torch.from_numpy(COT)).sum().backward()
    grad = dict(module.named_parameters())["features.weight"].grad.numpy()
    report(
        "torch.compile(ep.module())",
        out.detach().numpy(),
        torch_eager[0],
        gradient=(grad, torch_eager[1], 1e-6),
    )


def test_torch_eager_stays_a_view_after_export_and_trace() -> None:
    """The operator (which copies) is used only while exporting or tracing, never eagerly."""
    torch = pytest.importorskip("torch")
    net, x = torch_net(LAM), torch.from_numpy(X)
    torch.export.export(net, (x,))
    torch.jit.trace(net, (x,))
    y = torch.ones(3, requires_grad=True)
    out = gradrev.reverse(y, LAM)
    assert out.data_ptr() == y.data_ptr() and out._base is y
    assert out.grad_fn is not None and "GradReverse" in type(out.grad_fn).__name__


def test_torch_export_forward_backward_graph_has_reversal(torch_eager: Any) -> None:
    """The joint graph (torch.export.experimental._export_forward_backward) scales by -λ."""
    torch = pytest.importorskip("torch")
    from torch.export.experimental import _export_forward_backward

    class Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch_net(LAM)

        def forward(self, x: Any, cot: Any) -> Any:
            return ((self.net(x) * cot).sum(),)

    args = (torch.from_numpy(X), torch.from_numpy(COT))
    joint = _export_forward_backward(torch.export.export(Loss(), args))
    state = {**joint.state_dict, **joint.constants}
    inputs = [state[s.target] if s.target else None for s in joint.graph_signature.input_specs]
    inputs[-2:] = args
    outputs = joint.graph_module(*inputs)
    specs = joint.graph_signature.output_specs
    grad = next(o for o, s in zip(outputs, specs) if s.target == "net.features.weight")
    out = Loss().net(args[0]).detach().numpy()
    report(
        "torch.export forward+backward graph",
        out,
        torch_eager[0],
        gradient=(grad.detach().numpy(), torch_eager[1], 1e-6),
    )


@pytest.mark.parametrize("tensor_lambda", [True, False], ids=["tensor-lambda", "float-lambda"])
def test_torch_jit_trace_trains_with_reversal(tensor_lambda: bool, torch_eager: Any) -> None:
    torch = pytest.importorskip("torch")
    traced = torch.jit.trace(torch_net(LAM, tensor_lambda=tensor_lambda), (torch.from_numpy(X),))
    torch_report("torch.jit.trace", traced, torch_eager)


# Loads every torch artifact in a directory in a fresh process: first without gradrev (ONNX
# must run; the others must fail loudly), then after the documented `import gradrev.torch`.
TORCH_RELOAD = """
import json, pathlib, sys
import numpy as np
import torch

torch.set_num_threads(1)
d = pathlib.Path(sys.argv[1])
x, cot = np.load(d / "x.npy"), np.load(d / "cot.npy")
loaders = {".pt2": lambda p: torch.export.load(p).module(), ".pt": torch.jit.load}
results, arrays = {}, {}

def train_step(module):
    weight = dict(module.named_parameters())["features.weight"]
    out = module(torch.from_numpy(x))
    (out * torch.from_numpy(cot)).sum().backward()
    return out.detach().numpy(), weight.grad.numpy()

for path in sorted(d.glob("*.onnx")):
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays[path.name + ".out"] = session.run(None, {session.get_inputs()[0].name: x})[0]
for path in sorted(d.glob("*.aoti")):
    package = torch._inductor.aoti_load_package(str(path / "package.pt2"))
    arrays[path.name + ".out"] = package(torch.from_numpy(x)).numpy()
for path in sorted(p for p in d.iterdir() if p.suffix in loaders):
    try:
        loaders[path.suffix](str(path))
        results[path.name] = "loaded without gradrev"
    except Exception as e:
        results[path.name] = f"{type(e).__name__}: {e}"
assert "gradrev" not in sys.modules
import gradrev.torch  # what docs/deployment.md tells the loading process to import
for path in sorted(p for p in d.iterdir() if p.suffix in loaders):
    arrays[path.name + ".out"], arrays[path.name + ".grad"] = train_step(loaders[path.suffix](str(path)))
np.savez(d / "results.npz", **arrays)
(d / "errors.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="module")
def torch_reloaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Save each torch artifact here, reload them all in one fresh process."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("torch-artifacts")
    np.save(d / "x.npy", X)
    np.save(d / "cot.npy", COT)
    x = (torch.from_numpy(X),)
    torch.export.save(torch.export.export(torch_net(LAM), x), d / "function.pt2")
    torch.jit.save(torch.jit.trace(torch_net(LAM), x), d / "function-trace.pt")
    torch.onnx.export(torch_net(LAM), x, d / "function-legacy.onnx", dynamo=False)
    torch.onnx.export(torch_net(LAM), x, d / "function-dynamo.onnx", dynamo=True, verbose=False)
    layer_net = torch_layer_net(LAM, schedule=True)
    torch.export.save(torch.export.export(layer_net, x), d / "layer.pt2")
    torch.jit.save(torch.jit.trace(layer_net, x), d / "layer-trace.pt")
    torch.jit.save(torch.jit.script(layer_net), d / "layer-script.pt")
    torch.onnx.export(layer_net, x, d / "layer-legacy.onnx", dynamo=False)
    torch.onnx.export(layer_net, x, d / "layer-dynamo.onnx", dynamo=True, verbose=False)
    ep = inference_program(torch.export.export(torch_net(LAM), x))
    (d / "function-inference.aoti").mkdir()
    torch._inductor.aoti_compile_and_package(
        ep, package_path=str(d / "function-inference.aoti" / "package.pt2")
    )
    run_python(TORCH_RELOAD, str(d))
    results = dict(np.load(d / "results.npz"))
    results["errors"] = json.loads((d / "errors.json").read_text())
    return results


@pytest.mark.slow
@pytest.mark.parametrize(
    ("artifact", "without_gradrev"),
    [
        ("function.pt2", "RuntimeError: We ran into an error when deserializing"),
        ("function-trace.pt", "RuntimeError: \nUnknown builtin op: gradrev::reverse_lambda_tensor"),
        ("layer.pt2", "RuntimeError: We ran into an error when deserializing"),
        ("layer-trace.pt", "RuntimeError: \nUnknown builtin op: gradrev::reverse_lambda_tensor"),
        ("layer-script.pt", "RuntimeError: \nUnknown builtin op: gradrev::reverse_lambda_tensor"),
    ],
    ids=["export", "jit-trace", "layer-export", "layer-jit-trace", "layer-jit-script"],
)
def test_torch_program_reloads_in_fresh_process_and_trains(
    artifact: str, without_gradrev: str, torch_reloaded: dict[str, Any], torch_eager: Any
) -> None:
    assert torch_reloaded["errors"][artifact].startswith(without_gradrev)
    report(
        f"{artifact} reloaded in a fresh process",
        torch_reloaded[artifact + ".out"],
        torch_eager[0],
        gradient=(torch_reloaded[artifact + ".grad"], torch_eager[1], 1e-6),
    )
    np.testing.assert_array_equal(torch_reloaded[artifact + ".grad"], torch_eager[2])


@pytest.mark.slow
@pytest.mark.parametrize(
    "artifact",
    [
        "function-legacy.onnx",
        "function-dynamo.onnx",
        "function-inference.aoti",
        "layer-legacy.onnx",
        "layer-dynamo.onnx",
    ],
)
def test_torch_inference_programs_run_without_gradrev(
    artifact: str, torch_reloaded: dict[str, Any], torch_eager: Any
) -> None:
    """ONNX and AOTInductor are inference formats: the reversal is the identity there."""
    report(f"{artifact} run without gradrev", torch_reloaded[artifact + ".out"], torch_eager[0])


def inference_program(ep: Any) -> Any:
    """The recipe of docs/deployment.md for inference-only targets: the reversal becomes x."""
    import torch

    ops = torch.ops.gradrev
    return ep.run_decompositions(
        {
            ops.reverse.default: lambda x, lambda_: x,
            ops.reverse_lambda_tensor.default: lambda x, lambda_: x,
        }
    )


def test_torch_onnx_of_exported_program_refused_unless_reversal_dropped(torch_eager: Any) -> None:
    """An ExportedProgram holds gradrev's operator, which ONNX cannot know: refused, until the
    program is made inference-only (ONNX has no gradients)."""
    torch = pytest.importorskip("torch")
    onnxruntime = pytest.importorskip("onnxruntime")
    ep = torch.export.export(torch_net(LAM), (torch.from_numpy(X),))
    with pytest.raises(
        Exception, match=r"No ONNX function found for .*gradrev\.reverse_lambda_tensor"
    ):
        torch.onnx.export(ep, verbose=False)
    program = torch.onnx.export(inference_program(ep), verbose=False)
    session = onnxruntime.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    out = session.run(None, {session.get_inputs()[0].name: X})[0]
    report("ExportedProgram, reversal dropped -> torch.onnx.export", out, torch_eager[0])


@pytest.mark.parametrize("tensor_lambda", [True, False], ids=["tensor-lambda", "float-lambda"])
def test_torch_fx_symbolic_trace_trains_with_reversal(
    tensor_lambda: bool, torch_eager: Any
) -> None:
    torch = pytest.importorskip("torch")
    traced = torch.fx.symbolic_trace(torch_net(LAM, tensor_lambda=tensor_lambda))
    assert "gradrev.reverse" in traced.code
    torch_report("torch.fx.symbolic_trace", traced, torch_eager)
    with pytest.raises(ValueError, match="lambda_ must be finite"):
        torch.fx.symbolic_trace(torch_net(float("nan"), tensor_lambda=False))


def exported_reversal() -> Any:
    """ep.module() of a program that is only ``gradrev.reverse(x, LAM)``."""
    torch = pytest.importorskip("torch")

    class Reverse(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return gradrev.reverse(x, LAM)

    return torch.export.export(Reverse(), (torch.from_numpy(X),)).module()


def test_torch_forward_mode_through_an_exported_program_is_refused() -> None:
    """torch 2.13: a torch.library operator has no forward-mode formula; gradrev's kernel
    refuses rather than let torch.func.jvp give a zero tangent."""
    torch = pytest.importorskip("torch")
    t = torch.ones(X.shape)
    with pytest.raises(RuntimeError, match=r"forward-mode AD .* is not supported"):
        torch.func.jvp(exported_reversal(), (torch.from_numpy(X),), (t,))


def test_torch_func_grad_through_an_exported_program_is_refused_by_pytorch() -> None:
    torch = pytest.importorskip("torch")
    module = exported_reversal()
    with pytest.raises(RuntimeError, match="must override the setup_context staticmethod"):
        torch.func.grad(lambda x: module(x).sum())(torch.from_numpy(X))


def test_torch_jit_script_of_the_function_is_refused_by_torchscript() -> None:
    """TorchScript cannot compile gradrev.reverse (it dispatches on type in Python): its
    compiler refuses at torch.jit.script time. Script the layer, or trace, instead."""
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="'reverse' is being compiled since it was called from"):
        torch.jit.script(torch_net(LAM))


# -- PyTorch: the layer ----------------------------------------------------------------------------


def torch_layer_net(lam: float, *, schedule: bool = False) -> Any:
    """The same model with ``gradrev.torch.GradientReversal`` (optionally on a schedule)."""
    torch = pytest.importorskip("torch")
    from gradrev import schedules
    from gradrev.torch import GradientReversal

    class LayerNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.features = torch.nn.Linear(4, 3)
            self.head = torch.nn.Linear(3, 2)
            if schedule:  # a schedule whose value is λ from step 0 on: extra state to save
                self.grl = GradientReversal(schedule=schedules.linear(lam, lam, 10))
            else:
                self.grl = GradientReversal(lam)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.grl(torch.tanh(self.features(x))))

    return LayerNet()


def test_torch_export_of_the_layer_trains_with_reversal(torch_eager: Any) -> None:
    torch = pytest.importorskip("torch")
    ep = torch.export.export(torch_layer_net(LAM, schedule=True), (torch.from_numpy(X),))
    torch_report("torch.export of the layer", ep.module(), torch_eager)
    torch_report("  .run_decompositions()", ep.run_decompositions().module(), torch_eager)


@pytest.mark.parametrize("schedule", [False, True], ids=["lambda", "schedule"])
def test_torch_jit_script_of_the_layer_trains_with_reversal(
    schedule: bool, torch_eager: Any
) -> None:
    torch = pytest.importorskip("torch")
    scripted = torch.jit.script(torch_layer_net(LAM, schedule=schedule))
    torch_report("torch.jit.script of the layer", scripted, torch_eager)


@pytest.mark.parametrize("schedule", [False, True], ids=["lambda", "schedule"])
def test_torch_jit_trace_of_the_layer_trains_with_reversal(
    schedule: bool, torch_eager: Any
) -> None:
    torch = pytest.importorskip("torch")
    traced = torch.jit.trace(torch_layer_net(LAM, schedule=schedule), (torch.from_numpy(X),))
    torch_report("torch.jit.trace of the layer", traced, torch_eager)


# -- JAX and TensorFlow: the same model, with the weights as NumPy arrays -------------------------

W1 = RNG.standard_normal((4, 3)).astype(np.float32)
W2 = RNG.standard_normal((3, 2)).astype(np.float32)


def numpy_reference(lam: float, wrt: str = "w1") -> tuple[np.ndarray, np.ndarray]:
    """The output of tanh(X W1) W2 and -λ times its plain gradient (``wrt`` W1 or X), in float64."""
    x, w1, w2, cot = (a.astype(np.float64) for a in (X, W1, W2, COT))
    h = np.tanh(x @ w1)
    dz = (cot @ w2.T) * (1 - h**2)
    return h @ w2, -lam * (x.T @ dz if wrt == "w1" else dz @ w1.T)


def jax_model(w1: Any, x: Any) -> Any:
    import jax.numpy as jnp

    return gradrev.reverse(jnp.tanh(x @ w1), LAM) @ W2


def sum_sin_reversed(x: Any) -> Any:
    """Σ sin(R_λ(x)): its grad is -λ cos x, its grad of grad -λ² sin x (docs/autodiff.md)."""
    import jax.numpy as jnp

    return jnp.sum(jnp.sin(gradrev.reverse(x, LAM)))


# Deserializes the jax.export artifacts in a fresh process that never imports gradrev.
JAX_RELOAD = """
import pathlib, sys
import jax, jax.export, jax.numpy as jnp, numpy as np  # jax.export: explicit before jax 0.7

d = pathlib.Path(sys.argv[1])
x, w1, cot, v = (np.load(d / f"{n}.npy") for n in ("x", "w1", "cot", "v"))
model = jax.export.deserialize(bytearray((d / "model.jaxexport").read_bytes()))
out, vjp = jax.vjp(model.call, w1, x)
f = jax.export.deserialize(bytearray((d / "sum_sin.jaxexport").read_bytes()))
grad_of_grad = jax.grad(lambda a: jnp.sum(jax.grad(f.call)(a)))(v)
linen = jax.export.deserialize(bytearray((d / "linen.jaxexport").read_bytes()))
linen_out, linen_vjp = jax.vjp(linen.call, {"params": {"features": {"kernel": w1}}}, x)
linen_grad = linen_vjp(cot)[0]["params"]["features"]["kernel"]
assert "gradrev" not in sys.modules
np.savez(
    d / "results.npz", out=out, grad=vjp(cot)[0], grad1=jax.grad(f.call)(v), grad2=grad_of_grad,
    linen_out=linen_out, linen_grad=linen_grad,
)
"""


def linen_model() -> Any:
    """The model in Flax Linen, with ``gradrev.flax.linen.GradientReversal``."""
    import jax.numpy as jnp
    from flax import linen as nn

    from gradrev.flax.linen import GradientReversal

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            h = jnp.tanh(nn.Dense(3, use_bias=False, name="features")(x))
            return GradientReversal(LAM)(h) @ W2

    return Net()


@pytest.mark.slow
def test_jax_export_reloads_without_gradrev_vjp_orders_1_and_2(
    tmp_path: Path,
) -> None:
    jax = pytest.importorskip("jax")
    pytest.importorskip("jax.export")  # a submodule that `import jax` loads only from jax 0.7
    pytest.importorskip("flatbuffers", reason="jax < 0.7 serializes exports with flatbuffers")

    v = np.array([0.3, -1.2, 2.0, 0.0], np.float32)
    model = jax.export.export(jax.jit(jax_model))(W1, X)
    sum_sin = jax.export.export(jax.jit(sum_sin_reversed))(v)
    (tmp_path / "model.jaxexport").write_bytes(model.serialize(vjp_order=1))
    (tmp_path / "sum_sin.jaxexport").write_bytes(sum_sin.serialize(vjp_order=2))
    pytest.importorskip("flax")
    params = {"params": {"features": {"kernel": W1}}}
    linen = jax.export.export(jax.jit(linen_model().apply))(params, X)
    (tmp_path / "linen.jaxexport").write_bytes(linen.serialize(vjp_order=1))
    for name, a in {"x": X, "w1": W1, "cot": COT, "v": v}.items():
        np.save(tmp_path / f"{name}.npy", a)
    run_python(JAX_RELOAD, str(tmp_path))
    got = np.load(tmp_path / "results.npz")
    want_out, want_grad = numpy_reference(LAM)
    lam = np.float32(LAM)
    report(
        "jax.export, deserialized without gradrev",
        got["out"],
        np.asarray(jax_model(W1, X)),
        gradient=(got["grad"], want_grad, 1e-5),
        vjp_order_1=(got["grad1"], -lam * np.cos(v), 1e-6),
        vjp_order_2=(got["grad2"], -(lam**2) * np.sin(v), 1e-6),
    )
    np.testing.assert_allclose(got["out"], want_out, rtol=1e-5)
    report(
        "Flax Linen layer through jax.export, deserialized without gradrev",
        got["linen_out"],
        np.asarray(linen_model().apply(params, X)),
        gradient=(got["linen_grad"], want_grad, 1e-5),
    )


def test_jax2tf_gradient_is_reversed() -> None:
    tf = pytest.importorskip("tensorflow")
    jax2tf = pytest.importorskip("jax.experimental.jax2tf")
    w1 = tf.Variable(W1)
    converted = tf.function(jax2tf.convert(jax_model), autograph=False)
    with tf.GradientTape() as tape:
        out = converted(w1, tf.constant(X))
        loss = tf.reduce_sum(out * COT)
    _, want_grad = numpy_reference(LAM)
    report(
        "jax2tf.convert under tf.function",
        out.numpy(),
        np.asarray(jax_model(W1, X)),
        gradient=(tape.gradient(loss, w1).numpy(), want_grad, 1e-5),
    )


def tf_module(lam: float) -> Any:
    """The model as a tf.Module, λ a non-trainable variable, ready for tf.saved_model.save."""
    tf = pytest.importorskip("tensorflow")

    class Net(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1, self.w2 = tf.Variable(W1), tf.Variable(W2)
            self.lam = tf.Variable(lam, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x: Any) -> Any:
            return gradrev.reverse(tf.tanh(x @ self.w1), self.lam) @ self.w2

    return Net()


def keras_model(lam: float) -> Any:
    keras = pytest.importorskip("keras")
    from gradrev.keras import GradientReversal

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", use_bias=False),
            GradientReversal(lam),
            keras.layers.Dense(2, use_bias=False),
        ]
    )
    model.layers[0].kernel.assign(W1)
    model.layers[2].kernel.assign(W2)
    return model


# Loads each SavedModel in a fresh process that never imports gradrev, and takes the input
# gradient of Σ out·cot through the loaded function.
TF_RELOAD = """
import pathlib, sys
import numpy as np, tensorflow as tf

d = pathlib.Path(sys.argv[1])
x, cot = tf.constant(np.load(d / "x.npy")), np.load(d / "cot.npy")
arrays = {}
for path in sorted(p for p in d.iterdir() if p.is_dir()):
    loaded = tf.saved_model.load(str(path))
    fn = loaded.serve if hasattr(loaded, "serve") else loaded
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)
        loss = tf.reduce_sum(out * cot)
    arrays[path.name + ".out"], arrays[path.name + ".grad"] = out.numpy(), tape.gradient(loss, x).numpy()
assert "gradrev" not in sys.modules
np.savez(d / "results.npz", **arrays)
"""


@pytest.fixture(scope="module")
def tf_reloaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tf = pytest.importorskip("tensorflow")
    d = tmp_path_factory.mktemp("tf-artifacts")
    np.save(d / "x.npy", X)
    np.save(d / "cot.npy", COT)
    tf.saved_model.save(tf_module(LAM), str(d / "function"))
    keras_model(LAM).export(str(d / "keras-export"), verbose=False)
    if importlib.util.find_spec("jax") is not None:  # a TensorFlow-only install has no jax2tf
        from jax.experimental import jax2tf

        converted = tf.Module()
        converted.w1 = tf.Variable(W1)
        converted.f = tf.function(
            lambda x: jax2tf.convert(jax_model)(converted.w1, x),
            input_signature=[tf.TensorSpec([5, 4], tf.float32)],
            autograph=False,
        )
        converted.__call__ = converted.f
        tf.saved_model.save(converted, str(d / "jax2tf"))
    run_python(TF_RELOAD, str(d))
    return dict(np.load(d / "results.npz"))


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["function", "keras-export", "jax2tf"])
def test_tf_saved_model_reloads_without_gradrev(
    artifact: str, tf_reloaded: dict[str, np.ndarray]
) -> None:
    if artifact + ".out" not in tf_reloaded:
        pytest.skip("jax is not installed")
    want_out, want_grad = numpy_reference(LAM, wrt="x")
    report(
        f"tf.saved_model ({artifact}) reloaded without gradrev",
        tf_reloaded[artifact + ".out"],
        want_out,
        gradient=(tf_reloaded[artifact + ".grad"], want_grad, 1e-5),
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tflite_inference_matches_eager() -> None:
    """TFLite is an inference format: the reversal is the identity there."""
    tf = pytest.importorskip("tensorflow")
    module = tf_module(LAM)
    fn = module.__call__.get_concrete_function()
    flat = tf.lite.TFLiteConverter.from_concrete_functions([fn], module).convert()
    interpreter = tf.lite.Interpreter(model_content=flat)
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], X.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], X)
    interpreter.invoke()
    report("TFLite", interpreter.get_tensor(outp["index"]), module(X).numpy())


def test_orbax_checkpoint_restores_nnx_layer(tmp_path: Path) -> None:
    """An NNX model with the layer, checkpointed by orbax and restored into a fresh model."""
    jax = pytest.importorskip("jax")
    ocp = pytest.importorskip("orbax.checkpoint")
    from flax import nnx

    from gradrev.flax.nnx import GradientReversal

    class Net(nnx.Module):
        def __init__(self, lam: float) -> None:
            self.w1, self.grl = nnx.Param(jax.numpy.zeros((4, 3))), GradientReversal(lam)

        def __call__(self, x: Any) -> Any:
            return self.grl(jax.numpy.tanh(x @ self.w1[...])) @ W2

    trained = Net(LAM)
    trained.w1[...] = W1
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", nnx.state(trained))
    checkpointer.wait_until_finished()
    fresh = Net(1.0)  # λ and weights come from the checkpoint
    _, abstract = nnx.split(nnx.eval_shape(lambda: Net(1.0)))
    nnx.update(fresh, checkpointer.restore(tmp_path / "ckpt", abstract))
    assert fresh.grl.lambda_ == pytest.approx(LAM)
    loss = lambda m: (m(X) * COT).sum()
    grad = nnx.grad(loss)(fresh).w1[...]
    want_out, want_grad = numpy_reference(LAM)
    report(
        "orbax checkpoint of an NNX model",
        np.asarray(fresh(X)),
        want_out,
        gradient=(np.asarray(grad), want_grad, 1e-5),
    )


def test_equinox_serialised_model_trains_with_reversal(tmp_path: Path) -> None:
    """An Equinox module saved with tree_serialise_leaves and loaded into a fresh one."""
    jax = pytest.importorskip("jax")
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        w1: Any

        def __call__(self, x: Any) -> Any:
            return gradrev.reverse(jax.numpy.tanh(x @ self.w1), LAM) @ W2

    eqx.tree_serialise_leaves(tmp_path / "net.eqx", Net(jax.numpy.asarray(W1)))
    # The template's dtype must match the file's whether or not another test enabled x64.
    like = Net(jax.numpy.zeros(W1.shape, W1.dtype))
    net = eqx.tree_deserialise_leaves(tmp_path / "net.eqx", like)
    grad = eqx.filter_jit(eqx.filter_grad(lambda m: (m(X) * COT).sum()))(net).w1
    want_out, want_grad = numpy_reference(LAM)
    report("Equinox", np.asarray(net(X)), want_out, gradient=(np.asarray(grad), want_grad, 1e-5))


def test_haiku_transformed_model_trains_with_reversal() -> None:
    jax = pytest.importorskip("jax")
    hk = pytest.importorskip("haiku")

    def forward(x: Any) -> Any:
        h = hk.Linear(3, with_bias=False, name="features")(x)
        return gradrev.reverse(jax.numpy.tanh(h), LAM) @ W2

    model = hk.without_apply_rng(hk.transform(forward))
    params = {"features": {"w": jax.numpy.asarray(W1)}}
    grads = jax.jit(jax.grad(lambda p: (model.apply(p, X) * COT).sum()))(params)
    want_out, want_grad = numpy_reference(LAM)
    out = np.asarray(model.apply(params, X))
    report("Haiku", out, want_out, gradient=(np.asarray(grads["features"]["w"]), want_grad, 1e-5))


# Loads a .keras file in a fresh process: first with Keras alone (refused by Keras), then
# after `import gradrev`, which registers the layer class because Keras is already imported.
KERAS_RELOAD = """
import pathlib, sys
import keras, numpy as np, tensorflow as tf

d = pathlib.Path(sys.argv[1])
x, cot = tf.constant(np.load(d / "x.npy")), np.load(d / "cot.npy")
try:
    keras.saving.load_model(d / "model.keras")
    refusal = "loaded without gradrev"
except Exception as e:
    refusal = f"{type(e).__name__}: {e}"
import gradrev
model = keras.saving.load_model(d / "model.keras")
with tf.GradientTape() as tape:
    tape.watch(x)
    out = model(x)
    loss = tf.reduce_sum(out * cot)
np.savez(d / "results.npz", out=out.numpy(), grad=tape.gradient(loss, x).numpy())
(d / "refusal.txt").write_text(refusal)
"""


@pytest.mark.slow
def test_keras_file_loads_after_import_gradrev(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "cot.npy", COT)
    keras_model(LAM).save(tmp_path / "model.keras")
    run_python(KERAS_RELOAD, str(tmp_path))
    refusal = (tmp_path / "refusal.txt").read_text()
    assert "Could not locate class 'GradientReversal'" in refusal
    got = np.load(tmp_path / "results.npz")
    want_out, want_grad = numpy_reference(LAM, wrt="x")
    report(
        ".keras file loaded after import gradrev",
        got["out"],
        want_out,
        gradient=(got["grad"], want_grad, 1e-5),
    )


def test_import_gradrev_registers_for_frameworks_already_imported() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("torch")
    code = """
    import sys
    import keras, torch
    import gradrev
    assert keras.saving.get_registered_object("gradrev>GradientReversal") is not None
    assert torch.ops.gradrev.reverse_lambda_tensor is not None
    """
    run_python(code)


# Each non-TensorFlow Keras backend, in its own process (a process has one Keras backend):
# a .keras round trip and the input gradient, and the export format that backend supports.
KERAS_BACKEND_CELLS = """
import pathlib, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import keras
from test_deployment import COT, LAM, X, keras_model

d = pathlib.Path(sys.argv[1])
backend = keras.backend.backend()
keras_model(LAM).save(d / "model.keras")
model = keras.saving.load_model(d / "model.keras")
if backend == "jax":
    import jax
    grad = jax.grad(lambda x: (model(x) * COT).sum())(X)
    model.export(d / "saved", format="tf_saved_model", verbose=False)
    import tensorflow as tf
    x, loaded = tf.constant(X), tf.saved_model.load(str(d / "saved"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        exported = loaded.serve(x)
        loss = tf.reduce_sum(exported * COT)
    export_grad = tape.gradient(loss, x).numpy()
else:
    import torch
    x = torch.from_numpy(X).requires_grad_()
    (model(x) * torch.from_numpy(COT)).sum().backward()
    grad = x.grad
    model.export(d / "model.onnx", format="onnx", verbose=False)
    import onnxruntime
    session = onnxruntime.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: X})[0]
    export_grad = np.full_like(X, np.nan)  # ONNX has no gradient
out = keras.ops.convert_to_numpy(model(X))
np.savez(d / "results.npz", out=out, grad=np.asarray(grad), export_out=np.asarray(exported), export_grad=export_grad)
"""


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["jax", "torch"])
def test_keras_on_other_backends_saves_and_exports(
    keras_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("keras")
    pytest.importorskip(keras_backend)
    pytest.importorskip("tensorflow" if keras_backend == "jax" else "onnxruntime")
    monkeypatch.setenv("KERAS_BACKEND", keras_backend)
    run_python(KERAS_BACKEND_CELLS, str(tmp_path), str(Path(__file__).parent))
    got = np.load(tmp_path / "results.npz")
    want_out, want_grad = numpy_reference(LAM, wrt="x")
    report(
        f"Keras ({keras_backend}) .keras round trip",
        got["out"],
        want_out,
        gradient=(got["grad"], want_grad, 1e-5),
    )
    if keras_backend == "jax":
        report(
            "Keras (jax) model.export() -> tf.saved_model.load",
            got["export_out"],
            want_out,
            gradient=(got["export_grad"], want_grad, 1e-5),
        )
    else:
        report(
            "Keras (torch) model.export(format='onnx') in onnxruntime", got["export_out"], want_out
        )
