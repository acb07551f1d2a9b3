"""What every benchmark section shares: interleaved timing, rows with their spread, the table.

A row compares a contender with a reference timed in the same rounds. Each round runs every
contender once, so a change in the machine's speed hits all of them alike, and each round
gives one ratio. The row shows the median ratio and the spread of the per-round ratios (the
middle half of them: first to third quartile), and its verdict is "MISSED" only when the
whole spread is past the target: a few slow rounds on a shared machine cannot flip a verdict.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

ROWS: list[dict[str, Any]] = []
NOTES: list[str] = []  # printed once, after the table


def note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)


def timeit(
    fns: dict[str, Callable[[], Any]], rounds: int, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Seconds per call of each fn, one sample per interleaved round, after a warm-up.

    The garbage collector is off while the rounds run (as in the timeit module): a
    collection would land in whichever sample happens to be running.
    """
    for fn in fns.values():
        fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                sync()
                samples[name].append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return samples


def repeated(fn: Callable[[], Any], loops: int) -> Callable[[], None]:
    """``fn`` called ``loops`` times: one sample of a call that takes microseconds."""

    def run() -> None:
        for _ in range(loops):
            fn()

    return run


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def ratios(samples: dict[str, list[float]], name: str, ref: str) -> list[float]:
    """The per-round ratios of ``name`` to ``ref`` (same round, same machine state)."""
    return [a / b for a, b in zip(samples[name], samples[ref])]


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles: the middle half of the values."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def row(
    section: str,
    case: str,
    value: float,
    unit: str,
    ref: str = "",
    ratio: float | None = None,
    target: str = "",
    ok: bool | None = None,
    spread: tuple[float, float] | None = None,
) -> None:
    ROWS.append(
        {
            "section": section,
            "case": case,
            "value": value,
            "unit": unit,
            "reference": ref,
            "ratio": ratio,
            "spread": list(spread) if spread else None,
            "target": target,
            "pass": ok,
        }
    )


def compare(
    section: str,
    case: str,
    samples: dict[str, list[float]],
    name: str,
    ref: str,
    limit: float | None,
    *,
    per_call: int = 1,
    scale: float = 1e6,
    unit: str = "µs",
    target: str | None = None,
) -> None:
    """A row for ``name`` against ``ref``: median ratio, its spread, and a verdict.

    Missed only when the whole spread is past ``limit`` (three quarters of the rounds).
    """
    each = ratios(samples, name, ref)
    value = median(samples[name]) / per_call * scale
    ratio = median(each)
    spread = quartiles(each)
    if limit is None:
        row(section, case, value, unit, ref, ratio, target or "", None, spread)
        return
    row(
        section,
        case,
        value,
        unit,
        ref,
        ratio,
        target or f"≤ {limit:.2f}×",
        spread[0] <= limit,
        spread,
    )


def table() -> str:
    """The rows under their section titles, in columns as wide as their widest cell."""
    head = ("case", "time", "ratio", "spread", "reference", "target", "verdict")
    cells = [head]
    for r in ROWS:
        ratio = f"{r['ratio']:.3f}×" if r["ratio"] is not None else ""
        spread = r.get("spread")
        spread_text = f"{spread[0]:.2f}–{spread[1]:.2f}" if spread else ""
        verdict = {True: "ok", False: "MISSED", None: ""}[r["pass"]]
        value = f"{r['value']:.4g} {r['unit']}"
        cells.append((r["case"], value, ratio, spread_text, r["reference"], r["target"], verdict))
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines, section = [], None
    for r, cell in zip(ROWS, cells[1:]):
        if r["section"] != section:
            section = r["section"]
            lines.append(f"\n{section}")
            lines.append(_line(head, widths))
        lines.append(_line(cell, widths))
    return "\n".join(lines)


def _line(cell: tuple[str, ...], widths: list[int]) -> str:
    case, value, *rest = cell
    text = f"  {case:<{widths[0]}}  {value:>{widths[1]}}"
    for c, w in zip(rest, widths[2:]):
        text += f"  {c:<{w}}"
    return text.rstrip()
