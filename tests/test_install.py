"""What a user is told to install: the import errors, the CLI's hints, the version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradrev import _registry

ROOT = Path(__file__).resolve().parent.parent

# Each module, and the modules whose absence it must explain (blocked in sys.modules).
GUARDED = {
    **{f"gradrev.backends.{fw.name}": (fw.name,) for fw in _registry.BUILTINS},
    "gradrev.torch": ("torch",),
    "gradrev.compat.revgrad": ("torch",),
    "gradrev.compat.gradient_reversal": ("torch",),
    "gradrev.compat.tllib": ("torch",),
    "gradrev.compat.adapt": ("keras", "tensorflow"),
    "gradrev.keras": ("keras",),
    "gradrev.flax.nnx": ("jax", "flax"),
    "gradrev.flax.linen": ("jax", "flax"),
    "gradrev.mlx": ("mlx",),
}


def import_without(module: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
        + f"import {module}\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )


@pytest.mark.parametrize(("module", "blocked"), GUARDED.items(), ids=list(GUARDED))
def test_a_missing_framework_names_what_to_install(module: str, blocked: tuple[str, ...]) -> None:
    proc = import_without(module, blocked)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: {module}: import failed"), last
    assert "pip install" in last and blocked[-1] in last.split("pip install", 1)[1], last
    assert "gradrev[" not in last  # gradrev is on no package index: pip would not find it
    if blocked == ("torch",):
        assert "--index-url https://download.pytorch.org/whl/cpu" in last


def test_pip_command_names_the_extras_packages_for_this_platform() -> None:
    import gradrev._install as install

    torch = install.pip_command("torch")
    assert torch.startswith('pip install "torch') and "download.pytorch.org/whl/cpu" in torch
    if install.requirements("mlx") != ["mlx"]:  # gradrev's metadata is installed
        reqs = install.requirements("mlx")
        wanted = "mlx[cpu]" if sys.platform == "linux" else "mlx>="
        assert any(r.startswith(wanted) for r in reqs), reqs
        assert not any("extra" in r or ";" in r for r in reqs), reqs
    assert install.pip_command("matplotlib") in (
        "pip install matplotlib",
        'pip install "matplotlib>=3.7"',
    )


def test_the_version_has_one_source() -> None:
    """pyproject.toml reads the version from gradrev/__init__.py; it does not repeat it."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "gradrev/__init__.py"


def test_the_licence_is_mit_and_ships() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "CHANGELOG.md").exists()


@pytest.mark.parametrize(
    ("blocked", "args", "wanted"),
    [
        (("jax", "flax"), ("check", "--backends", "jax"), "jax"),
        (("torch",), ("check", "--backends", "torch"), "download.pytorch.org/whl/cpu"),
        (("mlx",), ("demo", "--backends", "mlx"), "mlx"),
    ],
    ids=str,
)
def test_cli_hints_name_real_packages(
    blocked: tuple[str, ...], args: tuple[str, ...], wanted: str
) -> None:
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
        + f"from gradrev.tools.cli import main\nsys.exit(main({list(args)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    hint = proc.stdout.split("not installed:", 1)[1].strip()
    assert hint.startswith("pip install ") and wanted in hint, hint
    assert "gradrev[" not in proc.stdout


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="lists the files of a git checkout")
def test_the_sdist_carries_every_tracked_file_but_ci() -> None:
    """A new top-level file or folder is either in the sdist or left out on purpose."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = set(config["tool"]["hatch"]["build"]["targets"]["sdist"]["include"])
    tracked = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    top = {path.split("/")[0] for path in tracked}
    assert top - include == {".ci", ".gitignore", "pyproject.toml"}  # hatch adds pyproject itself
