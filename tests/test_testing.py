"""gradrev.testing, the public conformance harness: it certifies gradrev's own backends, a
toy third-party backend registered through the ``gradrev.backends`` entry point group, and
refuses a backend that gets the bits wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import gradrev.testing

TOY = Path(__file__).parent / "toy"


@pytest.mark.slow
def test_in_tree_backends_are_certified(backend: Any) -> None:
    certificate = gradrev.testing.certify(backend)
    assert certificate.ok and set(certificate.results) == set(gradrev.testing.CHECKS)


def test_a_registered_third_party_backend_is_dispatched_and_certified(tmp_path: Path) -> None:
    """A dist-info with an entry point, as ``pip install`` of the toy's package would leave."""
    dist = tmp_path / "toygrad_gradrev-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toygrad-gradrev\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gradrev.backends]\ntoygrad = toygrad_gradrev\n")
    code = """
import sys
import numpy as np
import gradrev

try:
    gradrev.reverse(np.ones(3))
except TypeError as e:
    assert "or a tensor of a registered backend (toygrad)" in str(e), e
# Not a toygrad tensor, and toygrad is not imported: the plugin stays unloaded.
assert "toygrad" not in sys.modules and "toygrad_gradrev" not in sys.modules

import toygrad

x = toygrad.Tensor(np.ones(3, np.float32))
assert type(gradrev.reverse(x, 0.5)) is toygrad.Tensor
g = toygrad.grad(lambda a: gradrev.reverse(a, 0.5), x, np.ones(3, np.float32))
assert g.tolist() == [-0.5, -0.5, -0.5], g

import gradrev.testing
import toygrad_gradrev

print(gradrev.testing.certify(toygrad_gradrev.Adapter(), compiled=False))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TOY)])}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gradrev certification of toygrad:" in proc.stdout  # strict: any failure raises


def test_a_backend_that_rounds_lambda_first_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The naive ``g * -λ`` in the gradient's own dtype (λ rounded to bfloat16 first)."""
    monkeypatch.syspath_prepend(str(TOY))
    import toygrad
    import toygrad_gradrev

    def naive(x: Any, lambda_: Any = 1.0) -> Any:
        out = toygrad_gradrev.reverse(x, lambda_)  # its checks, then a wrong backward
        if out is x:
            return x
        lam = lambda_.value if isinstance(lambda_, toygrad.Tensor) else lambda_

        def vjp(g: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                return g * np.asarray(-lam, g.dtype)

        return toygrad.Tensor(x.value, ((x, vjp),))

    ops = SimpleNamespace(is_tensor=toygrad_gradrev.is_tensor, reverse=naive)
    adapter = toygrad_gradrev.Adapter(ops)
    certificate = gradrev.testing.certify(adapter, compiled=False, strict=False)
    assert not certificate.ok
    assert "float16, λ=-0.7: " in (certificate.results["parity"] or "")
    assert "elements differ from PyTorch's g * -λ" in (certificate.results["parity"] or "")
    with pytest.raises(gradrev.testing.CertificationError, match="parity"):
        gradrev.testing.certify(adapter, compiled=False)


# --- Each class of broken backend is caught by its own check (issue 20) ---------------------


def _toy(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    monkeypatch.syspath_prepend(str(TOY))
    import toygrad
    import toygrad_gradrev

    return toygrad, toygrad_gradrev


def _broken(toygrad: Any, toygrad_gradrev: Any, how: str) -> Any:
    """The toy backend with one deliberate defect."""

    def reverse(x: Any, lambda_: Any = 1.0) -> Any:
        out = toygrad_gradrev.reverse(x, lambda_)  # its checks and its correct backward
        if out is x:
            return x
        ((_, good),) = out.parents
        value = x.value
        vjp = good
        if how == "copies_forward":
            value = x.value.copy()
        elif how == "flips_zero_in_forward":
            value = np.where(x.value == 0, np.zeros_like(x.value), x.value)
        elif how == "saves_x":
            saved = x

            def vjp(g: np.ndarray) -> np.ndarray:
                return good(g) + 0 * saved.value[:0].sum()

        elif how == "int_lambda_sign" and isinstance(lambda_, int):

            def vjp(g: np.ndarray) -> np.ndarray:
                return -good(g)

        elif how == "float16_lambda" and getattr(lambda_, "dtype", None) == np.float16:

            def vjp(g: np.ndarray) -> np.ndarray:
                with np.errstate(all="ignore"):
                    return (good(g).astype(np.float64) * 1.001).astype(g.dtype)

        elif how == "conjugates":

            def vjp(g: np.ndarray) -> np.ndarray:
                return np.conj(good(g))

        elif how == "large_only":

            def vjp(g: np.ndarray) -> np.ndarray:
                out = good(g)
                if out.size > 5000 and np.isfinite(out[0]):
                    out = out.copy()
                    out[0] = np.nextafter(out[0], np.inf, dtype=out.dtype)
                return out

        return toygrad.Tensor(value, ((x, vjp),))

    return SimpleNamespace(is_tensor=toygrad_gradrev.is_tensor, reverse=reverse)


@pytest.mark.parametrize(
    ("how", "check", "says"),
    [
        ("copies_forward", "identity_forward", "the forward copied x"),
        ("flips_zero_in_forward", "identity_forward", "the forward changed"),
        ("saves_x", "saves_only_lambda", "saved tensors of [12] elements"),
        ("int_lambda_sign", "parity", "λ=2: "),
        ("float16_lambda", "parity", "as a 0-d float16 tensor"),
        ("conjugates", "complex", "complex64, λ=0.3: "),
        ("large_only", "large", "65548 float16: 1 of 65548 elements differ"),
    ],
)
def test_each_broken_toy_backend_is_refused(
    monkeypatch: pytest.MonkeyPatch, how: str, check: str, says: str
) -> None:
    """Was: certify passed each of these backends on 0b3caed."""
    toygrad, toygrad_gradrev = _toy(monkeypatch)
    adapter = toygrad_gradrev.Adapter(_broken(toygrad, toygrad_gradrev, how))
    certificate = gradrev.testing.certify(adapter, compiled=False, strict=False)
    failed = {name for name, why in certificate.results.items() if why is not None}
    assert check in failed, str(certificate)
    assert says in (certificate.results[check] or ""), str(certificate)
    good = gradrev.testing.certify(toygrad_gradrev.Adapter(), compiled=False, strict=False)
    assert good.results[check] is None  # the toy itself passes the same check


def test_an_incomplete_adapter_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: an adapter without ``scalar`` made certify(strict=False) raise AttributeError."""
    _, toygrad_gradrev = _toy(monkeypatch)
    full = toygrad_gradrev.Adapter()
    partial = SimpleNamespace(
        name="partial", ops=full.ops, tensor=full.tensor, numpy=full.numpy, vjp=full.vjp
    )
    certificate = gradrev.testing.certify(partial, compiled=False, strict=False)
    assert not certificate.ok
    assert "raised AttributeError" in (certificate.results["parity"] or ""), str(certificate)
    assert certificate.results["chained"] is None  # the checks that need no scalar pass
    with pytest.raises(gradrev.testing.CertificationError, match="raised AttributeError"):
        gradrev.testing.certify(partial, compiled=False)


def test_run_check_names_an_unknown_check() -> None:
    """Was: run_check("nope") raised a bare KeyError."""
    with pytest.raises(ValueError, match=r"run_check: no check named 'nope'; accepted: parity"):
        gradrev.testing.run_check("nope", SimpleNamespace())
