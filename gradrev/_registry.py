"""The frameworks gradrev knows: one entry each, read by dispatch, schedules, the tools and tests.

Reading an entry imports no framework: it holds the facts that need none (names,
distributions, extra, tensor types). What needs the framework lives in its backend module
and is loaded on demand: ``reverse`` and ``is_tensor``, ``devices()`` and ``schedule_math()``.
(A built-in's conformance adapter is in gradrev/_adapters.py; a plug-in's is its backend's
``Adapter``.) A plug-in registered under the ``gradrev.backends`` entry point group gets an
entry too (``plugins()``), so every tool treats it as a built-in.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gradrev import _lambda


@dataclass(frozen=True)
class Framework:
    """One framework: what gradrev, its tools and its tests need to know before importing it."""

    name: str  # the name users type: gradrev check --backends NAME, GRADREV_TEST_BACKENDS
    module: str  # the module that imports it, e.g. "mlx.core"
    types: tuple[tuple[str, str], ...]  # its tensor classes, (module, class name)
    homes: tuple[str, ...]  # the top-level modules its tensor classes are defined in
    distributions: tuple[str, ...]  # the distributions whose version is the framework's
    extra: str  # gradrev's pip extra that installs it (a plug-in: its own name)
    layer_modules: tuple[str, ...]  # what its layer (and the demo) needs besides it
    load: Callable[[], ModuleType]  # its backend module (imports the framework)
    described: str  # its tensors, as an error message names them


# Plain import statements, not importlib: TorchDynamo and AutoGraph trace through them
# when the first gradrev.reverse call happens inside a trace.
def _torch() -> ModuleType:
    from gradrev.backends import torch

    return torch


def _jax() -> ModuleType:
    from gradrev.backends import jax

    return jax


def _tensorflow() -> ModuleType:
    from gradrev.backends import tensorflow

    return tensorflow


def _mlx() -> ModuleType:
    from gradrev.backends import mlx

    return mlx


# The built-ins, in dispatch order. A new framework: its backend module, plus one entry here.
BUILTINS: tuple[Framework, ...] = (
    Framework(
        name="torch",
        module="torch",
        # A torch.fx proxy stands for a tensor while torch.fx.symbolic_trace runs.
        types=(("torch", "Tensor"), ("torch.fx", "Proxy")),
        homes=("torch",),
        distributions=("torch",),
        extra="torch",
        layer_modules=(),
        load=_torch,
        described="a torch.Tensor",
    ),
    Framework(
        name="jax",
        module="jax",
        types=(("jax", "Array"),),
        homes=("jax", "jaxlib"),
        distributions=("jax",),
        extra="jax",
        layer_modules=("flax",),
        load=_jax,
        described="a jax.Array",
    ),
    Framework(
        name="tensorflow",
        module="tensorflow",
        types=(("tensorflow", "Tensor"), ("tensorflow", "Variable")),
        homes=("tensorflow",),
        distributions=("tensorflow", "tensorflow-cpu", "tf-nightly"),
        extra="tensorflow",
        layer_modules=("keras",),
        load=_tensorflow,
        described="a tf.Tensor/tf.Variable",
    ),
    Framework(
        name="mlx",
        module="mlx.core",
        types=(("mlx.core", "array"),),
        homes=("mlx",),
        distributions=("mlx",),
        extra="mlx",
        layer_modules=(),
        load=_mlx,
        described="an mlx.core.array",
    ),
)
# No plug-in may claim Python's or NumPy's classes (every object's bases) or a built-in's.
_NOT_PLUGINS = frozenset(
    {"builtins", "numpy", *(h for fw in BUILTINS for h in fw.homes), *sys.stdlib_module_names}
)


@functools.cache
def entry_points() -> dict[str, Any]:
    """The ``gradrev.backends`` entry points by name; read once, when first needed."""
    points = importlib.metadata.entry_points(group="gradrev.backends")
    return {point.name: point for point in points if point.name not in _NOT_PLUGINS}


def plugins() -> tuple[Framework, ...]:
    """An entry for each backend plug-in: named after its framework's top-level module."""
    return tuple(_plugin(point) for point in entry_points().values())


def _plugin(point: Any) -> Framework:
    dist = getattr(point, "dist", None)
    return Framework(
        name=point.name,
        module=point.name,
        types=(),
        homes=(point.name,),
        distributions=(point.name,),
        extra=dist.name if dist is not None else point.name,
        layer_modules=(),
        load=functools.partial(load_plugin, point),
        described=f"a tensor of a registered backend ({point.name})",
    )


def load_plugin(point: Any) -> Any:
    """The plug-in's backend module, or an ImportError that names the entry point."""
    try:
        backend = point.load()
    except Exception as e:  # any import-time failure of third-party code
        raise ImportError(
            f"gradrev.reverse: the backend plug-in {plugin_name(point)} failed to load: "
            f"{type(e).__name__}: {e}; fix or uninstall that distribution"
        ) from e
    missing = [
        name for name in ("is_tensor", "reverse") if not callable(getattr(backend, name, None))
    ]
    if missing:
        raise ImportError(
            f"gradrev.reverse: the backend plug-in {plugin_name(point)} is not a gradrev backend: "
            f"it has no {' and no '.join(missing)} (see gradrev.backends.Backend); fix or "
            "uninstall that distribution"
        )
    return backend


def plugin_name(point: Any) -> str:
    dist = getattr(point, "dist", None)
    where = f" of the distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"{point.name!r} (entry point '{point.name} = {point.value}' in gradrev.backends{where})"


def frameworks() -> tuple[Framework, ...]:
    """The built-ins, then the plug-ins."""
    return BUILTINS + plugins()


def names() -> list[str]:
    return [fw.name for fw in frameworks()]


def get(name: str) -> Framework:
    """The entry named ``name``; KeyError if there is none."""
    for fw in frameworks():
        if fw.name == name:
            return fw
    raise KeyError(name)


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (False if blocked in sys.modules)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; sys.modules[module] is None
        return False


def installed(name: str) -> bool:
    """Whether framework ``name`` is installed (a plug-in: its framework and its backend)."""
    fw = get(name)
    if fw in BUILTINS:
        return importable(fw.module)
    return importable(fw.module) and importable(entry_points()[name].module)


def installed_names() -> list[str]:
    return [fw.name for fw in frameworks() if installed(fw.name)]


def version(name: str) -> str | None:
    """The installed version of a framework's distribution, or None if it is not installed."""
    fw = get(name)
    for dist in fw.distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    if fw in BUILTINS or not installed(name):
        return None
    try:  # a plug-in's framework may be no distribution of its own name: ask the module
        return str(getattr(importlib.import_module(fw.module), "__version__", "unknown"))
    except Exception:  # reported by import_error
        return "unknown"


def import_error(name: str) -> str | None:
    """Why importing framework ``name`` fails (a broken install), or None if it imports."""
    fw = get(name)
    try:
        importlib.import_module(fw.module)
        if fw not in BUILTINS:  # a plug-in's backend is third-party code too
            fw.load()
    except Exception as e:  # a broken install raises anything: ImportError, OSError, ...
        return f"{type(e).__name__}: {e}"
    return None


def devices(name: str) -> list[str]:
    """The devices framework ``name`` sees, CPU first (imports the framework)."""
    backend = get(name).load()
    found = getattr(backend, "devices", None)
    return list(found()) if found is not None else ["cpu"]


def backend_of(x: Any) -> ModuleType | None:
    """The backend module whose framework made ``x``, or None; imports no framework."""
    for fw in BUILTINS:
        if any(_instance_of(x, module, cls) for module, cls in fw.types):
            backend = fw.load()
            if backend.is_tensor(x):
                return backend
    return None


def plugin_backend_of(x: Any) -> ModuleType | None:
    """The plug-in backend module that claims ``x``, or None.

    An entry point is named after the top-level module of its framework and loaded only if
    that module is the home of one of ``type(x)``'s classes, so it is already imported.
    """
    registered = entry_points()
    for cls in type(x).__mro__:
        framework = cls.__module__.partition(".")[0]
        point = registered.get(framework)
        if point is not None and sys.modules.get(framework) is not None:
            backend = load_plugin(point)
            try:
                claimed = backend.is_tensor(x)
            except Exception as e:
                raise RuntimeError(
                    f"gradrev.reverse: the backend plug-in {plugin_name(point)} raised in "
                    f"is_tensor({_lambda.describe(x)}): {type(e).__name__}: {e}"
                ) from e
            if claimed:
                return backend  # type: ignore[no-any-return]
    return None


def _instance_of(x: Any, module: str, name: str) -> bool:
    """``isinstance(x, module.name)`` if that module is imported and defines ``name``."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(x, cls)


def triton_before_tensorflow() -> None:
    """Import triton first where both it and TensorFlow are installed (the CLI and the suite).

    Known conflict (docs/install.md): triton, which torch's CUDA builds ship, segfaults when
    it loads after TensorFlow, as torch.compile makes it do. Loaded first, both work.
    """
    if "tensorflow" not in sys.modules and importable("triton") and importable("tensorflow"):
        import triton  # type: ignore[import-not-found]  # noqa: F401
