"""Every Python example in the README and the docs runs, and CI runs the README's test command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lacks, skip_reason

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"```python\n(.*?)```", re.S)
# The backend each imported module needs; keras runs on the one KERAS_BACKEND names.
NEEDS = {"torch": "torch", "jax": "jax", "flax": "jax", "optax": "jax", "tensorflow": "tensorflow"}
IMPORTED = re.compile(r"^\s*(?:import|from)\s+(?:gradrev\.)?(\w+)", re.M)


def backends_of(code: str) -> list[str]:
    modules = set(IMPORTED.findall(code))
    names = {NEEDS[m] for m in modules if m in NEEDS}
    if "keras" in modules:
        chosen = re.search(r"KERAS_BACKEND\W+(torch|jax|tensorflow)\b", code)
        names.add(chosen[1] if chosen else os.environ.get("KERAS_BACKEND", "tensorflow"))
    return sorted(names)


def snippet(code: str, id: str) -> object:
    reason = skip_reason(*backends_of(code)) or ("fully_shard" in code and lacks("fsdp2-on-cpu"))
    return pytest.param(code, id=id, marks=pytest.mark.skip(reason=reason) if reason else ())


SNIPPETS = [
    snippet(code, id=f"{page.relative_to(ROOT)}:{i}")
    for page in PAGES
    for i, code in enumerate(FENCE.findall(page.read_text()))
    if not code.startswith("--8<--")  # an included example: tests/test_examples.py runs it
]


@pytest.mark.slow
@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs(code: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(pip install -c constraints.txt .*?)\n```", readme)
    assert len(commands) == 2, "README must hold exactly two set-up commands"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_install_table_passed_the_declared_floors() -> None:
    """docs/install.md's matrix (scripts/matrix.py writes it) ran each floor of pyproject.toml."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    python = re.search(r'^requires-python = ">=([\d.]+)"', pyproject, re.M)[1]  # type: ignore[index]
    install = (ROOT / "docs" / "install.md").read_text()
    rows = {
        m[1]: m.groups()[1:]
        for m in re.finditer(
            r"^\| `([\w-]+)` \| ([\d.]+) \| (.*?) \| .*? \| (passed|\*\*failed\*\*)",
            install,
            re.M,
        )
    }
    for extra in ("torch", "jax", "tensorflow"):
        line = re.search(rf"^{extra} = \[(.*)\]$", pyproject, re.M)[1]  # type: ignore[index]
        floors = re.findall(r'"([\w.-]+)>=([\w.]+)"', line)
        assert floors, f"pyproject.toml: the {extra} extra declares no floor"
        listed = ", ".join(f"{package} {floor}" for package, floor in floors)
        assert f"| `{extra}` | {listed} |" in install, f"install.md's floors table: {extra}"
        got_python, versions, result = rows[f"floors-{extra}"]
        assert got_python.startswith(python + "."), (extra, got_python)
        assert result == "passed", f"floors-{extra} failed in docs/install.md"
        for package, floor in floors:
            assert f"{package} {floor}," in versions + ",", (extra, package, floor, versions)
