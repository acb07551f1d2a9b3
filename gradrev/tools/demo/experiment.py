"""``gradrev demo --task digits``: every backend, every seed, source-only, DANN and the λ = 0
control, from the same NumPy weights and batches; the report in the moons format."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from gradrev.tools.demo import DigitsConfig, report
from gradrev.tools.demo.convnet import MODES, ConvProblem, ConvRun, evaluate, make_problem, train

# Ganin et al., JMLR 2016, Table 2, MNIST → MNIST-M, target accuracy.
PAPER = {"source_only": 0.5225, "dann": 0.7666, "train_on_target": 0.9596}


def run(
    config: DigitsConfig,
    backends: list[str],
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Train ``backends`` on every seed; return the report (the JSON ``--json`` writes).

    ``progress(backend, n)`` is called after every training step of n models.
    """
    from gradrev.tools.demo.digits import digits_m

    data = digits_m(config.data_seed)
    problems = [make_problem(seed, config, data) for seed in range(config.seeds)]
    runs: dict[str, dict[str, list[ConvRun]]] = {}
    walls = {}
    for name in backends:
        framework = importlib.import_module(f"gradrev.tools.demo.digits_{name}")
        # every seed trains at once: one tick is a step of each seed's model
        tick: Callable[[], None] = (
            (lambda: None) if progress is None else partial(progress, name, len(problems))
        )
        start = time.perf_counter()
        runs[name] = {mode: train(framework, problems, config, mode, tick) for mode in MODES}
        walls[name] = time.perf_counter() - start
    paper = {"task": "MNIST → MNIST-M (Ganin et al., JMLR 2016, Table 2)", **PAPER}
    return report.assemble("digits", config, runs, walls, problems, _params, _accuracy, paper=paper)


def _params(run: ConvRun) -> list[np.ndarray]:
    return [run.params[key] for key in sorted(run.params)]


def _accuracy(run: ConvRun, problem: ConvProblem, domain: str) -> float:
    return evaluate(run, problem, domain + "_test")[0]
