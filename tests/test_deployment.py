"""The deployment matrix of docs/deployment.md: one test per cell, each checking numbers.

A cell exports a small model (a feature layer, the reversal, a head) through one path, runs
the result, and compares it with eager: the forward with the eager output, and the gradient
of the feature layer with -λ times the gradient of the same model without the reversal.
A path that cannot keep the reversal must refuse loudly; the test checks the error. Reloads
that the docs promise in a fresh process run in one, importing only what the docs say.
Run with ``-rP`` to see each cell's numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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
def torch_eager() -> tuple[np.ndarray, np.ndarray]:
    """Eager output and -λ times the plain gradient: what every torch cell must give."""
    out, _ = torch_train_step(torch_net(LAM))
    _, plain = torch_train_step(torch_net(None))
    return out, -LAM * plain


def torch_report(cell: str, module: Any, eager: tuple[np.ndarray, np.ndarray]) -> None:
    out, grad = torch_train_step(module)
    report(cell, out, eager[0], gradient=(grad, eager[1], 1e-6))


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
    ],
    ids=["export", "jit-trace"],
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


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["function-legacy.onnx", "function-dynamo.onnx"])
def test_torch_onnx_runs_in_onnxruntime(
    artifact: str, torch_reloaded: dict[str, Any], torch_eager: Any
) -> None:
    """ONNX is an inference format: the reversal is the identity there, and no gradient exists."""
    report(f"{artifact} in onnxruntime", torch_reloaded[artifact + ".out"], torch_eager[0])
