"""The moons problem and the training loop shared by every framework, in NumPy."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from gradrev.tools.demo import LAYERS, Config, report


@dataclass
class Problem:
    """One seed's data, batch order and initial weights, shared by every backend."""

    xs: np.ndarray
    ys: np.ndarray
    xt: np.ndarray
    yt: np.ndarray  # target labels: used for evaluation only, never for training
    source_batches: np.ndarray  # (steps, batch_size) indices into xs
    target_batches: np.ndarray
    init: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (kernel (in, out), bias)


@dataclass
class Run:
    """What a backend's trainer returns for one model."""

    params: dict[str, tuple[np.ndarray, np.ndarray]]
    predict: Callable[[np.ndarray], np.ndarray]  # points (n, 2) -> P(class 1), shape (n,)
    final_lambda: float


def moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two inter-twinning half circles, centred, with Gaussian noise."""
    n1 = n // 2
    t1, t2 = np.pi * rng.uniform(0, 1, n1), np.pi * rng.uniform(0, 1, n - n1)
    upper = np.stack([np.cos(t1), np.sin(t1)], 1)
    lower = np.stack([1 - np.cos(t2), 0.5 - np.sin(t2)], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (n, 2)) - np.array([0.5, 0.25])
    return x, np.r_[np.zeros(n1, np.int64), np.ones(n - n1, np.int64)]


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.asarray(x @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]))


def make_problem(seed: int, config: Config) -> Problem:
    rng = np.random.default_rng(seed)
    xs, ys = moons(config.points, config.noise, rng)
    xt, yt = moons(config.points, config.noise, rng)
    xt = rotate(xt, config.rotation)
    epochs = config.steps * config.batch_size // config.points + 1
    shape = (config.steps, config.batch_size)
    src = np.concatenate([rng.permutation(config.points) for _ in range(epochs)])
    tgt = np.concatenate([rng.permutation(config.points) for _ in range(epochs)])
    init = {}
    for name, fan_in, fan_out in LAYERS:
        i = config.hidden if fan_in == "h" else int(fan_in)
        o = config.hidden if fan_out == "h" else int(fan_out)
        init[name] = (rng.normal(0, 1 / np.sqrt(i), (i, o)), np.zeros(o))
    dt = np.dtype(config.dtype)
    return Problem(
        xs.astype(dt),
        ys,
        xt.astype(dt),
        yt,
        src[: np.prod(shape)].reshape(shape),
        tgt[: np.prod(shape)].reshape(shape),
        {k: (w.astype(dt), b.astype(dt)) for k, (w, b) in init.items()},
    )


def adam_corrections(step: int) -> tuple[float, float]:
    """Adam's bias corrections 1/(1-β1^t), 1/(1-β2^t), computed once in Python float64 so
    every backend applies the very same numbers."""
    return 1.0 / (1.0 - 0.9**step), 1.0 / (1.0 - 0.999**step)


def accuracy(run: Run, x: np.ndarray, y: np.ndarray) -> float:
    return float(((run.predict(x) > 0.5).astype(np.int64) == y).mean())


def run(
    config: Config,
    backends: list[str],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``backends`` on every seed; return the report (the JSON ``--json`` writes).

    ``progress(backend)`` is called after every training step.
    """
    problems = [make_problem(seed, config) for seed in range(config.seeds)]
    runs: dict[str, dict[str, list[Run]]] = {}
    walls = {}
    for name in backends:
        trainer = importlib.import_module(f"gradrev.tools.demo.{name}")
        start = time.perf_counter()
        runs[name] = {"source_only": [], "dann": []}
        tick: Callable[[], None] = (lambda: None) if progress is None else partial(progress, name)
        for problem in problems:
            for mode in ("source_only", "dann"):
                runs[name][mode].append(trainer.train(problem, config, mode == "dann", tick))
        walls[name] = time.perf_counter() - start
    return report.assemble("moons", config, runs, walls, problems, _params, _accuracy)


def _params(run: Run) -> list[np.ndarray]:
    return [a for key in sorted(run.params) for a in run.params[key]]


def _accuracy(run: Run, problem: Problem, domain: str) -> float:
    if domain == "source":  # the moons have no test split: the training points
        return accuracy(run, problem.xs, problem.ys)
    return accuracy(run, problem.xt, problem.yt)
