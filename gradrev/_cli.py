"""The ``gradrev`` command line: ``demo``, ``check``, ``bench`` and ``info``."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

_FRAMEWORKS = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradrev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="bitwise parity self-test on every backend and device")
    check.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    check.add_argument(
        "--backends", help="comma-separated subset of torch,jax,tensorflow (default: installed)"
    )
    sub.add_parser("info", help="versions and devices of the installed backends")
    demo = sub.add_parser("demo", help="DANN on the inter-twinning moons, in every framework")
    _demo_options(demo)
    sub.add_parser("bench", help="run benchmarks/bench.py (options passed on, e.g. --quick)")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    if args.command == "check":
        return _check(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "bench":
        return _bench(rest)
    return _info()


def _bench(args: list[str]) -> int:
    import runpy
    from pathlib import Path

    candidates = [Path.cwd() / "benchmarks" / "bench.py"]
    candidates.append(Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py")
    script = next((p for p in candidates if p.is_file()), None)
    if script is None:
        print(
            "gradrev bench: benchmarks/bench.py not found; it ships with the source, not the "
            "wheel: run it from a clone of the repository"
        )
        return 2
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _demo_options(parser: argparse.ArgumentParser) -> None:
    from gradrev.demo import Config

    d = Config()
    parser.add_argument("--backends", help="comma-separated subset of torch,jax,tensorflow")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"default {d.seeds}")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"default {d.steps}")
    parser.add_argument("--out", default="demo-out", help="folder for the figure")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam step size, default {d.lr}")
    parser.add_argument("--lambda-max", type=float, default=d.lambda_max)
    parser.add_argument("--gamma", type=float, default=d.gamma, help="DANN schedule steepness")
    parser.add_argument("--hidden", type=int, default=d.hidden, help="hidden units per layer")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--dtype", choices=["float64", "float32"], default=d.dtype)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gradrev import demo
    from gradrev.demo import report

    backends = args.backends.split(",") if args.backends else demo.installed_backends()
    unknown = sorted(set(backends) - set(demo.BACKENDS))
    missing = sorted(set(backends) - set(demo.installed_backends()) - set(unknown))
    if unknown or missing or not backends:
        print(
            f"gradrev demo: unknown backends {unknown}, not installed {missing}; "
            f'accepted: {list(demo.BACKENDS)} (pip install "gradrev[all,demo]")'
        )
        return 2
    for name, value in (
        ("--seeds", args.seeds),
        ("--steps", args.steps),
        ("--hidden", args.hidden),
        ("--batch-size", args.batch_size),
    ):
        if value < 1:
            print(f"gradrev demo: {name} must be a positive integer, got {value}")
            return 2
    config = demo.Config(
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        hidden=args.hidden,
        lr=args.lr,
        lambda_max=args.lambda_max,
        gamma=args.gamma,
        dtype=args.dtype,
    )
    with _progress(len(backends) * config.seeds * 2 * config.steps) as advance:
        result = demo.run(config, backends, progress=advance)
    print(report.tables(result))
    plot = report.figure(result, Path(args.out) / "dann_moons.png")
    result["plot"] = str(plot)
    print(f"figure: {plot}")
    if args.json:
        report.write_json(result, Path(args.json))
    return 0


def _progress(total: int) -> Any:
    """A rich progress bar if rich is installed, else nothing."""
    import contextlib

    try:
        from rich.progress import Progress
    except ImportError:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar() -> Any:
        with Progress(transient=True) as progress:
            task = progress.add_task("training", total=total)

            def advance(backend: str, steps: int) -> None:
                progress.update(task, advance=steps, description=f"training {backend}")

            yield advance

    return bar()


def _check(args: argparse.Namespace) -> int:
    from gradrev import _check

    backends = args.backends.split(",") if args.backends else None
    unknown = sorted(set(backends or []) - set(_FRAMEWORKS))
    if unknown:
        print(f"gradrev check: unknown backends {unknown}; accepted: {list(_FRAMEWORKS)}")
        return 2
    if not (backends or _check.installed_backends()):
        print('gradrev check: no backend installed; try pip install "gradrev[all]"')
        return 2
    report = _check.run(backends)
    print(_check.table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if report["ok"] else 1


def _info() -> int:
    from gradrev import __version__

    print(f"gradrev {__version__}, Python {platform.python_version()} on {platform.platform()}")
    for name, dist in _FRAMEWORKS.items():
        try:
            version = importlib.metadata.version(dist if name != "tensorflow" else _tf_dist())
        except importlib.metadata.PackageNotFoundError:
            print(f'{name:<11} not installed (pip install "gradrev[{name}]")')
            continue
        print(f"{name:<11} {version:<12} devices: {', '.join(_devices(name))}")
    return 0


def _tf_dist() -> str:
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            importlib.metadata.version(dist)
            return dist
        except importlib.metadata.PackageNotFoundError:
            continue
    return "tensorflow"


def _devices(name: str) -> list[str]:
    module: Any = __import__(name)
    if name == "torch":
        gpus = [
            f"cuda:{i} ({module.cuda.get_device_name(i)})"
            for i in range(module.cuda.device_count())
        ]
        return ["cpu", *gpus]
    if name == "jax":
        return [str(d) for d in module.devices()] + (
            [] if module.default_backend() == "cpu" else [str(d) for d in module.devices("cpu")]
        )
    return [d.name for d in module.config.list_logical_devices()]


if __name__ == "__main__":
    sys.exit(main())
