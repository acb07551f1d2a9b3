"""The ``gradrev`` command line: ``check`` and ``info``."""

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
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    if args.command == "check":
        return _check(args)
    return _info()


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
