"""Paired comparisons over seeds, for the demo's DANN gain and framework effect.

Every interval is a paired-t 95% confidence interval over seeds: the seeds are few (3–10)
and the differences are taken within a seed (same data, same initial weights, same batches),
which is what a paired t-test is for. Points are percentage points of target accuracy.
"""

from __future__ import annotations

import math
from typing import Any

# Student's t 0.975 quantile for 1..30 degrees of freedom (any statistics table).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t975(df: int) -> float:
    """Student's t 0.975 quantile; beyond 30 degrees of freedom, its expansion in 1/df
    (z + (z³ + z) / 4df, within 0.003 of the exact value)."""
    if df < 1:
        raise ValueError(f"t975: degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df)


def sd(values: list[float]) -> float | None:
    """Sample standard deviation (n − 1), None below two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean of the per-seed differences ``a − b`` in points, and its paired-t 95% CI
    (None with one seed)."""
    diffs = [100 * (x - y) for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / len(diffs)
    spread = sd(diffs)
    if spread is None:
        return {"mean_points": mean, "ci95_points": None, "per_seed_points": diffs}
    half = t975(len(diffs) - 1) * spread / math.sqrt(len(diffs))
    return {
        "mean_points": mean,
        "ci95_points": [mean - half, mean + half],
        "per_seed_points": diffs,
    }


def dann_gain(results: dict[str, Any]) -> dict[str, Any]:
    """Per backend: DANN − source-only target accuracy, and the λ = 0 control's where run."""
    out = {}
    for name, res in results.items():
        entry = paired(
            res["dann"]["target_acc_per_seed"], res["source_only"]["target_acc_per_seed"]
        )
        entry["method"] = "paired t over seeds"
        if "control" in res:
            control = paired(
                res["control"]["target_acc_per_seed"], res["source_only"]["target_acc_per_seed"]
            )
            entry["control_mean_points"] = control["mean_points"]
            entry["control_ci95_points"] = control["ci95_points"]
            grl = paired(res["dann"]["target_acc_per_seed"], res["control"]["target_acc_per_seed"])
            entry["over_control_mean_points"] = grl["mean_points"]
            entry["over_control_ci95_points"] = grl["ci95_points"]
        out[name] = entry
    return out


def framework_effect(results: dict[str, Any], reference: str = "torch") -> dict[str, Any]:
    """Per backend against ``reference``: the DANN model's per-seed target-accuracy
    difference, its paired-t CI, the reference's seed-to-seed SD and a verdict.

    ``within_seed_noise`` is False only when the CI excludes 0 and the mean difference is
    larger than the seed-to-seed SD: the frameworks then differ, and by more than a new seed
    would move the result. An interval holding 0 is no evidence of a difference, however
    close together a few seeds happened to land.
    """
    if reference not in results:
        return {}
    ref = results[reference]["dann"]["target_acc_per_seed"]
    seed_sd = sd([100 * a for a in ref])
    out = {}
    for name, res in results.items():
        if name == reference:
            continue
        diff = paired(res["dann"]["target_acc_per_seed"], ref)
        ci = diff["ci95_points"]
        within = None
        if ci is not None and seed_sd is not None:
            differs = not ci[0] <= 0 <= ci[1]
            within = not (differs and abs(diff["mean_points"]) > seed_sd)
        out[name] = {
            "mean_diff_points": diff["mean_points"],
            "ci95_points": ci,
            "seed_sd_points": seed_sd,
            "within_seed_noise": within,
            "per_seed_diff_points": diff["per_seed_points"],
            "model": "dann",
            "method": "paired t over seeds",
        }
    return out


def verdict(entry: dict[str, Any]) -> str:
    """A plain sentence for one ``framework_effect`` entry."""
    if entry["within_seed_noise"] is None:
        return "one seed: no interval, no verdict"
    if entry["within_seed_noise"]:
        return "within seed noise"
    return "larger than seed noise"
