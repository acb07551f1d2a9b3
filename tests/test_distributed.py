"""gradrev inside each framework's distributed engine: the same gradients as one device.

Each case runs tests/distributed_workers.py in a fresh process (several ranks, or forced
host devices) and compares what it saved with a single-process computation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import distributed_workers as workers
import numpy as np
import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def run_worker(name: str, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"{name}.npz"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    proc = subprocess.run(
        [sys.executable, workers.__file__, name, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def single_process_torch_grads(lam: float) -> dict[str, np.ndarray]:
    import torch

    model = workers.torch_model()
    model[2].lambda_ = lam
    x, y = (torch.from_numpy(a) for a in workers.batch())
    return workers.torch_grads(model, x, y)


@pytest.mark.parametrize("engine", ["torch_ddp", "torch_fsdp"])
def test_torch_ddp_and_fsdp_match_one_process(engine: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    distributed = run_worker(engine, tmp_path)
    single = single_process_torch_grads(workers.LAM)
    assert distributed.keys() == single.keys()
    for name in single:
        np.testing.assert_allclose(distributed[name], single[name], rtol=1e-12, atol=1e-15)
    # The reversal is really in there: below it, gradients are -λ times the plain ones.
    plain = single_process_torch_grads(-1.0)  # λ = -1: R is the identity for gradients
    np.testing.assert_allclose(single["0.weight"], -workers.LAM * plain["0.weight"], rtol=1e-12)
    np.testing.assert_allclose(single["3.weight"], plain["3.weight"], rtol=1e-12)


def test_jax_named_sharding_and_shard_map_match_one_device(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    got = run_worker("jax_sharding", tmp_path)
    np.testing.assert_allclose(got["sharded"], got["single"], rtol=1e-12)
    np.testing.assert_allclose(got["shard_map"], got["single"], rtol=1e-12)
    assert got["sharding_kept"] and got["values_kept"]


def test_tf_mirrored_strategy_fit_matches_one_replica(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    got = run_worker("tf_mirrored", tmp_path)
    for i in range(4):
        np.testing.assert_allclose(got[f"mirrored_{i}"], got[f"single_{i}"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["single_0"], 0)
