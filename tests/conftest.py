"""Backend and device selection for the shared conformance suite.

GRADREV_TEST_BACKENDS=torch,jax selects backends. A selected backend that is not installed
fails the run; with the variable unset, a missing backend is skipped and the skip says why.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gradrev import _adapters, _registry

BACKENDS = tuple(fw.name for fw in _registry.BUILTINS)
DEVICES = ("cpu", "gpu")

_registry.triton_before_tensorflow()


def requested_backends() -> tuple[str, ...] | None:
    raw = os.environ.get("GRADREV_TEST_BACKENDS", "").strip()
    if not raw:
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"GRADREV_TEST_BACKENDS names unknown backends {unknown}; known: {list(BACKENDS)}"
        )
    return names


def installed(name: str) -> bool:
    return _registry.installed(name)


def skip_reason(*names: str) -> str | None:
    """Why a test that needs every backend in ``names`` is skipped; None runs it.

    A selected backend is never skipped: if it is missing, the test fails loudly.
    """
    requested = requested_backends()
    for name in names:
        if requested is not None and name not in requested:
            return f"{name} not in GRADREV_TEST_BACKENDS={','.join(requested)}"
        if requested is None and not installed(name):
            return f'{name} is not installed (pip install -c constraints.txt ".[{name}]")'
    return None


def _backend_param(name: str) -> Any:
    reason = skip_reason(name)
    return pytest.param(name, marks=pytest.mark.skip(reason=reason)) if reason else name


# What needs a newer framework than pyproject.toml's floor: {capability: (dist, floor, why)}.
# docs/install.md lists each; CAPABILITY_TESTS skip with the reason below that floor.
CAPABILITY_FLOORS = {
    "fsdp2-on-cpu": (
        "torch",
        "2.9",
        "FSDP2 on CPU fails inside torch 2.6 (no Stream.record_event)",
    ),
    "strided-sign-of-zero": (
        "jax",
        "0.9.1",
        "older jax loses the sign of zero through a strided view",
    ),
    "float-lambda-symbolic": (
        "torch",
        "2.13",
        "torch 2.6 and 2.9 recompile for every Python-float λ",
    ),
    "torch-export": (
        "torch",
        "2.7",
        "torch.export keeps the reversal only where torch.compiler.is_exporting exists",
    ),
    "nnx-optimizer-update": (
        "flax",
        "0.11",
        "the example calls flax 0.11's Optimizer.update(model, g)",
    ),
}
CAPABILITY_TESTS = {
    "test_torch_ddp_and_fsdp_match_one_process[torch_fsdp]": "fsdp2-on-cpu",
    "test_strided_view_keeps_the_sign_of_zero[jax]": "strided-sign-of-zero",
    "test_example_runs[flax_nnx_dann.py-flax-jax]": "nnx-optimizer-update",
    "test_torch_compile_python_float_lambda_compiles_twice": "float-lambda-symbolic",
    "test_bench_quick_writes_json": "float-lambda-symbolic",  # its recompile row
    "test_torch_export_trains_with_reversal[non-strict-tensor-lambda]": "torch-export",
    "test_torch_export_trains_with_reversal[non-strict-float-lambda]": "torch-export",
    "test_torch_export_trains_with_reversal[strict-tensor-lambda]": "torch-export",
    "test_torch_export_trains_with_reversal[strict-float-lambda]": "torch-export",
    "test_torch_export_with_a_dynamic_batch_trains_with_reversal": "torch-export",
    "test_torch_compile_of_exported_program_trains_with_reversal": "torch-export",
    "test_torch_export_forward_backward_graph_has_reversal": "torch-export",
    "test_torch_func_grad_through_an_exported_program_is_refused_by_pytorch": "torch-export",
    "test_torch_export_of_the_layer_trains_with_reversal": "torch-export",
}


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def lacks(capability: str) -> str | None:
    """Why the installed framework lacks ``capability``, or None (also when it is not installed)."""
    dist, floor, why = CAPABILITY_FLOORS[capability]
    try:
        have = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return (
        f"{why}: needs {dist} >= {floor}, found {have}"
        if _release(have) < _release(floor)
        else None
    )


@functools.cache
def adapter_for(name: str) -> Any:
    return _adapters.adapter(name)


@pytest.fixture(params=[_backend_param(n) for n in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Any:
    """The backend under test, as an adapter (see gradrev/_adapters.py)."""
    return adapter_for(request.param)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["eager", "compiled"])
def compiled(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# One process has one Keras backend (KERAS_BACKEND is read at import), so the Keras tests of
# the other backends run in a child pytest per backend, with this variable set in the child.
KERAS_CHILD = "GRADREV_KERAS_CHILD"


def run_keras_child(
    keras_backend: str, *files: Path, select: str = "keras", needs: tuple[str, ...] = ()
) -> str:
    """Run ``files``' tests selected by ``-k select`` in a child pytest on one Keras backend;
    fail with its output unless they pass. Returns the child's summary line.

    Skips inside a child, and where Keras, ``keras_backend`` or a module in ``needs`` is
    missing."""
    if os.environ.get(KERAS_CHILD):
        pytest.skip("already in a Keras child process")
    for module in ("keras", *needs):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    if not installed(keras_backend):
        pytest.skip(f"{keras_backend} is not installed")
    env = {
        **os.environ,
        KERAS_CHILD: "1",
        "KERAS_BACKEND": keras_backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The summary line alone: a framework's warning text may itself say "failed".
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and " failed" not in summary, proc.stdout[-4000:]
    return summary


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: runs on an accelerator; skipped where none is visible")
    config.addinivalue_line("markers", "slow: compiles or spawns processes")
    config.addinivalue_line(
        "markers", "distributed: DDP/FSDP, JAX sharding, tf.distribute (select with -m distributed)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        capability = CAPABILITY_TESTS.get(item.name)
        if capability and (reason := lacks(capability)):
            item.add_marker(pytest.mark.skip(reason=reason))
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        if params.get("device") != "gpu":
            continue
        item.add_marker(pytest.mark.gpu)
        name = params.get("backend")
        if name is None or item.get_closest_marker("skip"):
            continue
        if not installed(name) or not adapter_for(name).has_gpu():
            item.add_marker(pytest.mark.skip(reason=f"no GPU visible to {name}"))
