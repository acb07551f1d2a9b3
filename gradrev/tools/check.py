"""``gradrev check``: the parity self-test on every installed backend and visible device.

The cases are [gradrev.testing][]'s parity check, one row each in the report; the backends
and their adapters come from the registry, plug-ins included.
"""

from __future__ import annotations

import platform
from typing import Any

from gradrev import _adapters, _reference, _registry, testing

DTYPES = testing.DTYPES


def run(backends: list[str] | None = None) -> dict[str, Any]:
    """Compare every backend's reversed gradient with the canonical PyTorch arithmetic.

    The report also records what was tested: gradrev, Python and framework versions, the
    platform, the devices, and the rows that could not run (``skipped``, with the reason).
    """
    from gradrev import __version__

    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    frameworks: dict[str, Any] = {}
    for name in backends or _registry.installed_names():
        adapter = _adapters.adapter(name)
        frameworks[name] = {"version": _registry.version(name), "devices": _registry.devices(name)}
        for device in _adapters.devices(adapter):
            on = _adapters.on_device(adapter, device)
            flush = testing._flushes(on)
            for dtype_name in DTYPES:
                if dtype_name == "bfloat16" and _reference.BFLOAT16 is None:
                    reason = "ml_dtypes is not installed"
                    skipped.append({"backend": name, "dtype": dtype_name, "reason": reason})
                    continue
                g = testing.probe(dtype_name)
                for _, lam, form, got, want in testing.parity_cases(on, g):
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
