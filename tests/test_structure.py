"""The shape of the house (docs/architecture.md): the layers of gradrev/, what may import
what, no import circle, and no module over 400 lines. Read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradrev"
MAX_LINES = 400

# Lowest first. A module may import its own layer and the ones below, never one above.
# A module belongs to the first layer with a prefix of its name (docs/architecture.md).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("helpers", ("gradrev._lambda", "gradrev._install", "gradrev._reference")),
    ("backends", ("gradrev.backends",)),
    ("core", ("gradrev._registry", "gradrev._dispatch", "gradrev._schedule_math")),
    ("core", ("gradrev.schedules",)),
    ("layers", ("gradrev._layer", "gradrev.torch", "gradrev.keras", "gradrev.flax")),
    ("layers", ("gradrev.mlx", "gradrev.compat")),
    # The package itself: gradrev.reverse, and the Keras layer registered for loading.
    ("package", ("gradrev.__init__",)),
    ("harness", ("gradrev._adapters", "gradrev._layer_harness", "gradrev.testing")),
    ("tools", ("gradrev.tools", "gradrev.__main__")),
)
ORDER = ("helpers", "backends", "core", "layers", "package", "harness", "tools")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    name = "gradrev.__init__" if module == "gradrev" else module  # the package itself
    for label, prefixes in LAYERS:
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return label
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for mypy only)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def imports(module: str) -> set[str]:
    """The gradrev modules ``module`` imports, at its top or inside a function."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            # `from gradrev import _lambda` imports the module gradrev._lambda.
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in MODULES and n != module}
    return found


GRAPH = {module: imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_at_most_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines; split it (docs/architecture.md)"


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer(module)


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if ORDER.index(layer(target)) > ORDER.index(layer(module))
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_circle() -> None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circle = [*path[path.index(module) :], module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        for target in sorted(GRAPH[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_library_never_imports_the_tools() -> None:
    tools = [m for m in MODULES if layer(m) == "tools"]
    library = [m for m in MODULES if layer(m) != "tools"]
    leaks = [f"{m} imports {t}" for m in library for t in GRAPH[m] if t in tools]
    assert not leaks, leaks
