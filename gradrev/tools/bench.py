"""gradrev benchmarks: gradrev against the floor and the anchors, side by side, as ratios.

    gradrev bench [--quick] [--only SECTION] [--strict] [--json PATH]
    (from a clone: python benchmarks/bench.py)

Every row is measured in this run and compared with its reference from the same run, in
interleaved rounds: each round runs every contender once, so drift in the machine's speed
hits all of them alike, and gives one ratio per round. A row shows the median ratio and the
spread of the per-round ratios (first to third quartile); its verdict is MISSED only when
the whole spread is past the target. --strict exits with status 1 if any target is missed.

The anchors, other GRLs measured beside gradrev: pip install -c constraints.txt
pytorch-revgrad==0.2.0 torch-gradient-reversal==1.0.0 (benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys

from gradrev import _registry
from gradrev.tools.bench_core import NOTES, ROWS, table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SECTIONS = ("eager", "torch", "dispatch", "compiled", "recompiles", "dann")


def installed() -> list[str]:
    """The frameworks of the eager case table that this environment can import."""
    from gradrev.tools.bench_eager import EAGER_CASES

    return [name for name in EAGER_CASES if _registry.installed(name)]


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else None
    with contextlib.suppress(OSError):
        info["load average"] = [round(v, 2) for v in os.getloadavg()]
    for fw in _registry.frameworks():
        if fw.module in sys.modules:
            info[fw.name] = getattr(sys.modules[fw.module], "__version__", "?")
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        info["gpu"] = sys.modules["torch"].cuda.get_device_name(0)
    return info


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2^20-element tensors, 5 rounds (11 for the eager section), torch.compile through "
        "aot_eager (no Inductor compile): about 1 minute on 2 cores that other jobs load "
        "(the full run: about 2 minutes there, 2^24 elements and Inductor)",
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any target is missed"
    )
    from gradrev.tools.args import output_file

    parser.add_argument(
        "--json",
        metavar="PATH",
        type=output_file,
        help="also write the rows and the machine as JSON",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_options(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run every section whose framework is installed; print the table (and write JSON)."""
    from gradrev.tools import bench_compiled as compiled
    from gradrev.tools import bench_torch as torch_sections
    from gradrev.tools.bench_eager import bench_eager

    ROWS.clear()
    NOTES.clear()
    quick = bool(args.quick)
    only = set(args.only or SECTIONS)
    # 2^24 elements in --quick too: at 2^20 a call takes about 0.1 ms, and allocator effects
    # that every autograd.Function pays (2x in some runs, none in others) drown the ratio.
    n = 1 << 24
    rounds = 5 if quick else 15
    frameworks = installed()
    if "eager" in only:
        for fw in frameworks:
            bench_eager(fw, 11 if quick else 21)
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)  # the eager section used one
    if "torch" in only and "torch" in frameworks:
        torch_sections.bench_torch_eager("cpu", n, rounds)
        if torch.cuda.is_available():
            torch_sections.bench_torch_eager("cuda", n, rounds)
        torch_sections.bench_saved_bytes()
        if "jax" in frameworks:
            compiled.bench_jax_residuals()
    if "dispatch" in only:
        for fw in frameworks:
            compiled.bench_dispatch(fw, rounds)
    if "compiled" in only:
        for fw in frameworks:
            compiled.bench_compiled(fw, 1 << 16 if quick else 1 << 20, rounds, quick)
    if "recompiles" in only:
        for fw in frameworks:
            compiled.bench_recompiles(fw, 12 if quick else 100)
    if "dann" in only and "torch" in frameworks:
        torch_sections.bench_dann_step(rounds, conv_batch=16 if quick else 64)
    print(table())
    if args.json:  # checked at parse time (gradrev/tools/args.py); its folders are made here
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "rows": ROWS}, indent=2))
        print(f"report: {args.json}")
    missed = [r for r in ROWS if r["pass"] is False]
    print(f"\n{len(ROWS)} rows, {len(missed)} targets missed (the whole spread past the target)")
    for text in NOTES:
        print(f"note: {text}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
