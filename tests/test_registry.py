"""The registry of frameworks: one entry per framework, read without importing any, and a
plug-in installed through the ``gradrev.backends`` entry point treated like a built-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradrev import _registry

TOY = Path(__file__).parent / "toy"


def install_toy(site: Path) -> dict[str, str]:
    """The environment of a Python where the toy plug-in is installed as pip leaves it.

    A dist-info with its entry_points.txt on sys.path is what ``pip install`` writes and all
    that importlib.metadata reads; a real pip install would only add a network-free build.
    """
    dist = site / "toygrad_gradrev-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toygrad-gradrev\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gradrev.backends]\ntoygrad = toygrad_gradrev\n")
    path = [str(site), str(TOY), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def gradrev_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradrev", *args],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )


def test_an_installed_plugin_is_listed_by_info(tmp_path: Path) -> None:
    proc = gradrev_cli(install_toy(tmp_path), "info")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    toy = [line for line in proc.stdout.splitlines() if line.startswith("toygrad ")]
    assert toy and "devices: cpu" in toy[0], proc.stdout


def test_an_installed_plugin_is_certified_bit_exact_by_check(tmp_path: Path) -> None:
    proc = gradrev_cli(install_toy(tmp_path), "check", "--backends", "toygrad")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("toygrad ")]
    assert [row[2] for row in rows] == ["float16", "bfloat16", "float32", "float64"], rows
    # backend, device, dtype, cases, mismatches, verdict: every case of the parity check
    assert all(row[3] == "39" and row[4] == "0" and row[5] == "bit-exact" for row in rows), rows


def test_an_installed_plugin_steps_a_schedule_with_its_tensor(tmp_path: Path) -> None:
    code = (
        "import numpy as np, toygrad\n"
        "from gradrev import schedules\n"
        "lam = schedules.dann(total_steps=100)(toygrad.Tensor(np.array(50, np.int64)))\n"
        "print(type(lam).__name__, lam.dtype, round(float(lam.value), 4))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=install_toy(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["Tensor", "float32", "0.9866"]


def test_a_plugin_without_an_adapter_is_refused_by_check_with_a_reason(tmp_path: Path) -> None:
    env = install_toy(tmp_path)
    (tmp_path / "toygrad_gradrev-0.1.dist-info" / "entry_points.txt").write_text(
        "[gradrev.backends]\ntoygrad = toy_no_adapter\n"
    )
    (tmp_path / "toy_no_adapter.py").write_text("from toygrad_gradrev import is_tensor, reverse\n")
    proc = gradrev_cli(env, "check", "--backends", "toygrad")
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    assert "the backend plug-in toygrad ships no Adapter" in proc.stdout
    assert proc.stderr == "", proc.stderr[-2000:]  # no traceback


def test_a_plugin_that_fails_to_load_is_reported_by_info(tmp_path: Path) -> None:
    env = install_toy(tmp_path)
    (tmp_path / "toygrad_gradrev-0.1.dist-info" / "entry_points.txt").write_text(
        "[gradrev.backends]\ntoygrad = toy_broken\n"
    )
    (tmp_path / "toy_broken.py").write_text("raise RuntimeError('boom at import')\n")
    proc = gradrev_cli(env, "info")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    toy = [line for line in proc.stdout.splitlines() if line.startswith("toygrad ")]
    assert toy and "does not import" in toy[0] and "boom at import" in toy[0], proc.stdout
    assert proc.stderr == "", proc.stderr[-2000:]


def test_reading_the_registry_imports_no_framework() -> None:
    names = [fw.module for fw in _registry.BUILTINS]
    code = (
        "import sys\n"
        "from gradrev import _registry\n"
        "facts = [(fw.name, fw.extra, _registry.installed(fw.name)) for fw in _registry.frameworks()]\n"
        f"print(sorted(m for m in {names!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_builtin_backend_declares_what_the_registry_reads() -> None:
    for fw in _registry.BUILTINS:
        if not _registry.installed(fw.name):
            continue
        backend = fw.load()
        for name in ("is_tensor", "reverse", "devices", "schedule_math"):
            assert callable(getattr(backend, name, None)), (fw.name, name)
        assert "cpu" in backend.devices()[0].lower(), (fw.name, backend.devices())


def test_an_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        _registry.get("mxnet")
