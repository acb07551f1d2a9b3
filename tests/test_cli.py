"""``python -m gradrev check`` and ``info`` as a user runs them."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import installed, requested_backends, skip_reason

from gradrev import _registry


def gradrev_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradrev", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_check_writes_json_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    selected = requested_backends()  # GRADREV_TEST_BACKENDS, else every installed backend
    chosen = ("--backends", ",".join(selected)) if selected else ()
    proc = gradrev_cli("check", *chosen, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is True
    backends = {r["backend"] for r in report["results"]}
    assert backends == set(selected or _registry.installed_names())
    row = report["results"][0]
    assert {"backend", "device", "dtype", "lambda", "match"} <= row.keys()
    assert {r["dtype"] for r in report["results"]} >= {"float16", "float32", "float64"}
    assert "bit-exact" in proc.stdout


def test_check_rejects_unknown_backend() -> None:
    proc = gradrev_cli("check", "--backends", "mxnet")
    assert proc.returncode == 2
    assert "unknown backends ['mxnet']" in proc.stdout


def test_info_lists_each_backend() -> None:
    proc = gradrev_cli("info")
    assert proc.returncode == 0, proc.stderr
    for name in _registry.names():
        assert name in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    bool(skip_reason("torch")), reason=f"its rows need torch: {skip_reason('torch')}"
)
def test_bench_quick_writes_json(tmp_path: Path) -> None:
    """The benchmark runs end to end (no timing is asserted: speed lives in the benchmark)."""
    out = tmp_path / "bench.json"
    proc = gradrev_cli("bench", "--quick", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = {r["section"].split(",")[0] for r in report["rows"]}
    assert {"dispatch: gradrev.reverse vs the backend function"} <= sections
    assert {f"{fw.name} eager" for fw in _registry.BUILTINS if installed(fw.name)} <= {
        s.split(",")[0] for s in sections
    }
    if installed("torch"):  # the saved-bytes section measures torch's autograd graph
        saved = [r for r in report["rows"] if r["case"] == "gradrev" and r["unit"] == "bytes"]
        assert saved and saved[0]["value"] == 0  # nothing saved for backward: not a timing
    assert "cpu" in report["machine"] or "processor" in report["machine"]


def blocked(*modules: str) -> str:
    """Python code that makes ``modules`` unimportable, as in an install without them."""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


def gradrev_cli_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        blocked(*modules) + f"from gradrev.tools.cli import main\nsys.exit(main({list(args)!r}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["bench", "--help"]], ids=str)
def test_help_needs_no_numpy(args: list[str]) -> None:
    """A torch-only install has no NumPy: building the options must not import it."""
    proc = gradrev_cli_without(("numpy",), *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: gradrev" in proc.stdout


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_check_without_ml_dtypes_reports_no_false_mismatch(tmp_path: Path) -> None:
    """Without ml_dtypes, float64 used to be built as bfloat16: a false MISMATCH."""
    out = tmp_path / "check.json"
    proc = gradrev_cli_without(("ml_dtypes",), "check", "--backends", "torch", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "MISMATCH" not in proc.stdout
    report = json.loads(out.read_text())
    rows = {(r["dtype"], r["match"]) for r in report["results"]}
    assert rows == {("float16", True), ("float32", True), ("float64", True)}
    assert report["skipped"] == [
        {"backend": "torch", "dtype": "bfloat16", "reason": "ml_dtypes is not installed"}
    ]
    assert "bfloat16   skipped: ml_dtypes is not installed" in proc.stdout


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_check_json_records_versions_platform_and_devices(tmp_path: Path) -> None:
    import platform

    import gradrev

    out = tmp_path / "check.json"
    proc = gradrev_cli("check", "--backends", "torch", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["gradrev"] == gradrev.__version__
    assert report["python"] == platform.python_version()
    assert report["platform"] == platform.platform()
    # The distribution's version: torch.__version__ adds a local tag (+cu124) on some builds.
    assert report["frameworks"]["torch"]["version"] == importlib.metadata.version("torch")
    assert report["frameworks"]["torch"]["devices"][0] == "cpu"
    assert {r["dtype"] for r in report["results"]} == {"float16", "bfloat16", "float32", "float64"}
    assert "docs/semantics.md" not in proc.stdout  # pip users have no docs folder


@pytest.mark.parametrize("command", ["info", "check"])
def test_no_framework_start_up_noise_on_stderr(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "gradrev", command],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stderr == ""


def test_bench_help_lists_its_options() -> None:
    proc = gradrev_cli("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--json" in proc.stdout


def test_bench_ships_with_the_package(tmp_path: Path) -> None:
    """``gradrev bench`` works from an installed package, without the source checkout."""
    import shutil

    import gradrev

    shutil.copytree(Path(gradrev.__file__).parent, tmp_path / "gradrev")
    code = "import sys; from gradrev.tools import bench; print(bench.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(tmp_path))


# -- Bad arguments: the command's usage, a message, exit 2; never a traceback or a run -------


def parse_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``gradrev ARGV`` in this process: what it printed on stderr, having exited with 2."""
    from gradrev.tools.cli import main

    with pytest.raises(SystemExit) as exit:
        main(list(argv))
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


DEMO_FAST = ("demo", "--backends", "torch", "--seeds", "1", "--steps", "5")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lambda-max", "inf"),
        ("--lambda-max", "-1"),
        ("--gamma", "nan"),
        ("--gamma", "0"),
        ("--hidden", "1e30"),
        ("--hidden", str(10**30)),
        ("--lr", "nan"),
        ("--lr", "-0.1"),
        ("--seeds", "0"),
        ("--steps", "-5"),
        ("--batch-size", "1.5"),
    ],
    ids=str,
)
def test_demo_refuses_a_bad_number_before_running(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    err = parse_error(capsys, *DEMO_FAST, "--out", "/nonexistent-i22", option, value)
    assert "usage: gradrev demo" in err
    assert f"argument {option}: must be " in err and repr(value) in err


@pytest.mark.parametrize("option", ["--out", "--json"])
def test_demo_refuses_an_unwritable_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    err = parse_error(capsys, *DEMO_FAST, option, str(afile / "sub"))
    assert f"argument {option}: cannot write" in err and "is not a folder" in err


def test_check_refuses_a_folder_for_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = parse_error(capsys, "check", "--json", str(tmp_path))
    assert "usage: gradrev check" in err and "is a folder: give a file path" in err


def test_an_unknown_option_shows_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error(capsys, "check", "--fast")
    assert err.startswith("usage: gradrev check") and "unrecognized arguments: --fast" in err


def test_help_names_all_four_frameworks() -> None:
    proc = gradrev_cli("--help")
    assert "PyTorch, JAX, TensorFlow and MLX" in proc.stdout


def test_version_prints_the_package_version() -> None:
    import gradrev

    proc = gradrev_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"gradrev {gradrev.__version__}\n"


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_check_json_creates_missing_folders_and_says_where(tmp_path: Path) -> None:
    """It used to fail with a traceback after the whole run."""
    out = tmp_path / "new" / "folder" / "check.json"
    proc = gradrev_cli("check", "--backends", "torch", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert json.loads(out.read_text())["ok"] is True
    assert f"report: {out}" in proc.stdout


# Random values for every numeric option of the demo. Each is refused by argparse with the
# option's name and exit 2, or accepted within the documented range and then builds the
# demo's schedule (a value the parser passes must not fail later, inside the run).
NUMERIC = {
    "--seeds": ("seeds", int, 1, 100),
    "--steps": ("steps", int, 1, 100_000),
    "--hidden": ("hidden", int, 1, 4096),
    "--batch-size": ("batch_size", int, 1, 4096),
    "--lr": ("lr", float, 0, 10),
    "--lambda-max": ("lambda_max", float, 0, 100),
    "--gamma": ("gamma", float, 0, 1000),
    "--data-seed": ("data_seed", int, 0, 2**32 - 1),
}


def _values() -> Any:
    from hypothesis import strategies as st

    numbers = st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    words = st.sampled_from(["nan", "-nan", "inf", "-inf", "1e400", "0x10", "", " ", "1_0", "½"])
    return st.one_of(numbers.map(str), words, st.text(max_size=8))


def test_demo_numbers_fuzzed(capsys: pytest.CaptureFixture[str]) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from gradrev import schedules
    from gradrev.tools.cli import _demo_config, _parser

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.sampled_from(sorted(NUMERIC)), _values())
    def check(option: str, value: str) -> None:
        field, kind, low, high = NUMERIC[option]
        try:
            args = _parser().parse_args(["demo", f"{option}={value}"])
        except SystemExit as exit:
            assert exit.code == 2
            err = capsys.readouterr().err
            assert f"argument {option}: " in err and "Traceback" not in err, err
            return
        got = getattr(args, field)
        assert type(got) is kind and low <= got <= high, (option, value, got)
        config = _demo_config(args)  # unset options take the task's defaults
        schedules.dann(config.steps, config.gamma, config.lambda_max)(config.steps // 2)

    check()


def broken_framework(tmp_path: Path, error: str) -> dict[str, str]:
    """An environment in which ``import torch`` raises ``error`` (a broken install)."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(f"raise {error}\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(not installed("torch"), reason="torch's metadata must say it is installed")
@pytest.mark.parametrize(
    "error", ["ImportError('libtorch_cpu.so: cannot open')", "OSError('bad ELF header')"]
)
@pytest.mark.parametrize(
    ("command", "code"), [(("info",), 1), (("check", "--backends", "torch"), 2)], ids=str
)
def test_a_broken_framework_is_reported_without_a_traceback(
    tmp_path: Path, error: str, command: tuple[str, ...], code: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gradrev", *command],
        capture_output=True,
        text=True,
        env=broken_framework(tmp_path, error),
        timeout=600,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "does not import" in proc.stdout and error.split("'")[1] in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not installed("torch"), reason="runs the demo on torch")
def test_demo_runs_with_random_accepted_numbers(tmp_path: Path) -> None:
    """What the parser accepts runs to the end: exit 0 and a results file, no traceback."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from gradrev.tools.cli import main

    @hypothesis.settings(max_examples=4, deadline=None, database=None)
    @hypothesis.given(
        st.floats(1e-6, 10),
        st.floats(0, 100),
        st.floats(1e-3, 1000),
        st.integers(1, 64),
        st.integers(1, 64),
    )
    def run(lr: float, lambda_max: float, gamma: float, hidden: int, batch: int) -> None:
        out = tmp_path / "r.json"
        out.unlink(missing_ok=True)
        argv = [*DEMO_FAST, "--out", str(tmp_path), "--json", str(out), f"--lr={lr!r}"]
        argv += [f"--lambda-max={lambda_max!r}", f"--gamma={gamma!r}"]
        argv += [f"--hidden={hidden}", f"--batch-size={batch}"]
        assert main(argv) == 0
        assert list(json.loads(out.read_text())["results"]) == ["torch"]

    run()


def test_bench_verdict_is_missed_only_when_the_whole_spread_is_past_the_target() -> None:
    """Per-round ratios: a row misses only when its first quartile is past the target."""
    from gradrev.tools import bench_core as core

    core.ROWS.clear()
    ref = [1.0] * 8
    straddles = [1.0, 1.1, 1.1, 1.3, 1.3, 1.3, 1.4, 1.5]  # median 1.3, first quartile 1.1
    past = [1.3, 1.3, 1.35, 1.4, 1.4, 1.5, 1.5, 1.6]
    core.compare("s", "straddles", {"a": straddles, "r": ref}, "a", "r", 1.2)
    core.compare("s", "past", {"a": past, "r": ref}, "a", "r", 1.2)
    straddling, missed = core.ROWS
    assert straddling["pass"] is True and straddling["spread"][0] <= 1.2 < straddling["ratio"]
    assert missed["pass"] is False and missed["spread"][0] > 1.2
    text = core.table()
    assert "ratio" in text and "spread" in text and "target" in text and "MISSED" in text
    core.ROWS.clear()


def test_bench_strict_exits_non_zero_on_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradrev.tools import bench as _bench
    from gradrev.tools import bench_core as _bench_core

    def fake_eager(framework: str, rounds: int) -> None:
        _bench_core.row("eager", framework, 1.0, "µs", "x", 2.0, "≤ 1.00×", False, (2.0, 2.0))

    monkeypatch.setattr("gradrev.tools.bench_eager.bench_eager", fake_eager)
    # A name no section imports: the test runs in single-framework venvs too (no torch).
    monkeypatch.setattr(_bench, "installed", lambda: ["toygrad"])
    assert _bench.main(["--only", "eager", "--strict"]) == 1
    assert _bench.main(["--only", "eager"]) == 0


def test_bench_refuses_an_unwritable_json_before_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("")
    err = parse_error(capsys, "bench", "--quick", "--json", str(tmp_path / "afile" / "b.json"))
    assert "usage: gradrev bench" in err and "is not a folder" in err
