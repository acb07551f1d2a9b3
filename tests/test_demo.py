"""``gradrev demo`` at reduced size: exit code, JSON schema, figure, cross-framework agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradrev import demo


def gradrev_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "gradrev", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_demo_small_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = gradrev_demo("--seeds", "2", "--steps", "40", "--out", str(tmp_path), "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    backends = demo.installed_backends()
    assert sorted(report["results"]) == sorted(backends)
    for name in backends:
        for mode in ("source_only", "dann"):
            accs = report["results"][name][mode]
            assert 0.0 <= accs["source_acc"] <= 1.0 and 0.0 <= accs["target_acc"] <= 1.0
        assert 0.0 < report["results"][name]["dann"]["final_lambda"] < 1.0
    png = Path(report["plot"])
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, entry in report["distance_to_torch"].items():  # float64: the same model
        assert entry["dann"]["max_abs_param_diff"] < 1e-9, name
    assert "DANN gain on target" in proc.stdout


def test_demo_rejects_unknown_backend(tmp_path: Path) -> None:
    proc = gradrev_demo("--backends", "mxnet", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown backends ['mxnet']" in proc.stdout


def test_problem_is_the_same_for_every_backend() -> None:
    config = demo.Config(seeds=1, steps=10)
    a, b = demo.make_problem(3, config), demo.make_problem(3, config)
    assert (a.xs == b.xs).all() and (a.source_batches == b.source_batches).all()
    assert a.source_batches.shape == (10, config.batch_size)
    assert a.init["f1"][0].shape == (2, config.hidden) and a.init["d2"][0].shape == (
        config.hidden,
        1,
    )
