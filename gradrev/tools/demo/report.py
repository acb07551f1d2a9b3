"""Tables, figure and JSON for ``gradrev demo``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gradrev.tools.demo import stats

_MODES = {"source_only": "source-only", "dann": "dann", "control": "dann, λ = 0"}


def assemble(
    task: str,
    config: Any,
    runs: dict[str, dict[str, list[Any]]],
    walls: dict[str, float],
    problems: list[Any],
    params: Callable[[Any], list[np.ndarray]],
    accuracy: Callable[[Any, Any, str], float],
    **extra: Any,
) -> dict[str, Any]:
    """The report of either task (what ``--json`` writes, and the private ``_runs`` and
    ``_problems`` for the figure).

    ``runs``: backend -> mode -> one trained model per seed (``problems``); ``params(run)``:
    the model's parameter arrays; ``accuracy(run, problem, domain)``: its accuracy on the
    ``"source"`` or ``"target"`` evaluation data.
    """
    results: dict[str, Any] = {}
    for name, modes in runs.items():
        results[name] = {"wall_time_s": walls[name]}
        for mode, rs in modes.items():
            src = [accuracy(r, p, "source") for r, p in zip(rs, problems)]
            tgt = [accuracy(r, p, "target") for r, p in zip(rs, problems)]
            results[name][mode] = summary(src, tgt, [r.final_lambda for r in rs])
    report: dict[str, Any] = {
        "task": task,
        "config": dataclasses.asdict(config),
        "results": results,
        "distance_to_torch": distances(runs, problems, params, accuracy) if "torch" in runs else {},
        "dann_gain": stats.dann_gain(results),
        **extra,
        "_runs": runs,
        "_problems": problems,
    }
    if config.dtype == "float32":
        report["framework_effect"] = stats.framework_effect(results)
    return report


def summary(source: list[float], target: list[float], lambdas: list[float]) -> dict[str, Any]:
    """One model's row of the report: accuracies over seeds, the final λ."""
    return {
        "source_acc": float(np.mean(source)),
        "source_acc_std": float(np.std(source)),
        "target_acc": float(np.mean(target)),
        "target_acc_std": float(np.std(target)),
        "target_acc_per_seed": target,
        "final_lambda": float(np.mean(lambdas)),
    }


def distances(
    runs: dict[str, dict[str, list[Any]]],
    problems: list[Any],
    params: Callable[[Any], list[np.ndarray]],
    accuracy: Callable[[Any, Any, str], float],
) -> dict[str, Any]:
    """How far each backend ends from PyTorch: parameters and per-seed target accuracies."""
    out: dict[str, Any] = {}
    for name, modes in runs.items():
        if name == "torch":
            continue
        out[name] = {}
        for mode, rs in modes.items():
            pairs = list(zip(runs["torch"][mode], rs))
            max_param = max(
                float(np.max(np.abs(a - b)))
                for ref, other in pairs
                for a, b in zip(params(ref), params(other), strict=True)
            )
            target = [
                abs(accuracy(ref, p, "target") - accuracy(other, p, "target"))
                for (ref, other), p in zip(pairs, problems)
            ]
            out[name][mode] = {
                "max_abs_param_diff": max_param,
                "max_target_acc_diff": float(max(target)),
                "seeds_identical_accuracy": int(sum(t == 0 for t in target)),
            }
    return out


def tables(report: dict[str, Any]) -> str:
    """One table per backend, the DANN gain with its CI, the cross-framework distance to
    PyTorch, and (float32) the framework effect."""
    lines = []
    seeds = report["config"]["seeds"]
    for name, res in report["results"].items():
        plural = "seed" if seeds == 1 else "seeds"
        lines.append(f"{name}  ({seeds} {plural}, {res['wall_time_s']:.1f} s)")
        lines.append(f"  {'model':<12} {'source acc':>16} {'target acc':>16} {'final λ':>9}")
        for mode in (m for m in _MODES if m in res):
            r = res[mode]
            src = f"{100 * r['source_acc']:.1f} ± {100 * r['source_acc_std']:.1f}"
            tgt = f"{100 * r['target_acc']:.1f} ± {100 * r['target_acc_std']:.1f}"
            lam = f"{r['final_lambda']:.4f}" if mode != "source_only" else "-"
            lines.append(f"  {_MODES[mode]:<12} {src:>16} {tgt:>16} {lam:>9}")
        gain = report["dann_gain"][name]
        lines.append(f"  DANN gain on target: {gain['mean_points']:+.1f} points{_ci(gain)}")
        if "control_mean_points" in gain:
            lines.append(
                f"  λ = 0 control (BatchNorm alone): {gain['control_mean_points']:+.1f} points"
                f"{_ci(gain, 'control_')}; DANN over the control: "
                f"{gain['over_control_mean_points']:+.1f}{_ci(gain, 'over_control_')}"
            )
        lines.append("")
    if "paper" in report:
        paper = report["paper"]
        lines.append(
            f"for reference, {paper['task']}: source-only {100 * paper['source_only']:.2f}%, "
            f"DANN {100 * paper['dann']:.2f}% (target accuracy)"
        )
        lines.append("")
    if report["distance_to_torch"]:
        lines.append("distance to PyTorch (same initial weights, same batches)")
        lines.append(f"  {'backend':<11} {'model':<12} {'max |Δθ|':>10} {'max |Δ target acc|':>19}")
        for name, entry in report["distance_to_torch"].items():
            for mode, d in entry.items():
                lines.append(
                    f"  {name:<11} {_MODES[mode]:<12} {d['max_abs_param_diff']:>10.2e} "
                    f"{100 * d['max_target_acc_diff']:>18.1f}%"
                )
    if report.get("framework_effect"):
        lines.append("")
        lines.append("framework effect, float32 (DANN target accuracy minus PyTorch's, per seed)")
        lines.append(
            f"  {'backend':<11} {'mean Δ':>8} {'95% CI (paired t)':>20} {'seed SD':>8}  verdict"
        )
        for name, e in report["framework_effect"].items():
            ci = e["ci95_points"]
            interval = "-" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"
            sd = "-" if e["seed_sd_points"] is None else f"{e['seed_sd_points']:.1f}"
            lines.append(
                f"  {name:<11} {e['mean_diff_points']:>+8.1f} {interval:>20} {sd:>8}  "
                f"{stats.verdict(e)}"
            )
    return "\n".join(lines)


def _ci(entry: dict[str, Any], prefix: str = "") -> str:
    ci = entry[prefix + "ci95_points"]
    return "" if ci is None else f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f}, paired t)"


def figure(report: dict[str, Any], path: Path) -> Path:
    """Decision boundaries of seed 0: one row per backend, source-only vs DANN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, dict[str, list[Any]]] = report["_runs"]  # problem.Run (problem imports us)
    problem = report["_problems"][0]  # a problem.Problem
    points = np.concatenate([problem.xs, problem.xt])
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(problem.xs.dtype)
    fig, axes = plt.subplots(len(runs), 2, figsize=(9, 3.6 * len(runs)), squeeze=False)
    for row, (name, modes) in enumerate(runs.items()):
        for col, mode in enumerate(("source_only", "dann")):
            ax, run = axes[row][col], modes[mode][0]
            prob = run.predict(grid).reshape(gx.shape)
            ax.contourf(gx, gy, prob, levels=[0, 0.5, 1], colors=["#f4d6c6", "#c9dcf0"], alpha=0.8)
            ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1)
            for label, color in ((0, "#d1495b"), (1, "#2e6fba")):
                src, tgt = problem.xs[problem.ys == label], problem.xt[problem.yt == label]
                ax.scatter(*src.T, s=9, c=color, marker="o", label=f"source, class {label}")
                ax.scatter(
                    *tgt.T,
                    s=9,
                    c="none",
                    edgecolors=color,
                    marker="o",
                    alpha=0.6,
                    label=f"target, class {label}",
                )
            acc = report["results"][name][mode]["target_acc_per_seed"][0]
            title = "source only" if mode == "source_only" else "DANN"
            ax.set_title(f"{name} · {title}: target accuracy {100 * acc:.1f}%", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle("Inter-twinning moons, target rotated 35° (seed 0)")
    return _save(plt, fig, path, dpi=110)


def write_json(report: dict[str, Any], path: Path) -> None:
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(public, indent=2))


def digits_figure(report: dict[str, Any], path: Path) -> Path:
    """Sample source and target images, then the first backend's features of seed 0 (PCA of
    source and target test images together), source-only vs DANN, as the paper's Figure 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gradrev.tools.demo.convnet import ConvProblem, evaluate

    name, modes = next(iter(report["_runs"].items()))
    problem: ConvProblem = report["_problems"][0]
    fig = plt.figure(figsize=(10, 7.5))
    grid = fig.add_gridspec(3, 8, height_ratios=[1, 1, 5])
    for row, split in enumerate(("source_test", "target_test")):
        images = _images(report, split)
        for k in range(8):
            ax = fig.add_subplot(grid[row, k])
            ax.imshow(images[k], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel("source" if row == 0 else "target", fontsize=9)
    for col, mode in enumerate(("source_only", "dann")):
        ax = fig.add_subplot(grid[2, 4 * col : 4 * col + 4])
        hs = evaluate(modes[mode][0], problem, "source_test")[1]
        ht = evaluate(modes[mode][0], problem, "target_test")[1]
        both = np.concatenate([hs, ht]).astype(np.float64)
        centred = both - both.mean(0)
        xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        for points, color, label in (
            (xy[: len(hs)], "#2e6fba", "source (digits)"),
            (xy[len(hs) :], "#d1495b", "target (digits-M)"),
        ):
            ax.scatter(points[:, 0], points[:, 1], s=5, c=color, alpha=0.5, label=label)
        acc = report["results"][name][mode]["target_acc_per_seed"][0]
        title = "source only" if mode == "source_only" else "DANN"
        ax.set_title(f"{name} · {title}: features (PCA), target acc {100 * acc:.1f}%", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="lower left", fontsize=7, markerscale=3)
    fig.suptitle("Digits → digits-M (seed 0): test images and their features")
    return _save(plt, fig, path, dpi=100)


def _images(report: dict[str, Any], split: str) -> np.ndarray:
    from gradrev.tools.demo.digits import digits_m

    data = digits_m(report["config"]["data_seed"])
    return np.asarray(getattr(data, split)[:8])


def _save(plt: Any, fig: Any, path: Path, dpi: int) -> Path:
    """Lay out, write (making the folder) and close a figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
