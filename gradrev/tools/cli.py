"""The ``gradrev`` command line: ``check``, ``info``, ``demo`` and ``bench``.

Building the parser imports nothing beyond the standard library, so ``gradrev --help``
works in any install; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

from gradrev import _registry
from gradrev._install import pip_command

_QUICK = {"seeds": 2, "steps": 40}


def main(argv: list[str] | None = None) -> int:
    args, unknown = _parser().parse_known_args(argv)
    if unknown:  # said with the command's own usage, not gradrev's
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _registry.triton_before_tensorflow()
    if args.verbose:
        return int(args.run(args))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_frameworks():
        return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    from gradrev import __version__
    from gradrev.tools import bench as _bench
    from gradrev.tools.args import float_range, int_range, output_file, output_folder
    from gradrev.tools.demo import Config, DigitsConfig

    parser = argparse.ArgumentParser(
        prog="gradrev",
        description="gradrev: one gradient reversal layer for PyTorch, JAX, TensorFlow and MLX.",
        epilog="gradrev COMMAND --help shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"gradrev {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="keep the frameworks' start-up logs"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="bitwise parity self-test on every backend and device")
    check.add_argument(
        "--json", metavar="PATH", type=output_file, help="also write the report as JSON"
    )
    check.add_argument(
        "--backends",
        help=f"comma-separated subset of {','.join(_registry.names())} (default: installed)",
    )
    check.set_defaults(run=_check)

    sub.add_parser("info", help="versions and devices of the installed backends").set_defaults(
        run=_info
    )

    demo = sub.add_parser(
        "demo",
        help="DANN on the moons or on digits → digits-M, in every framework",
        description="DANN in every installed framework, from the same weights and batches. "
        "--task moons (default): the inter-twinning moons; --task digits: the MNIST → MNIST-M "
        "experiment rebuilt from scikit-learn's digits and photographs. Unset options take "
        "the task's defaults (shown as moons / digits).",
    )
    m, g = Config(), DigitsConfig()
    demo.add_argument("--task", choices=["moons", "digits"], default="moons")
    builtins = ",".join(fw.name for fw in _registry.BUILTINS)
    demo.add_argument("--backends", help=f"comma-separated subset of {builtins}")
    # Each number is checked as it is parsed (gradrev/tools/args.py): a bad one gets the usage
    # and exit status 2, before anything runs. Unset, an option takes the task's default.
    seeds, steps = int_range(1, 100), int_range(1, 100_000)
    demo.add_argument("--seeds", type=seeds, help=f"default {m.seeds} / {g.seeds}")
    demo.add_argument("--steps", type=steps, help=f"default {m.steps} / {g.steps}")
    demo.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {_QUICK['seeds']} seeds, "
        f"{_QUICK['steps']} steps (an explicit --seeds or --steps still wins)"
    )  # fmt: skip
    demo.add_argument("--out", type=output_folder, default="demo-out", help="folder for the figure")
    demo.add_argument(
        "--json", metavar="PATH", type=output_file, help="also write the results as JSON"
    )
    lr = float_range(0, 10, low_open=True)
    demo.add_argument(
        "--lr", type=lr, help=f"step size: Adam {m.lr} / SGD with momentum, annealed, {g.lr}"
    )
    demo.add_argument("--lambda-max", type=float_range(0, 100), help="default 1.0")
    gamma = float_range(0, 1000, low_open=True)
    demo.add_argument("--gamma", type=gamma, help="DANN schedule steepness, default 10.0")
    hidden = int_range(1, 4096)
    demo.add_argument(
        "--hidden", type=hidden, help=f"hidden units, default {m.hidden} / {g.hidden}"
    )
    demo.add_argument(
        "--batch-size", type=int_range(1, 4096), help=f"default {m.batch_size} / {g.batch_size}"
    )
    demo.add_argument(
        "--data-seed",
        type=int_range(0, 2**32 - 1),
        help=f"digits only: digits-M's patches, default {g.data_seed}",
    )
    demo.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    demo.set_defaults(run=_demo)

    bench = sub.add_parser(
        "bench",
        help="gradrev against the floor and the anchors, as ratios",
        description=_bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _bench.add_options(bench)
    bench.set_defaults(run=_bench.run)
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)
    return parser


# Lines that TensorFlow and XLA write from C++ straight to file descriptor 2 while they
# start (absl's "WARNING: All log messages before absl::InitializeLog()", then lines such
# as "E0000 00:00:1795797379.774409 7639 cuda_platform.cc:52] failed call to cuInit";
# TensorFlow 2.17 writes "2026-11-27 18:43:41.010452: E external/.../cuda_fft.cc:485] ...").
# TF_CPP_MIN_LOG_LEVEL does not silence them: they come before absl reads any setting.
_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\] "
)


@contextlib.contextmanager
def _quiet_frameworks() -> Iterator[None]:
    """Filter the frameworks' C++ start-up chatter out of stderr; everything else passes.

    The chatter bypasses ``sys.stderr``, so the file descriptor itself goes through a pipe
    and a thread that drops the matching lines. ``gradrev -v`` keeps them.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (a test harness)
        yield
        return
    sys.stderr.flush()
    real = os.dup(fd)
    read, write = os.pipe()
    os.dup2(write, fd)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not _NOISE.match(line):
                    os.write(real, line)

    thread = threading.Thread(target=pump, name="gradrev-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, fd)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=10)
        os.close(real)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _demo(args: argparse.Namespace) -> int:
    from gradrev.tools import demo

    requested = _split(args.backends) or demo.installed_backends()
    unknown = sorted(set(requested) - set(demo.BACKENDS))
    if unknown or not requested:
        print(f"gradrev demo: unknown backends {unknown}; accepted: {list(demo.BACKENDS)}")
        return 2
    missing = [b for b in requested if b not in demo.installed_backends()]
    if missing:
        print(f"gradrev demo: {', '.join(missing)} not installed: {_hints(missing)}")
        return 2
    if not _registry.importable("numpy"):
        print(f"gradrev demo: the demo needs NumPy: {pip_command('numpy')}")
        return 2
    if _broken(requested, "demo"):
        return 2
    if args.task != "digits" and args.data_seed is not None:
        print("gradrev demo: --data-seed is for --task digits (the moons have no patches)")
        return 2
    if args.task == "digits" and not _registry.importable("sklearn"):
        print(f"gradrev demo: --task digits needs scikit-learn: {pip_command('scikit-learn')}")
        return 2
    config = _demo_config(args)
    plot = _registry.importable("matplotlib")
    if not plot:  # said before training, not after it
        print(f"no figure: matplotlib is not installed: {pip_command('matplotlib')}", flush=True)
    from gradrev.tools.demo import report
    from gradrev.tools.demo.progress import Progress

    modes = 3 if args.task == "digits" else 2  # digits adds the λ = 0 control
    per_backend = config.seeds * modes * config.steps
    progress = Progress(
        len(requested) * per_backend, sys.stdout, plan={b: per_backend for b in requested}
    )
    if args.task == "digits":
        from gradrev.tools.demo import experiment

        result = experiment.run(config, requested, progress=progress.advance)
    else:
        from gradrev.tools.demo import problem

        result = problem.run(config, requested, progress=progress.advance)
    progress.close()
    print(report.tables(result))
    result["plot"] = None
    try:
        if plot:
            if args.task == "digits":
                path = report.digits_figure(result, args.out / "dann_digits.png")
            else:
                path = report.figure(result, args.out / "dann_moons.png")
            result["plot"] = str(path)
            print(f"figure: {result['plot']}")
        if args.json:
            report.write_json(result, args.json)
            print(f"results: {args.json}")
    except OSError as e:  # the folder checked at parse time changed, or a disk filled
        print(f"gradrev demo: could not write {e.filename or ''}: {e.strerror or e}")
        return 1
    return 0


def _demo_config(args: argparse.Namespace) -> Any:
    """The task's config: its defaults, ``--quick``'s, then every option given."""
    import dataclasses

    from gradrev.tools import demo

    base = demo.DigitsConfig() if args.task == "digits" else demo.Config()
    given = {
        "seeds": args.seeds,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "lr": args.lr,
        "lambda_max": args.lambda_max,
        "gamma": args.gamma,
        "dtype": args.dtype,
    }
    if args.task == "digits":
        given["data_seed"] = args.data_seed
    chosen: dict[str, Any] = dict(_QUICK) if args.quick else {}
    chosen.update({k: v for k, v in given.items() if v is not None})
    return dataclasses.replace(base, **chosen)


def _check(args: argparse.Namespace) -> int:
    backends = _split(args.backends)
    known = _registry.names()
    unknown = sorted(set(backends or []) - set(known))
    if unknown:
        print(f"gradrev check: unknown backends {unknown}; accepted: {known}")
        return 2
    installed = _registry.installed_names()
    missing = [name for name in backends or [] if name not in installed]
    if missing:
        print(f"gradrev check: {', '.join(missing)} not installed: {_hints(missing)}")
        return 2
    if not (backends or installed):
        print(f"gradrev check: no framework installed. For PyTorch: {pip_command('torch')}")
        return 2
    if not _registry.importable("numpy"):
        print(f"gradrev check: the reference needs NumPy: {pip_command('numpy')}")
        return 2
    if _broken(backends or installed, "check"):
        return 2
    for name in backends or installed:
        fw = _registry.get(name)
        if fw not in _registry.BUILTINS and not hasattr(fw.load(), "Adapter"):
            print(
                f"gradrev check: the backend plug-in {name} ships no Adapter, which check "
                "needs to certify it (the adapter of gradrev.testing; see the Backends page "
                "of the docs, 'What the tools read from a plug-in')"
            )
            return 2
    from gradrev.tools import check

    report = check.run(backends or installed)
    print(check.table(report))
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
        except OSError as e:  # checked at parse time; the folder changed during the run
            print(f"gradrev check: could not write {args.json}: {e.strerror or e}")
            return 1
        print(f"report: {args.json}")
    return 0 if report["ok"] else 1


def _hints(frameworks: list[str]) -> str:
    extras = [_registry.get(name).extra for name in frameworks]
    return "".join(f"\n  {pip_command(extra)}" for extra in extras)  # one command a line


def _broken(frameworks: list[str], command: str) -> bool:
    """Whether importing one of ``frameworks`` fails (a broken install); says which and why."""
    broken = False
    for name in frameworks:
        error = _registry.import_error(name)
        if error:
            print(f"gradrev {command}: {name} is installed but does not import: {error}")
            print(f"  reinstall it: {pip_command(_registry.get(name).extra)}")
            broken = True
    return broken


def _info(args: argparse.Namespace) -> int:
    from gradrev import __version__

    print(f"gradrev {__version__}, Python {platform.python_version()} on {platform.platform()}")
    status = 0
    for fw in _registry.frameworks():
        name, version = fw.name, _registry.version(fw.name)
        if version is None:
            print(f"{name:<11} not installed: {pip_command(fw.extra)}")
            continue
        error = _registry.import_error(name)
        if error:
            print(f"{name:<11} {version:<12} does not import: {error}")
            status = 1
            continue
        print(f"{name:<11} {version:<12} devices: {', '.join(_registry.devices(name))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
