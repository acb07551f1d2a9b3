"""``gradrev demo --task digits``: the digits-M data, the conv net in every framework, the
paired-t statistics, and the CLI's JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gradrev.tools import demo

pytest.importorskip("sklearn")

SMALL = demo.DigitsConfig(seeds=1, steps=12, batch_size=8, channels=(4, 8), hidden=8)


def test_digits_m_is_deterministic_and_follows_the_mnist_m_recipe() -> None:
    from sklearn.datasets import load_digits

    from gradrev.tools.demo.digits import digits_m, patches, split

    a, b, other = digits_m(0), digits_m(0), digits_m(1)
    for name in ("source_train", "target_train", "target_test"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.target_train, other.target_train)  # the seed picks the patches
    assert np.array_equal(a.source_train, other.source_train)  # and only the patches
    train, test = split()
    assert (len(train), len(test)) == (1198, 599) and not set(train) & set(test)
    digits = load_digits()
    source = np.repeat(digits.images[..., None] / 16.0, 3, axis=3)  # [0, 1], three channels
    assert np.array_equal(a.source_train, source[train])
    assert np.array_equal(a.source_test_labels, digits.target[test])
    assert np.array_equal(a.target_test_labels, a.source_test_labels)
    patch = patches(len(source), np.random.default_rng(0))
    assert patch.shape == (1797, 8, 8, 3) and patch.min() >= 0 and patch.max() <= 1
    assert np.array_equal(a.target_test, np.abs(source[test] - patch[test]))  # |digit − patch|
    assert a.target_train.shape == (1198, 8, 8, 3)


def test_patch_index_is_a_padded_3x3_neighbourhood() -> None:
    from gradrev.tools.demo.convnet import patch_index

    index = patch_index(4)
    assert index.shape == (16, 9)
    assert list(index[5]) == [0, 1, 2, 4, 5, 6, 8, 9, 10]  # pixel (1, 1): all inside
    assert list(index[0]) == [16, 16, 16, 16, 0, 1, 16, 4, 5]  # corner: 16 is the padding


def test_paired_t_interval_matches_a_hand_computed_case() -> None:
    from gradrev.tools.demo.stats import framework_effect, paired, t975

    # differences 10, 20, 10 points: mean 13.333, sd √(100/3) = 5.7735,
    # half-width t(0.975, 2) · sd / √3 = 4.3027 · 3.3333 = 14.342
    out = paired([0.5, 0.6, 0.7], [0.4, 0.4, 0.6])
    assert out["mean_points"] == pytest.approx(40 / 3)
    lo, hi = out["ci95_points"]
    assert lo == pytest.approx(40 / 3 - 4.3027 * math.sqrt(100 / 3) / math.sqrt(3))
    assert (round(lo, 3), round(hi, 3)) == (-1.009, 27.676)
    assert paired([0.5], [0.4])["ci95_points"] is None  # one seed: no interval
    assert t975(60) == pytest.approx(2.0003, abs=1e-3)  # the large-df expansion
    results = {
        "torch": {"dann": {"target_acc_per_seed": [0.50, 0.60, 0.70]}},  # seed SD 10 points
        "jax": {"dann": {"target_acc_per_seed": [0.51, 0.59, 0.71]}},  # +1, −1, +1
        "mlx": {"dann": {"target_acc_per_seed": [0.70, 0.81, 0.89]}},  # +20, +21, +19
    }
    effect = framework_effect(results)
    assert set(effect["jax"]) >= {"mean_diff_points", "ci95_points", "seed_sd_points"}
    assert effect["jax"]["seed_sd_points"] == pytest.approx(10.0)
    assert effect["jax"]["mean_diff_points"] == pytest.approx(1 / 3)
    assert effect["jax"]["within_seed_noise"] is True
    assert effect["mlx"]["mean_diff_points"] == pytest.approx(20.0)
    assert effect["mlx"]["ci95_points"][0] == pytest.approx(20 - 4.3027 / math.sqrt(3))
    assert effect["mlx"]["within_seed_noise"] is False


@pytest.fixture(scope="module")
def problem() -> object:
    from gradrev.tools.demo.convnet import make_problem

    return make_problem(0, SMALL)


@pytest.fixture(scope="module")
def torch_runs(problem: object) -> dict[str, object]:
    pytest.importorskip("torch")
    from gradrev.tools.demo import digits_torch

    return {mode: digits_torch.train(problem, SMALL, mode) for mode in ("dann", "control")}  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_tiny_run_agrees_with_torch_in_float64(
    backend: str, problem: object, torch_runs: dict[str, object]
) -> None:
    """Same weights, same batches, same arithmetic: float64 parameters within 1e-9 of torch's
    (MLX: 1e-6, its float64 exp and log have float32 accuracy), λ stepped by the layer."""
    if backend not in demo.installed_backends():
        pytest.skip(f"{backend} not installed")
    import importlib

    from gradrev.tools.demo.convnet import evaluate

    trainer = importlib.import_module(f"gradrev.tools.demo.digits_{backend}")
    ticks: list[None] = []
    run = trainer.train(problem, SMALL, "dann", lambda: ticks.append(None))
    ref = torch_runs["dann"]
    assert len(ticks) == SMALL.steps
    assert run.final_lambda == pytest.approx(ref.final_lambda) and 0.5 < run.final_lambda < 1  # type: ignore[attr-defined]
    tolerance = 1e-6 if backend == "mlx" else 1e-9
    for key, value in ref.params.items():  # type: ignore[attr-defined]
        assert run.params[key].dtype == np.float64
        np.testing.assert_allclose(run.params[key], value, rtol=0, atol=tolerance, err_msg=key)
    for key, value in ref.running.items():  # type: ignore[attr-defined]
        np.testing.assert_allclose(run.running[key], value, rtol=0, atol=tolerance, err_msg=key)
    assert 0 <= evaluate(run, problem, "target_test")[0] <= 1  # type: ignore[arg-type]


def test_the_reversal_reaches_the_features_and_the_control_has_none(
    torch_runs: dict[str, object],
) -> None:
    dann, control = torch_runs["dann"], torch_runs["control"]
    assert control.final_lambda == 0.0  # type: ignore[attr-defined]
    assert not np.allclose(dann.params["conv1"], control.params["conv1"])  # type: ignore[attr-defined]
    # the domain head learns the same way in both until the features differ; the label head
    # sees only the source features


def gradrev_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradrev", "demo", "--task", "digits", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_cli_digits_writes_the_task_gain_and_distances(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    out = tmp_path / "f.json"
    proc = gradrev_demo(
        *("--backends", "torch,jax", "--quick", "--steps", "20", "--out", str(tmp_path)),
        *("--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["task"] == "digits" and report["config"]["seeds"] == 2
    assert sorted(report["results"]) == ["jax", "torch"]
    for name in ("torch", "jax"):
        gain = report["dann_gain"][name]
        assert isinstance(gain["mean_points"], float) and len(gain["ci95_points"]) == 2
        assert set(report["results"][name]) >= {"source_only", "dann", "control"}
    assert report["distance_to_torch"]["jax"]["dann"]["max_abs_param_diff"] < 1e-9
    assert "framework_effect" not in report  # float64: the frameworks agree
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "DANN gain on target" in proc.stdout and "λ = 0 control" in proc.stdout
    assert "Ganin et al., JMLR 2016, Table 2" in proc.stdout


@pytest.mark.slow
def test_cli_digits_float32_reports_the_framework_effect(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    out = tmp_path / "g.json"
    proc = gradrev_demo(
        *("--backends", "torch,jax", "--seeds", "3", "--steps", "15", "--dtype", "float32"),
        *("--out", str(tmp_path), "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    effect = json.loads(out.read_text())["framework_effect"]
    assert set(effect) == {"jax"}
    assert set(effect["jax"]) >= {
        "mean_diff_points",
        "ci95_points",
        "seed_sd_points",
        "within_seed_noise",
    }
    assert isinstance(effect["jax"]["within_seed_noise"], bool)
    assert "framework effect, float32" in proc.stdout


def test_digits_config_replaces_like_the_cli() -> None:
    config = replace(demo.DigitsConfig(), seeds=2)
    assert config.seeds == 2 and config.batchnorm and config.normalize
