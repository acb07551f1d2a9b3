"""Progress for long CLI runs: a redrawn bar with an ETA in a terminal, plain lines elsewhere.

No dependency beyond the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Counts steps toward ``total`` and reports on ``stream``.

    In a terminal, one line is redrawn (at most ten times a second) with a bar, the count
    and the ETA. Otherwise (a file, a pipe, CI), a plain line is printed when a new label
    starts, every ``every`` seconds, and at the end.

    ``plan`` (label -> its steps) makes the ETA honest when labels run at different speeds
    (the demo's backends do, by 5× and more): each label's remaining steps at its own rate,
    and a label not started yet at the slowest rate seen so far, marked "~" with the count of
    labels still to time. Without it, the ETA extrapolates the average rate so far.

    Example:
        ```python
        import sys
        from gradrev.tools.demo.progress import Progress

        progress = Progress(3, sys.stdout)
        for _ in range(3):
            progress.advance("torch")
        progress.close()
        ```
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        plan: dict[str, int] | None = None,
    ) -> None:
        self.total, self.stream, self.every, self.clock = total, stream, every, clock
        self.plan = plan
        self.per_label: dict[str, list[float]] = {}  # label -> [steps done, first, latest]
        self.tty = stream.isatty()
        self.done = 0
        self.label = ""
        self.start: float | None = None  # the first step, not the imports before it
        self.last = -float("inf")

    def advance(self, label: str, steps: int = 1) -> None:
        """Record ``steps`` more steps of ``label``'s work."""
        now = self.clock()
        if self.start is None:
            self.start = now
        if label not in self.per_label:  # timed from the previous label's last step
            self.per_label[label] = [0, self.per_label[self.label][2] if self.label else now, now]
        seen = self.per_label[label]
        seen[0] += steps
        seen[2] = now
        if label != self.label:
            self.label = label
            if not self.tty:  # a new backend starts: say so at once
                self._line(now)
                self.last = now
        self.done += steps
        if now - self.last >= (0.1 if self.tty else self.every):
            self.last = now
            self._draw(now) if self.tty else self._line(now)

    def close(self) -> None:
        """The final count, and a newline after a terminal's bar."""
        now = self.clock()
        if self.tty:
            self._draw(now)
            self.stream.write("\n")
        else:
            self._line(now)
        self.stream.flush()

    def _elapsed(self, now: float) -> float:
        return 0.0 if self.start is None else now - self.start

    def _eta(self, now: float) -> str:
        elapsed = self._elapsed(now)
        if self.done == 0 or elapsed <= 0:
            return "ETA ?"
        if self.plan is None:
            left = elapsed / self.done * (self.total - self.done)
            return f"ETA {_clock(left)}"
        # A label is timed once a tenth of its steps is done: its first steps pay for the
        # framework's compilation, and a rate from them alone says hours.
        rates = {
            k: (v[2] - v[1]) / v[0]
            for k, v in self.per_label.items()
            if v[0] >= max(1, self.plan.get(k, 0) // 10)
        }
        if not rates or max(rates.values()) <= 0:
            return "ETA ?"
        slowest = max(rates.values())
        untimed = [k for k in self.plan if k not in rates]
        left = sum(
            max(steps - self.per_label.get(k, [0])[0], 0) * rates.get(k, slowest)
            for k, steps in self.plan.items()
        )
        if untimed:
            return f"ETA ~{_clock(left)} ({len(untimed)} still to time)"
        return f"ETA {_clock(left)}"

    def _draw(self, now: float) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        percent = 100 * self.done // max(self.total, 1)
        self.stream.write(
            f"\rtraining {self.label:<10} [{bar}] {percent:3d}% "
            f"{self.done}/{self.total} steps  {self._eta(now)} "
        )
        self.stream.flush()

    def _line(self, now: float) -> None:
        percent = 100 * self.done // max(self.total, 1)
        self.stream.write(
            f"training {self.label}: {self.done}/{self.total} steps ({percent}%), "
            f"{self._elapsed(now):.0f} s elapsed, {self._eta(now)}\n"
        )
        self.stream.flush()


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
