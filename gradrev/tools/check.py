"""``gradrev check``: the parity self-test on every installed backend and visible device."""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

import numpy as np

from gradrev import _reference
from gradrev._adapters import ADAPTERS, devices

DTYPES = ("float16", "bfloat16", "float32", "float64")
LAMBDAS = (1.0, 0.0, -0.0, -0.7, 0.3, 2.5)


def installed_backends() -> list[str]:
    return [name for name in ADAPTERS if importlib.util.find_spec(name) is not None]


def probe_gradient(dtype: np.dtype[Any], seed: int = 0) -> np.ndarray:
    """Random values plus ±0, ±inf, NaN, extremes and subnormals, in ``dtype``."""
    rng = np.random.default_rng(seed)
    info = _reference.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(info.max), float(info.tiny)]
    special += [float(info.smallest_subnormal), -float(info.smallest_subnormal)]
    with np.errstate(over="ignore"):
        return np.concatenate([rng.standard_normal(4096) * 3, special]).astype(dtype)


def run(backends: list[str] | None = None) -> dict[str, Any]:
    """Compare every backend's reversed gradient with the canonical PyTorch arithmetic.

    The report also records what was tested: gradrev, Python and framework versions, the
    platform, the devices, and the rows that could not run (``skipped``, with the reason).
    """
    from gradrev import __version__
    from gradrev.tools.cli import devices as framework_devices
    from gradrev.tools.cli import framework_version

    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    frameworks: dict[str, Any] = {}
    for name in backends or installed_backends():
        adapter = ADAPTERS[name]()
        frameworks[name] = {
            "version": framework_version(name),
            "devices": framework_devices(name),
        }
        for device in devices(adapter):
            flush = adapter.flushes_subnormals(device)
            for dtype_name in DTYPES:
                if dtype_name == "bfloat16" and _reference.BFLOAT16 is None:
                    reason = "ml_dtypes is not installed"
                    skipped.append({"backend": name, "dtype": dtype_name, "reason": reason})
                    continue
                g = probe_gradient(_reference.dtype(dtype_name))
                for lam in LAMBDAS:
                    for form in ("number", "tensor"):
                        arg = adapter.scalar(lam, "float64", device) if form == "tensor" else lam
                        x = adapter.tensor(np.zeros_like(g), device)
                        got = adapter.vjp(
                            lambda a, arg=arg: adapter.ops.reverse(a, arg),
                            x,
                            adapter.tensor(g, device),
                        )
                        want = _reference.reverse_grad(g, lam, flush_subnormals=flush)
                        same = _reference.same_bits(got, want) if got.dtype == want.dtype else None
                        bad = g.size if same is None else int((~same).sum())
                        results.append(
                            {
                                "backend": name,
                                "device": device,
                                "dtype": dtype_name,
                                "lambda": lam,
                                "lambda_form": form,
                                "match": bad == 0,
                                "mismatches": bad,
                                "elements": int(g.size),
                                "grad_dtype": str(got.dtype),
                                "flush_subnormals": flush,
                            }
                        )
    return {
        "ok": bool(results) and all(r["match"] for r in results),
        "gradrev": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "frameworks": frameworks,
        "results": results,
        "skipped": skipped,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table, one row per backend, device and dtype."""
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        rows.setdefault((r["backend"], r["device"], r["dtype"]), []).append(r)
    lines = [f"{'backend':<11} {'device':<6} {'dtype':<9} {'cases':>5} {'mismatches':>10}  result"]
    for (backend, device, dtype), rs in rows.items():
        bad = sum(r["mismatches"] for r in rs)
        note = "  (subnormals flushed by the backend)" if rs[0]["flush_subnormals"] else ""
        verdict = "bit-exact" if bad == 0 else "MISMATCH"
        lines.append(
            f"{backend:<11} {device:<6} {dtype:<9} {len(rs):>5} {bad:>10}  {verdict}{note}"
        )
    for s in report.get("skipped", []):
        lines.append(f"{s['backend']:<11} {'':<6} {s['dtype']:<10} skipped: {s['reason']}")
    if not report["ok"]:
        lines.append("FAILED: some gradients differ from the canonical bits")
        return "\n".join(lines)
    lines.append(
        "ok: every gradient has the bits of PyTorch's grad * -lambda (any NaN matches any NaN)"
    )
    if any(r["flush_subnormals"] for r in report["results"]):
        lines.append(
            "(subnormals flushed: that backend's CPU flushes subnormals to zero in every\n"
            " operation, so the reference it is held to flushes them too)"
        )
    if report.get("skipped"):
        lines.append("skipped rows: pip install ml_dtypes to test bfloat16")
    return "\n".join(lines)
