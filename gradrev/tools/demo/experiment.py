"""``gradrev demo --task digits``: every backend, every seed, source-only, DANN and the λ = 0
control, from the same NumPy weights and batches; the report in the moons format."""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from gradrev.tools.demo import DigitsConfig, stats
from gradrev.tools.demo.convnet import MODES, ConvProblem, ConvRun, evaluate, make_problem, train
from gradrev.tools.demo.problem import distance, summary

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
    results: dict[str, Any] = {}
    runs: dict[str, dict[str, list[ConvRun]]] = {}
    for name in backends:
        framework = importlib.import_module(f"gradrev.tools.demo.digits_{name}")
        # every seed trains at once: one tick is a step of each seed's model
        tick: Callable[[], None] = (
            (lambda: None) if progress is None else partial(progress, name, len(problems))
        )
        start = time.perf_counter()
        runs[name] = {mode: train(framework, problems, config, mode, tick) for mode in MODES}
        results[name] = {"wall_time_s": time.perf_counter() - start}
        for mode, rs in runs[name].items():
            src = [evaluate(r, p, "source_test")[0] for r, p in zip(rs, problems)]
            tgt = [evaluate(r, p, "target_test")[0] for r, p in zip(rs, problems)]
            results[name][mode] = summary(src, tgt, [r.final_lambda for r in rs])
    report: dict[str, Any] = {
        "task": "digits",
        "config": dataclasses.asdict(config),
        "results": results,
        "distance_to_torch": distances(runs, problems) if "torch" in runs else {},
        "dann_gain": stats.dann_gain(results),
        "paper": {"task": "MNIST → MNIST-M (Ganin et al., JMLR 2016, Table 2)", **PAPER},
        "_runs": runs,
        "_problems": problems,
    }
    if config.dtype == "float32":
        report["framework_effect"] = stats.framework_effect(results)
    return report


def distances(runs: dict[str, Any], problems: list[ConvProblem]) -> dict[str, Any]:
    """How far each backend ends from PyTorch: parameters and per-seed target accuracies."""
    out = {}
    for name in runs:
        if name == "torch":
            continue
        entry = {}
        for mode in MODES:
            pairs = list(zip(runs["torch"][mode], runs[name][mode]))
            max_param = max(
                float(np.max(np.abs(ref.params[k] - other.params[k])))
                for ref, other in pairs
                for k in ref.params
            )
            target = [
                abs(evaluate(ref, p, "target_test")[0] - evaluate(other, p, "target_test")[0])
                for (ref, other), p in zip(pairs, problems)
            ]
            entry[mode] = distance(max_param, target)
        out[name] = entry
    return out
