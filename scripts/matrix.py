#!/usr/bin/env python3
"""The version matrix: one fresh venv per configuration, the suite on its backends, a table.

    python scripts/matrix.py --list                        # the configurations
    python scripts/matrix.py floors-jax floors-tensorflow  # what CI runs on every push
    python scripts/matrix.py all                           # everything (downloads several GB)

Each configuration installs the package itself (not the source tree in editable mode) with
``pip install -c PINS ".[EXTRAS,test]"`` into a venv of its Python version, runs
``pytest tests`` with ``GRADREV_TEST_BACKENDS`` set to its backends, and writes its row of the
table in docs/install.md. The floors are read from pyproject.toml (every ``>=`` pinned with
``==``), so the floors rows always test what the package declares. Needs only the standard
library (Python >= 3.11 for tomllib); interpreters are found on PATH or under ~/.pyenv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "install.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
# The packages whose versions a row reports, in this order.
REPORTED = ("torch", "jax", "jaxlib", "flax", "tensorflow", "keras", "mlx", "numpy", "ml_dtypes")


@dataclass(frozen=True)
class Config:
    name: str
    python: str
    extras: tuple[str, ...]
    backends: tuple[str, ...]
    pins: dict[str, str] = field(default_factory=dict)  # package -> exact version
    floors: bool = False  # pin every framework of `extras` to its pyproject.toml floor


CONFIGS = [
    Config("floors-torch", "3.10", ("torch",), ("torch",), floors=True),
    Config("floors-jax", "3.10", ("jax",), ("jax",), floors=True),
    Config("floors-tensorflow", "3.10", ("tensorflow",), ("tensorflow",), floors=True),
    Config("floors-mlx", "3.10", ("mlx",), ("mlx",), floors=True),
    Config("middle-torch", "3.12", ("torch",), ("torch",), {"torch": "2.9.1"}),
    Config("middle-jax", "3.12", ("jax",), ("jax",), {"jax": "0.8.2", "flax": "0.12.2"}),
    Config(
        "middle-tensorflow",
        "3.12",
        ("tensorflow",),
        ("tensorflow",),
        {"tensorflow": "2.19.1", "keras": "3.12.0"},
    ),
    Config("latest-torch", "3.13", ("torch",), ("torch",)),
    Config("latest-jax", "3.13", ("jax",), ("jax",)),
    Config("latest-tensorflow", "3.13", ("tensorflow",), ("tensorflow",)),
    Config("latest-mlx", "3.13", ("mlx",), ("mlx",)),
    # All four in one process: torch 2.14.1 (CUDA build, with triton) next to TensorFlow.
    Config("latest-all", "3.11", ("all",), ("torch", "jax", "tensorflow", "mlx")),
]
BY_NAME = {c.name: c for c in CONFIGS}


def floors() -> dict[str, dict[str, str]]:
    """``{extra: {package: floor}}`` from pyproject.toml's ``>=`` bounds (``mlx[cpu]>=0.32;
    sys_platform == 'linux'`` gives mlx 0.32: the pin applies on every platform)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out: dict[str, dict[str, str]] = {}
    for extra, reqs in project["optional-dependencies"].items():
        for req in reqs:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[\w+\])?>=([0-9][0-9a-z.]*)(?:\s*;.*)?", req)
            if m:
                out.setdefault(extra, {})[m.group(1)] = m.group(2)
    return out


def pins_of(config: Config) -> dict[str, str]:
    if not config.floors:
        return dict(config.pins)
    table = floors()
    return {pkg: v for extra in config.extras for pkg, v in table[extra].items()}


def find_python(version: str) -> str:
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"), reverse=True)
    for candidate in [*map(str, pyenv), shutil.which(f"python{version}")]:
        # pyenv's shims exist for every version but run only the selected ones.
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit(f"matrix: no Python {version} on PATH or under ~/.pyenv/versions")


def run(
    cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> int:
    """Runs ``cmd`` with its output appended to ``log``; the exit status (< 0: a signal)."""
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as f:
        f.write("+ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env).returncode


def build(config: Config, venv: Path, log: Path, reuse: bool) -> str | None:
    """A fresh venv with the package installed; None, or why it could not be built."""
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pinned = "".join(f"{p}=={v}\n" for p, v in pins_of(config).items())
    pins = venv / "pins.txt"
    if reuse and (venv / "built").exists() and pins.read_text() == pinned:
        # Same pins as the last complete build: only the package itself is reinstalled.
        return (
            "install failed"
            if run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], log)
            else None
        )
    if venv.exists():
        shutil.rmtree(venv)
    python = find_python(config.python)
    if run([python, "-m", "venv", str(venv)], log):
        return "venv failed"
    pins.write_text(pinned)
    spec = f"{ROOT}[{','.join((*config.extras, 'test'))}]"
    if run([*pip, "--upgrade", "pip"], log) or run([*pip, "-c", str(pins), spec], log):
        return "install failed"
    (venv / "built").touch()
    return None


def versions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"out = {{'python': platform.python_version()}}\n"
        f"for p in {REPORTED!r}:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return dict(json.loads(proc.stdout))


def test(config: Config, venv: Path, log: Path, pytest_args: list[str]) -> tuple[bool, str]:
    env = {
        **os.environ,
        "GRADREV_TEST_BACKENDS": ",".join(config.backends),
        "OMP_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    start = log.stat().st_size
    cmd = [str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "tests", *pytest_args]
    # That test reads this very table: a run must not depend on the row it is about to write.
    cmd += ["--deselect", "tests/test_docs.py::test_install_table_passed_the_declared_floors"]
    rc = run(cmd, log, cwd=ROOT, env=env)
    tail = log.read_text(errors="replace")[start:]
    lines = re.findall(
        r"^=* ?(\d+ (?:passed|failed|skipped|error).*? in [\d.]+s.*?)(?: =+)?$", tail, re.M
    )
    summary = lines[-1] if lines else "no pytest summary"
    if rc < 0:
        summary = f"crashed (signal {-rc}) after: {summary}"
    return rc == 0, summary


def write_row(config: Config, found: dict[str, str], ok: bool, summary: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text:
        raise SystemExit(f"matrix: {DOC} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    rows = {
        m.group(1): line
        for line in body.splitlines()
        if (m := re.match(r"\| `([a-z-]+)` \|", line))
    }
    pkgs = ", ".join(f"{p} {found[p]}" for p in REPORTED if p in found)
    result = ("passed" if ok else "**failed**") + f": `{summary}`"
    date = time.strftime("%Y-%m-%d", time.gmtime())
    rows[config.name] = (
        f"| `{config.name}` | {found.get('python', config.python)} | {pkgs} | "
        f"{', '.join(config.backends)} | {result} | {date} |"
    )
    order = [c.name for c in CONFIGS]
    table = [
        "| configuration | Python | versions | backends | suite | run |",
        "| --- | --- | --- | --- | --- | --- |",
        *(rows[n] for n in sorted(rows, key=lambda n: order.index(n) if n in order else 99)),
    ]
    DOC.write_text(f"{head}{BEGIN}\n" + "\n".join(table) + f"\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="*", help="names from --list, or 'all'")
    parser.add_argument("--list", action="store_true", help="print the configurations")
    parser.add_argument(
        "--venvs",
        default=os.environ.get("GRADREV_MATRIX_VENVS", "/tmp/gradrev-matrix"),
        help="folder for the venvs and logs (default $GRADREV_MATRIX_VENVS or %(default)s)",
    )
    parser.add_argument(
        "--no-table", action="store_true", help="do not write the row in docs/install.md"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep a venv built with the same pins (not in CI)"
    )
    parser.add_argument("--pytest", default="", help="extra pytest arguments, e.g. '-k parity'")
    args = parser.parse_args(argv)
    if args.list or not args.configs:
        for c in CONFIGS:
            pins = pins_of(c) or "newest that installs"
            print(f"{c.name:<20} Python {c.python:<5} [{','.join(c.extras)}]  {pins}")
        return 0
    names = [c.name for c in CONFIGS] if args.configs == ["all"] else args.configs
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"matrix: unknown configurations {unknown}; known: {list(BY_NAME)}")
        return 2
    failed = []
    for name in names:
        config = BY_NAME[name]
        venv = Path(args.venvs) / name
        log = Path(args.venvs) / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        t0 = time.monotonic()
        error = build(config, venv, log, args.reuse)
        if error:
            ok, summary, found = False, f"{error} (see {log})", {"python": config.python}
        else:
            found = versions(venv)
            ok, summary = test(config, venv, log, args.pytest.split())
        if not args.reuse:
            shutil.rmtree(venv, ignore_errors=True)  # several GB each: keep only what --reuse keeps
        minutes = (time.monotonic() - t0) / 60
        print(f"{name}: {'passed' if ok else 'FAILED'}: {summary} [{minutes:.1f} min, {log}]")
        if not args.no_table:
            write_row(config, {**found, **pins_of(config)} if error else found, ok, summary)
        if not ok:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
