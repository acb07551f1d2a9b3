"""``python -m gradrev check`` and ``info`` as a user runs them."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import installed, requested_backends, skip_reason


def gradrev_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradrev", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_check_writes_json_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    selected = requested_backends()  # GRADREV_TEST_BACKENDS, else every installed backend
    chosen = ("--backends", ",".join(selected)) if selected else ()
    proc = gradrev_cli("check", *chosen, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is True
    backends = {r["backend"] for r in report["results"]}
    everything = ("torch", "jax", "tensorflow", "mlx")
    assert backends == set(selected or (n for n in everything if installed(n)))
    row = report["results"][0]
    assert {"backend", "device", "dtype", "lambda", "match"} <= row.keys()
    assert {r["dtype"] for r in report["results"]} >= {"float16", "float32", "float64"}
    assert "bit-exact" in proc.stdout


def test_check_rejects_unknown_backend() -> None:
    proc = gradrev_cli("check", "--backends", "mxnet")
    assert proc.returncode == 2
    assert "unknown backends ['mxnet']" in proc.stdout


def test_info_lists_each_backend() -> None:
    proc = gradrev_cli("info")
    assert proc.returncode == 0, proc.stderr
    for name in ("torch", "jax", "tensorflow", "mlx"):
        assert name in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    bool(skip_reason("torch")), reason=f"its rows need torch: {skip_reason('torch')}"
)
def test_bench_quick_writes_json(tmp_path: Path) -> None:
    """The benchmark runs end to end (no timing is asserted: speed lives in the benchmark)."""
    out = tmp_path / "bench.json"
    proc = gradrev_cli("bench", "--quick", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = {r["section"].split(",")[0] for r in report["rows"]}
    assert {"dispatch: gradrev.reverse vs the backend function"} <= sections
    if installed("torch"):  # the saved-bytes section measures torch's autograd graph
        saved = [r for r in report["rows"] if r["case"] == "gradrev" and r["unit"] == "bytes"]
        assert saved and saved[0]["value"] == 0  # nothing saved for backward: not a timing
    assert "cpu" in report["machine"] or "processor" in report["machine"]


def blocked(*modules: str) -> str:
    """Python code that makes ``modules`` unimportable, as in an install without them."""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


def gradrev_cli_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    code = blocked(*modules) + f"from gradrev._cli import main\nsys.exit(main({list(args)!r}))\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["bench", "--help"]], ids=str)
def test_help_needs_no_numpy(args: list[str]) -> None:
    """A torch-only install has no NumPy: building the options must not import it."""
    proc = gradrev_cli_without(("numpy",), *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: gradrev" in proc.stdout


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_check_without_ml_dtypes_reports_no_false_mismatch(tmp_path: Path) -> None:
    """Without ml_dtypes, float64 used to be built as bfloat16: a false MISMATCH."""
    out = tmp_path / "check.json"
    proc = gradrev_cli_without(("ml_dtypes",), "check", "--backends", "torch", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "MISMATCH" not in proc.stdout
    report = json.loads(out.read_text())
    rows = {(r["dtype"], r["match"]) for r in report["results"]}
    assert rows == {("float16", True), ("float32", True), ("float64", True)}
    assert report["skipped"] == [
        {"backend": "torch", "dtype": "bfloat16", "reason": "ml_dtypes is not installed"}
    ]
    assert "bfloat16   skipped: ml_dtypes is not installed" in proc.stdout


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_check_json_records_versions_platform_and_devices(tmp_path: Path) -> None:
    import platform

    import gradrev

    out = tmp_path / "check.json"
    proc = gradrev_cli("check", "--backends", "torch", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["gradrev"] == gradrev.__version__
    assert report["python"] == platform.python_version()
    assert report["platform"] == platform.platform()
    # The distribution's version: torch.__version__ adds a local tag (+cu124) on some builds.
    assert report["frameworks"]["torch"]["version"] == importlib.metadata.version("torch")
    assert report["frameworks"]["torch"]["devices"][0] == "cpu"
    assert {r["dtype"] for r in report["results"]} == {"float16", "bfloat16", "float32", "float64"}
    assert "docs/semantics.md" not in proc.stdout  # pip users have no docs folder


@pytest.mark.parametrize("command", ["info", "check"])
def test_no_framework_start_up_noise_on_stderr(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "gradrev", command],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stderr == ""


def test_bench_help_lists_its_options() -> None:
    proc = gradrev_cli("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--json" in proc.stdout


def test_bench_ships_with_the_package(tmp_path: Path) -> None:
    """``gradrev bench`` works from an installed package, without the source checkout."""
    import shutil

    import gradrev

    shutil.copytree(Path(gradrev.__file__).parent, tmp_path / "gradrev")
    code = "import sys; from gradrev import _bench; print(_bench.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(tmp_path))
