"""Every Python example in the README and the docs runs, and CI runs the README's test command."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import lacks, skip_reason

from gradrev import _registry

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"```python\n(.*?)```", re.S)
# The backend each imported module needs; keras runs on the one KERAS_BACKEND names.
NEEDS = {fw.name: fw.name for fw in _registry.BUILTINS} | {"flax": "jax", "optax": "jax"}
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


FRAMEWORK_IMPORT = re.compile(
    r"^\s*(?:import|from) (?:gradrev\.)?(torch|jax|tensorflow|flax|keras|mlx)\b", re.M
)


def skip_unless_installed(code: str) -> None:
    """A snippet for a framework that this install lacks (a single-extra CI venv) is skipped."""
    for name in sorted(set(FRAMEWORK_IMPORT.findall(code))):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")


@pytest.mark.slow
@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs(code: str) -> None:
    skip_unless_installed(code)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(
    not (ROOT / ".ci").is_dir(), reason="reads .ci/run, which the sdist does not carry"
)
def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(pip install -c constraints.txt .*?)\n```", readme)
    assert len(commands) == 2, "README must hold exactly two set-up commands"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


# -- Docstrings: the API reference ----------------------------------------------------------

SOURCES = sorted((ROOT / "gradrev").rglob("*.py"))


def docstrings(path: Path) -> list[str]:
    import ast

    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(ROOT))) for p in SOURCES],
)
def test_docstrings_use_the_one_style(path: Path) -> None:
    """mkdocstrings renders Google sections and fenced code; it shows reST roles and bare
    doctest lines as literal text and blockquotes."""
    for doc in docstrings(path):
        assert ">>>" not in doc, f"a doctest line; use an Example: section with ```python:\n{doc}"
        roles = re.findall(r":(?:func|meth|class|attr|mod):`[^`]+`", doc)
        assert not roles, f"reST roles {roles}; cross-reference as [name][gradrev.module.name]"


DOC_EXAMPLES = [
    pytest.param(textwrap.dedent(code), id=f"{p.relative_to(ROOT)}:{i}")
    for p in SOURCES
    for i, code in enumerate(
        c for doc in docstrings(p) for c in re.findall(r"```python\n(.*?)```", doc, re.S)
    )
]


@pytest.mark.slow
@pytest.mark.parametrize("code", DOC_EXAMPLES)
def test_docstring_example_runs(code: str) -> None:
    skip_unless_installed(code)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


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


def test_install_pages_say_what_constraints_and_the_cpu_index_are() -> None:
    """constraints.txt pins a torch release, not its CPU build; the CPU build comes from
    PyTorch's own index, the command the CLI's hints print too."""
    from gradrev._install import TORCH_CPU_INDEX

    floor = re.search(r'"torch>=([\d.]+)"', (ROOT / "pyproject.toml").read_text())[1]  # type: ignore[index]
    assert f"torch>={floor}" in (ROOT / "constraints.txt").read_text()
    for page in (ROOT / "README.md", ROOT / "docs" / "install.md"):
        text = page.read_text()
        assert "pins the CPU build" not in text, page
        assert f'pip install torch --index-url {TORCH_CPU_INDEX} && pip install ".[torch]"' in text
