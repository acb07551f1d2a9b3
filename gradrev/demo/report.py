"""Tables, figure and JSON for ``gradrev demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gradrev.demo.problem import Problem, Run


def tables(report: dict[str, Any]) -> str:
    """One table per backend, then the cross-framework distance to PyTorch."""
    lines = []
    for name, res in report["results"].items():
        lines.append(f"{name}  ({report['config']['seeds']} seeds, {res['wall_time_s']:.1f} s)")
        lines.append(f"  {'model':<12} {'source acc':>16} {'target acc':>16} {'final λ':>9}")
        for mode in ("source_only", "dann"):
            r = res[mode]
            src = f"{100 * r['source_acc']:.1f} ± {100 * r['source_acc_std']:.1f}"
            tgt = f"{100 * r['target_acc']:.1f} ± {100 * r['target_acc_std']:.1f}"
            lam = f"{r['final_lambda']:.4f}" if mode == "dann" else "-"
            lines.append(f"  {mode.replace('_', '-'):<12} {src:>16} {tgt:>16} {lam:>9}")
        gain = 100 * (res["dann"]["target_acc"] - res["source_only"]["target_acc"])
        lines.append(f"  DANN gain on target: {gain:+.1f} points")
        lines.append("")
    if report["distance_to_torch"]:
        lines.append("distance to PyTorch (same initial weights, same batches)")
        lines.append(f"  {'backend':<11} {'model':<12} {'max |Δθ|':>10} {'max |Δ target acc|':>19}")
        for name, entry in report["distance_to_torch"].items():
            for mode, d in entry.items():
                lines.append(
                    f"  {name:<11} {mode.replace('_', '-'):<12} {d['max_abs_param_diff']:>10.2e} "
                    f"{100 * d['max_target_acc_diff']:>18.1f}%"
                )
    return "\n".join(lines)


def figure(report: dict[str, Any], path: Path) -> Path:
    """Decision boundaries of seed 0: one row per backend, source-only vs DANN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, dict[str, list[Run]]] = report["_runs"]
    problem: Problem = report["_problems"][0]
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(report: dict[str, Any], path: Path) -> None:
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(public, indent=2))
