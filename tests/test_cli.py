"""``python -m gradrev check`` and ``info`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import installed, requested_backends, skip_reason


def gradrev_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "gradrev", *args],
        capture_output=True,
        text=True,
        env=env,
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
    assert backends == set(selected or (n for n in ("torch", "jax", "tensorflow") if installed(n)))
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
    for name in ("torch", "jax", "tensorflow"):
        assert name in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    bool(skip_reason("torch")), reason=f"its rows need torch: {skip_reason('torch')}"
)
def test_bench_quick_writes_json(tmp_path: Path) -> None:
    """The benchmark runs end to end (no timing is asserted: speed lives in the benchmark)."""
    out = tmp_path / "bench.json"
    proc = gradrev_cli("bench", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = {r["section"].split(",")[0] for r in report["rows"]}
    assert {"dispatch: gradrev.reverse vs the backend function"} <= sections
    saved = [r for r in report["rows"] if r["case"] == "gradrev" and r["unit"] == "bytes"]
    assert saved and saved[0]["value"] == 0  # nothing saved for backward: a property, not a timing
    assert "cpu" in report["machine"] or "processor" in report["machine"]
