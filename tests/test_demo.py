"""``gradrev demo`` at reduced size: exit code, JSON schema, figure, cross-framework agreement."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradrev import _registry
from gradrev.tools import demo


def gradrev_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
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
        # MLX computes float64 tanh, exp and log1p with float32 accuracy (about 1e-8).
        assert entry["dann"]["max_abs_param_diff"] < (1e-6 if name == "mlx" else 1e-9), name
    assert "DANN gain on target" in proc.stdout


def test_demo_rejects_unknown_backend(tmp_path: Path) -> None:
    proc = gradrev_demo("--backends", "mxnet", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown backends ['mxnet']" in proc.stdout


def test_problem_is_the_same_for_every_backend() -> None:
    from gradrev.tools.demo.problem import make_problem

    config = demo.Config(seeds=1, steps=10)
    a, b = make_problem(3, config), make_problem(3, config)
    assert (a.xs == b.xs).all() and (a.source_batches == b.source_batches).all()
    assert a.source_batches.shape == (10, config.batch_size)
    assert a.init["f1"][0].shape == (2, config.hidden) and a.init["d2"][0].shape == (
        config.hidden,
        1,
    )


def demo_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
        + f"from gradrev.tools.cli import main\nsys.exit(main(['demo', *{list(args)!r}]))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_demo_without_matplotlib_or_rich_still_reports(tmp_path: Path) -> None:
    """It used to train for minutes, then crash on the figure before writing the JSON."""
    out = tmp_path / "report.json"
    proc = demo_without(
        ("matplotlib", "rich"),
        *("--backends", "torch", "--seeds", "1", "--steps", "5"),
        *("--out", str(tmp_path), "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "no figure: matplotlib is not installed: pip install " in proc.stdout
    assert proc.stdout.index("no figure") < proc.stdout.index("training torch")  # said first
    report = json.loads(out.read_text())
    assert report["plot"] is None and "torch" in report["results"]
    assert not (tmp_path / "dann_moons.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_demo_prints_plain_progress_lines_when_not_a_tty(tmp_path: Path) -> None:
    proc = gradrev_demo(
        *("--backends", "torch", "--seeds", "1", "--steps", "30", "--out", str(tmp_path))
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("training torch")]
    assert lines[0].startswith("training torch: 0/60 steps")
    assert lines[-1].startswith("training torch: 60/60 steps (100%)")
    assert "\r" not in proc.stdout


def test_progress_bar_in_a_terminal_redraws_one_line_with_an_eta() -> None:
    from gradrev.tools.demo.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = iter(float(t) for t in range(100))
    term = Terminal()
    progress = Progress(4, term, clock=lambda: next(clock))
    for _ in range(4):
        progress.advance("torch")
    progress.close()
    frames = term.getvalue().split("\r")
    assert "1/4" in frames[1] and "ETA ?" in frames[1]  # no rate yet
    assert "2/4" in frames[2] and "ETA 0:01" in frames[2]
    assert frames[-1].endswith("\n") and "4/4" in frames[-1]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_demo_trains_on_one_thread_and_restores_the_setting() -> None:
    """Tiny matrices: torch's intra-op threads only fight over a busy machine's cores."""
    import torch

    from gradrev.tools.demo import torch as torch_demo
    from gradrev.tools.demo.problem import make_problem

    config = demo.Config(seeds=1, steps=3)
    before = torch.get_num_threads()
    seen = []
    torch_demo.train(
        make_problem(0, config), config, True, tick=lambda: seen.append(torch.get_num_threads())
    )
    assert seen == [1, 1, 1]
    assert torch.get_num_threads() == before


def test_progress_eta_uses_each_backends_own_rate() -> None:
    """Issue 22: the ETA extrapolated from torch, the fastest backend, and started far too low."""
    from gradrev.tools.demo.progress import Progress

    times = iter([float(t) for t in range(1, 21)] + [20.0 + 5 * k for k in range(1, 30)])
    out = io.StringIO()
    progress = Progress(40, out, every=0, clock=lambda: next(times), plan={"torch": 20, "jax": 20})
    for _ in range(20):  # 1 s a step
        progress.advance("torch")
    progress.advance("jax")  # 5 s a step, not timed yet: a provisional ETA, marked so
    assert out.getvalue().splitlines()[-1].endswith("ETA ~0:18 (1 still to time)")
    for _ in range(3):
        progress.advance("jax")
    # 16 jax steps left at 5 s: 1:20, where the average rate so far (40 s / 24) says 0:26
    assert out.getvalue().splitlines()[-1].endswith("ETA 1:20")


def test_tables_say_one_seed_not_one_seeds() -> None:
    """Issue 22: the demo printed "(1 seeds, …)"."""
    from gradrev.tools.demo.report import tables

    row = {
        "source_acc": 1.0,
        "source_acc_std": 0.0,
        "target_acc": 0.5,
        "target_acc_std": 0.0,
        "target_acc_per_seed": [0.5],
        "final_lambda": 0.9,
    }
    report = {
        "config": {"seeds": 1},
        "results": {"torch": {"wall_time_s": 1.0, "source_only": row, "dann": row}},
        "distance_to_torch": {},
        "dann_gain": {"torch": {"mean_points": 0.0, "ci95_points": None}},
    }
    assert "torch  (1 seed, 1.0 s)" in tables(report)


@pytest.mark.slow
@pytest.mark.skipif(
    not all(_registry.importable(m) for m in ("torch", "jax", "flax")), reason="needs torch and jax"
)
def test_moons_float32_reports_the_framework_effect(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = gradrev_demo(
        *("--backends", "torch,jax", "--quick", "--seeds", "3", "--dtype", "float32"),
        *("--out", str(tmp_path), "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["task"] == "moons" and report["config"]["steps"] == 40  # --quick
    effect = report["framework_effect"]["jax"]
    assert {"mean_diff_points", "ci95_points", "seed_sd_points", "within_seed_noise"} <= set(effect)
    assert set(report["dann_gain"]) == {"torch", "jax"}
    assert "framework effect, float32" in proc.stdout


def test_data_seed_is_for_digits_only(tmp_path: Path) -> None:
    proc = gradrev_demo("--data-seed", "1", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--data-seed is for --task digits" in proc.stdout
