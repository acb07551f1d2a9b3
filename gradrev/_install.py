"""What to install when a framework is missing: pip commands a user can run as printed.

gradrev is not on a package index, so a hint never says ``pip install gradrev[torch]``
(pip would look for gradrev there): it names the packages of that extra that are missing,
read from this install's own metadata, so pyproject.toml stays the one list. PyTorch comes
from PyTorch's CPU index, as PyTorch documents it: from PyPI, pip on Linux gets the CUDA
build, several GB.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import sys

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_CLAUSE = re.compile(r"""(\w+)\s*==\s*['"]([^'"]*)['"]""")


def _applies(marker: str, extra: str) -> bool:
    """A Requires-Dist marker such as ``(sys_platform == 'linux') and extra == 'mlx'``."""
    values = {"extra": extra, "sys_platform": sys.platform}
    clauses = [c.strip(" ()") for c in marker.split(" and ")]
    for clause in clauses:
        m = _CLAUSE.fullmatch(clause)
        if m and m[1] in values and values[m[1]] != m[2]:
            return False
    return any(c.startswith("extra") for c in clauses)


def requirements(extra: str) -> list[str]:
    """The requirements of gradrev's ``extra`` on this platform, e.g. ``['torch>=2.7.0', ...]``."""
    try:
        requires = importlib.metadata.requires("gradrev") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        requires = []
    reqs = [
        r.split(";")[0].strip() for r in requires if ";" in r and _applies(r.split(";")[1], extra)
    ]
    return reqs or [extra]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0]


def _installed(distribution: str) -> bool:
    for dist in (distribution, f"{distribution}-cpu"):  # tensorflow-cpu counts as tensorflow
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            return True
    return False


def pip_command(extra: str) -> str:
    """The pip command(s) that install what ``extra`` needs and this environment lacks."""
    reqs = requirements(extra)
    missing = [r for r in reqs if not _installed(_name(r))] or reqs
    torch = [r for r in missing if _name(r) == "torch"]
    rest = [f'"{r}"' if any(c in r for c in "<>[") else r for r in missing if r not in torch]
    commands = [f'pip install "{torch[0]}" --index-url {TORCH_CPU_INDEX}'] if torch else []
    if rest:
        commands.append("pip install " + " ".join(rest))
    # A shell comment: the line, copied whole, still runs.
    note = "  # the CPU build; without --index-url, pip gets CUDA on Linux" if torch else ""
    return " && ".join(commands) + note


def missing(module: str, extra: str, error: BaseException) -> ImportError:
    """The ImportError for ``module`` when importing ``extra``'s framework failed with ``error``."""
    return ImportError(
        f"{module}: import failed ({error}); install what it needs: {pip_command(extra)}"
    )
