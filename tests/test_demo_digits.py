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


def test_the_conv_layer_is_a_3x3_same_convolution() -> None:
    """convnet's im2col (nine shifted views of the padded images, one matrix product) equals a
    convolution written out pixel by pixel, for two seeds with their own kernels."""
    from gradrev.tools.demo.convnet import NUMPY, features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 4, 3))  # (seeds, batch, side, side, channels)
    kernel = rng.normal(size=(2, 27, 5))  # rows: (dr, dc) major, input channel minor
    # the second block's kernel picks the centre pixel (k = 4) of each of its five channels
    centre = np.zeros((2, 5, 45))  # kernels are channels-first: (out, 9·in)
    centre[:, np.arange(5), 4 * 5 + np.arange(5)] = 1
    zero = np.zeros((2, 5, 1))
    p = {
        "conv1": kernel.transpose(0, 2, 1),
        "conv1_bias": zero,
        "conv2": centre,
        "conv2_bias": zero,
    }
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((2, 3, 4, 4, 5))
    for r in range(4):
        for c in range(4):
            window = padded[:, :, r : r + 3, c : c + 3, :].reshape(2, 3, 27)
            expected[:, :, r, c] = np.einsum("sbk,sko->sbo", window, kernel)
    relu = np.maximum(expected, 0)
    pooled = relu.reshape(2, 3, 2, 2, 2, 2, 5).max(axis=(3, 5))  # after the first block
    h, stats = features(NUMPY, p, None, x.transpose(0, 4, 1, 2, 3))  # (S, c, B, side, side)
    assert stats == []  # no BatchNorm in this toy
    np.testing.assert_allclose(h, pooled.max(axis=(2, 3)).reshape(2, 3, 5), rtol=1e-12)


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
    # An interval holding 0 is no evidence of a difference, even when a few seeds happen to
    # sit closer together than the mean difference (seed SD 1, mean +1.7, CI about ±8).
    close = {
        "torch": {"dann": {"target_acc_per_seed": [0.50, 0.51, 0.52]}},
        "tensorflow": {"dann": {"target_acc_per_seed": [0.53, 0.49, 0.56]}},  # +3, −2, +4
    }
    effect = framework_effect(close)["tensorflow"]
    assert effect["seed_sd_points"] == pytest.approx(1.0)
    assert effect["ci95_points"][0] < 0 < effect["ci95_points"][1]
    assert effect["mean_diff_points"] == pytest.approx(5 / 3)
    assert effect["within_seed_noise"] is True


@pytest.fixture(scope="module")
def problem() -> object:
    from gradrev.tools.demo.convnet import make_problem

    return make_problem(0, SMALL)


@pytest.fixture(scope="module")
def torch_runs(problem: object) -> dict[str, object]:
    pytest.importorskip("torch")
    from gradrev.tools.demo import convnet, digits_torch

    return {
        mode: convnet.train(digits_torch, [problem], SMALL, mode)[0]  # type: ignore[list-item]
        for mode in ("dann", "control")
    }


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_tiny_run_agrees_with_torch_in_float64(
    backend: str, problem: object, torch_runs: dict[str, object]
) -> None:
    """Same weights, same batches, same arithmetic: float64 parameters within 1e-9 of torch's
    (MLX: 1e-6, its float64 exp and log have float32 accuracy), λ stepped by the layer."""
    if backend not in demo.installed_backends():
        pytest.skip(f"{backend} not installed")
    import importlib

    from gradrev.tools.demo.convnet import evaluate, train

    framework = importlib.import_module(f"gradrev.tools.demo.digits_{backend}")
    ticks: list[None] = []
    run = train(framework, [problem], SMALL, "dann", lambda: ticks.append(None))[0]  # type: ignore[list-item]
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


def test_seeds_trained_together_match_seeds_trained_alone(
    problem: object, torch_runs: dict[str, object]
) -> None:
    """The demo trains every seed at once (a leading seed axis on every tensor); each seed's
    model is the one it would be alone."""
    pytest.importorskip("torch")
    from gradrev.tools.demo import convnet, digits_torch

    other = convnet.make_problem(1, SMALL)
    together = convnet.train(digits_torch, [problem, other], SMALL, "dann")  # type: ignore[list-item]
    alone = [torch_runs["dann"], convnet.train(digits_torch, [other], SMALL, "dann")[0]]
    for run, ref in zip(together, alone):
        for key, value in ref.params.items():  # type: ignore[attr-defined]
            np.testing.assert_allclose(run.params[key], value, rtol=0, atol=1e-12, err_msg=key)
    assert not np.allclose(together[0].params["conv1"], together[1].params["conv1"])


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
@pytest.mark.parametrize(("dtype", "seeds"), [("float64", 2), ("float32", 3)])
def test_cli_digits_report(dtype: str, seeds: int, tmp_path: Path) -> None:
    """The issue's two runs, small: the JSON names the task and carries the gain with its CI
    (and the λ = 0 control); float64 agrees with PyTorch, float32 reports the framework
    effect with its four keys."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    out = tmp_path / "report.json"
    proc = gradrev_demo(
        *("--backends", "torch,jax", "--seeds", str(seeds), "--steps", "15", "--dtype", dtype),
        *("--out", str(tmp_path), "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["task"] == "digits" and report["config"]["seeds"] == seeds
    assert sorted(report["results"]) == ["jax", "torch"]
    for name in ("torch", "jax"):
        gain = report["dann_gain"][name]
        assert isinstance(gain["mean_points"], float) and len(gain["ci95_points"]) == 2
        assert set(report["results"][name]) >= {"source_only", "dann", "control"}
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "DANN gain on target" in proc.stdout and "λ = 0 control" in proc.stdout
    assert "Ganin et al., JMLR 2016, Table 2" in proc.stdout
    if dtype == "float64":  # the frameworks agree: no framework effect to report
        assert report["distance_to_torch"]["jax"]["dann"]["max_abs_param_diff"] < 1e-9
        assert "framework_effect" not in report
        return
    effect = report["framework_effect"]
    assert set(effect) == {"jax"}
    keys = {"mean_diff_points", "ci95_points", "seed_sd_points", "within_seed_noise"}
    assert set(effect["jax"]) >= keys
    assert isinstance(effect["jax"]["within_seed_noise"], bool)
    assert "framework effect, float32" in proc.stdout


def test_digits_config_replaces_like_the_cli() -> None:
    config = replace(demo.DigitsConfig(), seeds=2)
    assert config.seeds == 2 and config.batchnorm and config.normalize
