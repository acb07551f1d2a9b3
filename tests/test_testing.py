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
