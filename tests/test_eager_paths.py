"""The eager fast paths (issue 23) keep the contract: λ is still checked, the sign of a zero
λ survives the per-value caches, and the torch layer's cached float λ follows every write."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

G = np.array([1.0, -2.0, 0.0, 3.0], np.float32)


@pytest.mark.parametrize("first, then", [(0.0, -0.0), (-0.0, 0.0), (0.3, 0.7)])
def test_per_value_lambda_caches_keep_each_value_and_sign(
    backend: Any, first: float, then: float
) -> None:
    for lam in (first, then, first):
        x = backend.tensor(np.zeros(4, np.float32))
        got = backend.vjp(lambda a, lam=lam: backend.ops.reverse(a, lam), x, backend.tensor(G))
        want = (G * np.float32(-lam)).astype(np.float32)
        assert got.tobytes() == want.tobytes(), f"λ={lam!r}: got {got}, want {want}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.5"])
def test_the_eager_forward_still_checks_lambda(backend: Any, bad: Any) -> None:
    import gradrev

    x = backend.tensor(np.ones(3, np.float32))
    with pytest.raises((TypeError, ValueError), match=r"gradrev\.reverse: lambda_"):
        gradrev.reverse(x, bad)


def test_torch_layer_eager_lambda_follows_every_write() -> None:
    torch = pytest.importorskip("torch")
    from gradrev.torch import GradientReversal

    layer = GradientReversal(0.5)
    x = torch.ones(3, requires_grad=True)

    def grad() -> list[float]:
        x.grad = None
        layer(x).sum().backward()
        return x.grad.tolist()  # type: ignore[union-attr]

    assert grad() == [-0.5] * 3
    layer.lambda_ = 2.0
    assert grad() == [-2.0] * 3
    with torch.no_grad():
        layer.lam.fill_(0.25)  # in place, behind the setter's back
    assert grad() == [-0.25] * 3
    layer.load_state_dict({**layer.state_dict(), "lam": torch.tensor([4.0], dtype=torch.float64)})
    assert grad() == [-4.0] * 3
    y = layer(x)
    layer.lambda_ = 8.0  # after the forward: the backward keeps the forward's λ
    x.grad = None
    y.sum().backward()
    assert x.grad.tolist() == [-4.0] * 3  # type: ignore[union-attr]
