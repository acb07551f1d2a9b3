"""Argument types for the ``gradrev`` command line: each refuses a bad value at parse time.

argparse turns their ``ArgumentTypeError`` into the command's usage, the message and exit
status 2, so no bad number or unwritable path reaches a run (or a traceback after one).
Standard library only: ``gradrev --help`` imports this in any install.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path


def _number(text: str, kind: type[float] | type[int], accepted: str) -> float:
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An integer in ``[low, high]``, e.g. ``int_range(1, 4096)`` for hidden units."""

    def parse(text: str) -> int:
        accepted = f"an integer from {low} to {high}"
        value = int(_number(text, int, accepted))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
        return value

    return parse


def float_range(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite float in ``[low, high]`` (``(low, high]`` with ``low_open``); never NaN or inf."""
    accepted = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        value = _number(text, float, accepted)
        if value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
        return value

    return parse


def _check_writable(folder: Path, text: str) -> None:
    """``folder`` exists as a writable directory, or can be created (nothing is created)."""
    existing = folder
    try:
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: {existing} is not a folder")
        tempfile.TemporaryFile(dir=existing).close()  # the one sure test of writability
    except OSError as e:
        reason = f"cannot create files in {existing} ({e.strerror or e})"
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {reason}") from None


def output_file(text: str) -> Path:
    """A file path to write (its missing folders are created when it is written)."""
    path = Path(text).expanduser()
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder: give a file path")
    _check_writable(path.parent, text)
    return path


def output_folder(text: str) -> Path:
    """A folder to write into, existing or not yet created."""
    path = Path(text).expanduser()
    _check_writable(path, text)
    return path
