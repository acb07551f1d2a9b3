"""gradrev.compat: each peer's documented behaviour, its README run with the import changed,
and its gradient bits, against the peer package where it is installed (the compat-test extra).

Also the single-element λ decision: gradrev.reverse refuses a λ of shape (1,) and says how
to fix it; the drop-ins accept what their peer accepts.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_keras_child

DTYPES = ("float16", "bfloat16", "float32", "float64")
ALPHAS = (1.0, 0.5, 0.1, 30.0, 1 / 3, 1e-3, 2)
PEER_MISSING = "is not installed (the compat-test extra: pip install --no-deps, as .ci/run does)"
ROOT = Path(__file__).resolve().parent.parent


def peer(module: str, package: str, name: str) -> Any:
    """The peer package; where missing, a skip that says how to install it.

    With GRADREV_TEST_PEERS=1 (as .ci/run sets after installing them), a missing peer fails.
    """
    if os.environ.get("GRADREV_TEST_PEERS") == "1":
        mod = importlib.import_module(module)
    else:
        mod = pytest.importorskip(module, reason=f"{package} {PEER_MISSING}")
    if not hasattr(mod, name):  # two packages install as gradient_reversal
        pytest.skip(f"the installed {module} is not {package}")
    return mod


@pytest.fixture(scope="module")
def torch() -> Any:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def input_grad(torch: Any, fn: Any, x: Any, g: Any) -> Any:
    x = x.detach().requires_grad_(True)
    fn(x).backward(g)
    return x.grad


def run(code: str, **names: Any) -> dict[str, Any]:
    scope = dict(names)
    exec(textwrap.dedent(code), scope)
    return scope


# --- single-element λ: refused by gradrev.reverse, with the fix in the message -------------


def test_one_element_lambda_error_says_how_to_fix_it(backend: Any) -> None:
    x = backend.tensor(np.ones(3, np.float32))
    one = backend.tensor(np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"shape \(1,\).*pass .*reshape.* or a Python float"):
        backend.ops.reverse(x, one)
    many = backend.tensor(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\).*one λ for the whole gradient") as info:
        backend.ops.reverse(x, many)
    assert "reshape" not in str(info.value)


@pytest.mark.skipif(
    not (ROOT / ".ci").is_dir(), reason="reads .ci/run, which the sdist does not carry"
)
def test_ci_installs_the_compat_test_extra() -> None:
    """.ci/run installs exactly the compat-test extra's packages, with --no-deps."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    peers = config["project"]["optional-dependencies"]["compat-test"]
    line = f"pip install -q --no-deps {' '.join(peers)} && GRADREV_TEST_PEERS=1 pytest"
    assert line in (ROOT / ".ci" / "run").read_text()


# --- pytorch-revgrad ----------------------------------------------------------------------


def test_revgrad_readme_runs(torch: Any) -> None:
    scope = run(
        """
        import torch

        from gradrev.compat.revgrad import RevGrad

        model = torch.nn.Sequential(
            torch.nn.Linear(10, 5),
            torch.nn.Linear(5, 2),
            RevGrad()
        )
        """
    )
    x = torch.randn(3, 10, requires_grad=True)
    scope["model"](x).sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("alpha", [None, 0.5, 0.7, 0.1, 30.0])
def test_revgrad_inverts_gradients_as_its_tests_say(torch: Any, alpha: float | None) -> None:
    from gradrev.compat.revgrad import RevGrad

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Linear(3, 1))
    layer = RevGrad() if alpha is None else RevGrad(alpha=alpha)
    revnetwork = torch.nn.Sequential(copy.deepcopy(network), layer)
    inp, outp = torch.randn(8, 5), torch.randn(8, 1)
    torch.nn.functional.mse_loss(network(inp), outp).backward()
    torch.nn.functional.mse_loss(revnetwork(inp), outp).backward()
    for p1, p2 in zip(network.parameters(), revnetwork.parameters()):
        if alpha is None:
            assert torch.equal(p1.grad, -p2.grad)
        else:
            assert torch.isclose(p1.grad, -p2.grad / alpha).all()


def test_revgrad_alpha_forms_and_state(torch: Any) -> None:
    from gradrev.compat.revgrad import RevGrad, revgrad

    assert RevGrad(0.1)._alpha.dtype == torch.float32  # torch.tensor(alpha), as the peer
    assert RevGrad(2)._alpha.dtype == torch.int64
    assert dict(RevGrad(0.3).state_dict()) == {}
    x, g = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = g * -torch.tensor(0.1, dtype=torch.float32).to(torch.float64)
    for alpha in (
        0.1,
        torch.tensor(0.1),
        torch.tensor([0.1]),
        torch.tensor([[0.1]]),
        np.float32(0.1),
    ):
        assert torch.equal(input_grad(torch, RevGrad(alpha), x, g), expected)
        assert torch.equal(
            input_grad(torch, lambda t, a=alpha: revgrad(t, RevGrad(a)._alpha), x, g), expected
        )
    assert torch.equal(input_grad(torch, RevGrad(torch.tensor([3])), x, g), g * -3.0)


def test_revgrad_bad_alpha_is_a_clear_error(torch: Any) -> None:
    from gradrev.compat.revgrad import RevGrad, revgrad

    with pytest.raises(ValueError, match=r"RevGrad: alpha must be finite, got nan"):
        RevGrad(float("nan"))
    with pytest.raises(ValueError, match=r"one α for the whole gradient.*shape \(3,\)"):
        RevGrad(torch.ones(3))
    with pytest.raises(TypeError, match=r"RevGrad: alpha must be a real number .* got str 'a'"):
        RevGrad("a")
    with pytest.raises(TypeError, match=r"revgrad: alpha must be .* got bool True"):
        revgrad(torch.ones(2), True)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # the peer's own warning
@pytest.mark.parametrize("dtype", DTYPES)
def test_revgrad_bits_equal_the_peer(torch: Any, dtype: str) -> None:
    pytorch_revgrad = peer("pytorch_revgrad", "pytorch-revgrad", "RevGrad")
    from gradrev.compat.revgrad import RevGrad

    torch.manual_seed(1)
    dt = getattr(torch, dtype)
    x, g = torch.randn(4096).to(dt), torch.randn(4096).to(dt)
    forms = [*ALPHAS, torch.tensor(0.1, dtype=torch.float64), torch.tensor([0.25])]
    for alpha in forms:
        ours = input_grad(torch, RevGrad(alpha), x, g)
        theirs = input_grad(torch, pytorch_revgrad.RevGrad(alpha), x, g)
        assert torch.equal(ours, theirs), alpha
    assert dict(pytorch_revgrad.RevGrad(0.5).state_dict()) == dict(RevGrad(0.5).state_dict())


# --- torch-gradient-reversal ---------------------------------------------------------------


def test_gradient_reversal_layer_readme_runs(torch: Any) -> None:
    scope = run(
        """
        import torch
        from gradrev.compat.gradient_reversal import GradientReversalLayer

        # Create a gradient reversal layer
        grl = GradientReversalLayer(alpha=1.0)

        # Use in a model
        model = torch.nn.Sequential(
            torch.nn.Linear(10, 20),
            torch.nn.ReLU(),
            grl,  # Reverses gradients during backprop
            torch.nn.Linear(20, 2)
        )

        # Forward pass works normally
        x = torch.randn(32, 10)
        output = model(x)

        # During backward pass, gradients are reversed and scaled by alpha
        loss = output.sum()
        loss.backward()

        import torch.nn as nn
        from gradrev.compat.gradient_reversal import GradientReversalLayer

        class DomainAdaptationModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.feature_extractor = nn.Sequential(
                    nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128)
                )
                self.task_classifier = nn.Sequential(
                    nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
                )
                self.domain_classifier = nn.Sequential(
                    GradientReversalLayer(alpha=1.0),
                    nn.Linear(128, 64),
                    nn.ReLU(),
                    nn.Linear(64, 2)
                )

            def forward(self, x):
                features = self.feature_extractor(x)
                task_output = self.task_classifier(features)
                domain_output = self.domain_classifier(features)
                return task_output, domain_output

        import numpy as np
        model, num_epochs = DomainAdaptationModel(), 3  # the README leaves these to the reader
        for epoch in range(num_epochs):
            # Schedule alpha from 0 to 1
            p = epoch / num_epochs
            alpha = 2 / (1 + np.exp(-10 * p)) - 1

            # Update the GRL alpha
            model.domain_classifier[0].set_alpha(alpha)
        """
    )
    model = scope["model"]
    assert model.domain_classifier[0].alpha.item() == np.float32(2 / (1 + np.exp(-10 * 2 / 3)) - 1)
    assert scope["x"].shape == (32, 10) and scope["output"].shape == (32, 2)


def test_gradient_reversal_layer_state_and_set_alpha(torch: Any) -> None:
    from gradrev.compat.gradient_reversal import GradientReversalLayer, gradient_reversal

    grl = GradientReversalLayer(0.1)
    assert list(grl.state_dict()) == ["alpha"] and grl.alpha.dtype == torch.float32
    assert repr(grl) == "GradientReversalLayer(alpha=0.1000)"
    grl.load_state_dict({"alpha": torch.tensor(0.25)})  # the peer's checkpoint format
    x, g = torch.randn(6), torch.randn(6)
    assert torch.equal(input_grad(torch, grl, x, g), g * -0.25)
    grl.set_alpha(torch.tensor([0.5]))
    assert torch.equal(input_grad(torch, grl, x, g), g * -0.5)
    assert torch.equal(input_grad(torch, lambda t: gradient_reversal(t, 0.75), x, g), g * -0.75)
    assert torch.equal(input_grad(torch, gradient_reversal, x, g), -g)
    with pytest.raises(ValueError, match="set_alpha: alpha must be finite, got inf"):
        grl.set_alpha(float("inf"))


@pytest.mark.slow
def test_gradient_reversal_layer_compiles_once_across_alphas(torch: Any) -> None:
    """Its README's torch.compile use; α changes by set_alpha without recompiling."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from gradrev.compat.gradient_reversal import GradientReversalLayer

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), GradientReversalLayer(alpha=1.0))
    compiled_model = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(3, 4)
    for alpha in (1.0, 0.5, 0.1):
        model[1].set_alpha(alpha)
        model.zero_grad()
        compiled_model(x).sum().backward()
        w = model[0].weight.grad
        model[0].weight.grad = None
        model(x).sum().backward()
        assert torch.equal(w, model[0].weight.grad)
    assert counter.frame_count == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_reversal_layer_bits_equal_the_peer(torch: Any, dtype: str) -> None:
    tgr = peer("gradient_reversal", "torch-gradient-reversal", "GradientReversalLayer")
    from gradrev.compat import gradient_reversal as compat

    torch.manual_seed(2)
    dt = getattr(torch, dtype)
    x, g = torch.randn(4096).to(dt), torch.randn(4096).to(dt)
    for alpha in ALPHAS:
        theirs = tgr.GradientReversalLayer(alpha)
        ours = compat.GradientReversalLayer()
        ours.load_state_dict(theirs.state_dict())  # a peer checkpoint loads into the drop-in
        assert torch.equal(input_grad(torch, ours, x, g), input_grad(torch, theirs, x, g))
        assert theirs.state_dict().keys() == ours.state_dict().keys()
        f_ours = input_grad(torch, lambda t, a=alpha: compat.gradient_reversal(t, a), x, g)
        f_theirs = input_grad(torch, lambda t, a=alpha: tgr.gradient_reversal(t, a), x, g)
        assert torch.equal(f_ours, f_theirs)
    back = tgr.GradientReversalLayer()
    back.load_state_dict(compat.GradientReversalLayer(0.3).state_dict())  # and back
    assert back.alpha.item() == np.float32(0.3)


@pytest.mark.slow
def test_changing_float_alpha_under_torch_compile(torch: Any) -> None:
    """A Python float α that changes becomes a symbolic float under torch.compile: it works."""
    from gradrev.compat.gradient_reversal import gradient_reversal
    from gradrev.compat.revgrad import revgrad
    from gradrev.compat.tllib import GradientReverseFunction

    for fn in (gradient_reversal, revgrad, GradientReverseFunction.apply):
        torch._dynamo.reset()
        step = torch.compile(lambda x, a, f=fn: f(x, a).sum(), backend="eager", fullgraph=True)
        for alpha in (0.1, 0.2, 0.3, 0.4):
            x = torch.ones(3, requires_grad=True)
            step(x, alpha).backward()
            assert torch.equal(x.grad, torch.full((3,), -alpha)), fn


@pytest.mark.slow
def test_tllib_warm_start_under_torch_compile(torch: Any) -> None:
    """Compiled, the warm-start layer still gives tllib's coefficients (iter_num is a Python
    int, so Dynamo recompiles per step up to its limit, then runs eagerly, as with tllib)."""
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    torch._dynamo.reset()
    grl = WarmStartGradientReverseLayer(auto_step=True)
    compiled = torch.compile(grl, backend="eager")
    for i in range(12):
        x = torch.ones(1, dtype=torch.float64, requires_grad=True)
        compiled(x).sum().backward()
        assert x.grad.item() == -tllib_coefficient(i)


# --- tadeephuy's GradientReversal (not on PyPI: its backward, −α·grad, is reproduced) ------


def test_tadeephuy_readme_runs(torch: Any) -> None:
    scope = run(
        """
        from torch import nn
        from gradrev.compat.gradient_reversal import GradientReversal

        # define a network with Gradient Reversal Layer
        net = nn.Sequential(
              nn.Linear(10, 10),
              GradientReversal(alpha=1.)
        )

        import torch
        from gradrev.compat.gradient_reversal import revgrad

        alpha = torch.tensor([1.])

        x = torch.tensor([4.], requires_grad=True)
        x_rev = torch.tensor([4.], requires_grad=True)

        y = x*5
        y = y+6

        y_rev = x_rev*5
        y_rev = revgrad(y_rev, alpha)
        y_rev = y_rev+6

        y.backward()
        y_rev.backward()

        print(f'x gradient: {x.grad}') # 5
        print(f'reversed x gradient: {x_rev.grad}') # -5

        assert x.grad==-x_rev.grad
        """
    )
    assert scope["x_rev"].grad.item() == -5.0
    assert dict(scope["net"][1].state_dict()) == {}


@pytest.mark.parametrize("dtype", DTYPES)
def test_tadeephuy_bits(torch: Any, dtype: str) -> None:
    """Equal to tadeephuy's −α·grad, except one documented case (docs/migration.md).

    With a 0-d α first in the product, PyTorch's CPU kernel rounds α to a float16/bfloat16
    gradient's dtype before multiplying; gradrev (and tadeephuy's own README form, α of
    shape (1,)) multiplies in float32, as pytorch-revgrad and torch-gradient-reversal do.
    """
    from gradrev.compat.gradient_reversal import GradientReversal, revgrad

    torch.manual_seed(3)
    dt = getattr(torch, dtype)
    x, g = torch.randn(4096).to(dt), torch.randn(4096).to(dt)
    for value in ALPHAS:
        canonical = (g.float() * -torch.tensor(value, dtype=torch.float32)).to(dt)
        for alpha in (torch.tensor(value), torch.tensor([value])):
            theirs = (-alpha * g).to(dt)  # tadeephuy's backward; autograd casts to x's dtype
            ours = input_grad(torch, GradientReversal(alpha), x, g)
            assert torch.equal(input_grad(torch, lambda t, a=alpha: revgrad(t, a), x, g), ours)
            if dtype in ("float32", "float64"):
                assert torch.equal(ours, theirs)
                continue
            assert torch.equal(ours, canonical)
            exact = torch.tensor(value, dtype=torch.float32).to(dt).float().item() == np.float32(
                value
            )
            assert torch.equal(ours, theirs) == (alpha.ndim == 1 or exact)


# --- Transfer-Learning-Library ---------------------------------------------------------------


def tllib_coefficient(
    i: int, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: float = 1000.0
) -> float:
    """tllib's WarmStartGradientReverseLayer coefficient, as tllib computes it."""
    return float(2.0 * (hi - lo) / (1.0 + np.exp(-alpha * i / max_iters)) - (hi - lo) + lo)


def tllib_reference(torch: Any) -> tuple[Any, Any]:
    """tllib's GRL as its source defines it: a copy forward, ``grad.neg() * coeff`` backward."""

    class Reverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, coeff: float = 1.0) -> Any:
            ctx.coeff = coeff
            return x * 1.0

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad.neg() * ctx.coeff, None

    class WarmStart(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.iter_num = 0

        def forward(self, x: Any) -> Any:
            coeff = tllib_coefficient(self.iter_num)
            self.iter_num += 1
            return Reverse.apply(x, coeff)

    return Reverse, WarmStart


def test_tllib_warm_start_coefficient_is_tllibs_bit_for_bit(torch: Any) -> None:
    """Through the gradient, for steps 0..3000, past max_iters=1000. too."""
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    grl = WarmStartGradientReverseLayer()  # tllib's defaults, max_iters=1000.
    x, g = torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    for i in range(3001):
        grl.iter_num = i
        assert input_grad(torch, grl, x, g).item() == -tllib_coefficient(i)
    assert tllib_coefficient(2000) == pytest.approx(0.7616, abs=1e-4)
    mdd = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=0.1, max_iters=1000)
    for i in range(0, 3001, 11):
        mdd.iter_num = i
        assert input_grad(torch, mdd, x, g).item() == -tllib_coefficient(i, hi=0.1)


def test_tllib_auto_step_and_state(torch: Any) -> None:
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=2.0, max_iters=1000, auto_step=True)
    x, g = torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    grads = [input_grad(torch, grl, x, g)[0].item() for _ in range(3)]
    assert grads == [-tllib_coefficient(i, hi=2.0) for i in range(3)]  # λ first, then the step
    assert grl.iter_num == 3 and dict(grl.state_dict()) == {}
    manual = WarmStartGradientReverseLayer()
    manual(x)
    manual.step()
    assert manual.iter_num == 1


def test_tllib_output_is_a_copy(torch: Any) -> None:
    from gradrev.compat.tllib import GradientReverseFunction, GradientReverseLayer

    x = torch.ones(3, requires_grad=True)
    h = x * 2
    y = GradientReverseLayer()(h, 0.5)
    y.add_(1)  # in place after the layer, as tllib allows: h is untouched
    assert torch.equal(h, torch.full((3,), 2.0))
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -1.0))
    assert GradientReverseFunction.apply(h).data_ptr() != h.data_ptr()


@pytest.mark.parametrize("dtype", DTYPES)
def test_tllib_function_bits(torch: Any, dtype: str) -> None:
    from gradrev.compat.tllib import GradientReverseFunction, GradientReverseLayer

    reverse, _ = tllib_reference(torch)
    torch.manual_seed(4)
    dt = getattr(torch, dtype)
    x, g = torch.randn(4096).to(dt), torch.randn(4096).to(dt)
    for coeff in (*ALPHAS, tllib_coefficient(777)):
        expected = input_grad(torch, lambda t, c=coeff: reverse.apply(t, c), x, g)
        ours = input_grad(torch, lambda t, c=coeff: GradientReverseFunction.apply(t, c), x, g)
        assert torch.equal(ours, expected)
        assert torch.equal(
            input_grad(torch, lambda t, c=coeff: GradientReverseLayer()(t, c), x, g), expected
        )
    assert torch.equal(input_grad(torch, GradientReverseLayer(), x, g), -g)


def test_tllib_bad_arguments_are_clear_errors(torch: Any) -> None:
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    with pytest.raises(ValueError, match="max_iters must be > 0, got 0"):
        WarmStartGradientReverseLayer(max_iters=0)
    with pytest.raises(ValueError, match="alpha must be finite, got nan"):
        WarmStartGradientReverseLayer(alpha=float("nan"))
    grl = WarmStartGradientReverseLayer(alpha=-5.0)  # tllib accepts a negative alpha: so do we
    grl.iter_num = 10**6
    x = torch.ones(1, dtype=torch.float64)
    assert (
        input_grad(torch, grl, x, torch.ones(1, dtype=torch.float64)).item() == 1.0
    )  # −(lo − span)


def dann_losses(torch: Any, grl: Any, steps: int) -> list[float]:
    """A tllib-style DANN loop (DomainAdversarialLoss, trade-off 1), float64 on the CPU."""
    gen = torch.Generator().manual_seed(0)
    dt = torch.float64
    features = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU()).to(dt)
    head = torch.nn.Linear(16, 2).to(dt)
    disc = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).to(
        dt
    )
    for p in [*features.parameters(), *head.parameters(), *disc.parameters()]:
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dt) * 0.5)
    params = [*features.parameters(), *head.parameters(), *disc.parameters()]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    theta = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=dt)  # the target: rotated
    losses = []
    for _ in range(steps):
        xs = torch.randn(16, 2, generator=gen, dtype=dt)
        ys = (xs[:, 0] * xs[:, 1] > 0).long()
        xt = torch.randn(16, 2, generator=gen, dtype=dt) @ theta
        f = features(torch.cat((xs, xt)))
        f_s, f_t = f.chunk(2)
        cls_loss = torch.nn.functional.cross_entropy(head(f_s), ys)
        d = torch.sigmoid(disc(grl(torch.cat((f_s, f_t)))))
        d_s, d_t = d.chunk(2)
        bce = torch.nn.functional.binary_cross_entropy
        transfer = 0.5 * (bce(d_s, torch.ones_like(d_s)) + bce(d_t, torch.zeros_like(d_t)))
        loss = cls_loss + transfer
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_tllib_dann_loop_gives_tllibs_losses_for_2000_steps(torch: Any) -> None:
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    _, reference = tllib_reference(torch)
    ours = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=1000, auto_step=True)
    theirs = reference()
    got, expected = dann_losses(torch, ours, 2000), dann_losses(torch, theirs, 2000)
    assert ours.iter_num == theirs.iter_num == 2000
    assert got == expected
    assert len(set(got)) > 1000  # it trained


# --- adapt's UpdateLambda (Keras) ------------------------------------------------------------


@pytest.fixture(scope="module")
def keras() -> Any:
    pytest.importorskip("tensorflow")
    return pytest.importorskip("keras")


def adapt_lambda(
    steps: float, max_steps: float, gamma: float, lambda_init: float, lambda_max: float
) -> float:
    """adapt's UpdateLambda, as adapt computes it: float32 TensorFlow ops."""
    import tensorflow as tf

    progress = min(steps / max_steps, 1.0)
    lam = 2.0 / (1.0 + tf.exp(-gamma * progress)) - 1.0
    lam /= 2 / (1.0 + tf.exp(-gamma)) - 1.0
    lam *= lambda_max - lambda_init
    lam += lambda_init
    return float(lam)


def test_adapt_update_lambda_reaches_lambda_max_as_its_test_says(keras: Any) -> None:
    """adapt's own test: a model with a lambda_ variable, 1000 batches, then λ == 1."""
    from gradrev.compat.adapt import UpdateLambda

    up = UpdateLambda()
    dummy = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    dummy.compile(loss="mse", optimizer="adam")
    dummy.lambda_ = keras.Variable(0.0, trainable=False)
    dummy.fit(
        np.zeros((100, 1)), np.zeros((100,)), batch_size=1, epochs=10, verbose=0, callbacks=[up]
    )
    assert float(dummy.lambda_.numpy()) == 1.0 and up.steps == 1000.0


def test_adapt_update_lambda_drives_gradrev_layers_with_adapts_bits(keras: Any) -> None:
    from gradrev import schedules
    from gradrev.compat.adapt import UpdateLambda
    from gradrev.keras import GradientReversal

    grl = GradientReversal(0.02)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2), grl, keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    seen: list[float] = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(grl.lambda_)
    )
    up = UpdateLambda(lambda_init=0.02, lambda_max=0.1, max_steps=40, gamma=10.0)
    model.fit(
        np.ones((50, 2)), np.ones((50,)), batch_size=1, epochs=1, verbose=0, callbacks=[up, record]
    )
    expected = [adapt_lambda(s, 40, 10.0, 0.02, 0.1) for s in range(1, 51)]
    assert seen == [float(np.float32(v)) for v in expected]
    assert seen[-1] == pytest.approx(0.1, rel=2**-23)  # adapt's float32 ends within 1 ulp
    # gradrev's own curve for the native layers: the same ramp in float64; adapt's float32
    # arithmetic is a few ulps off it
    ramp = schedules.dann(40, gamma=10.0, lambda_max=0.1, lambda_init=0.02, normalize=True)
    for s, value in enumerate(expected, start=1):
        assert np.float32(ramp(s)) == pytest.approx(value, rel=1e-6)


def test_adapt_update_lambda_only_the_layers_given(keras: Any) -> None:
    from gradrev.compat.adapt import UpdateLambda
    from gradrev.keras import GradientReversal

    driven, left = GradientReversal(0.0), GradientReversal(0.7)
    inputs = keras.Input((2,))
    outputs = keras.layers.Add()([driven(inputs), left(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    model.compile(loss="mse", optimizer="sgd")
    up = UpdateLambda(max_steps=4, layers=[driven])
    model.fit(np.ones((4, 2)), np.ones(4), batch_size=1, verbose=0, callbacks=[up])
    # The layer holds λ exactly, float32 storage included (its float64 bytes, docs/semantics.md)
    assert driven.lambda_ == 1.0 and left.lambda_ == 0.7
    with pytest.raises(TypeError, match=r"layers must be gradrev\.keras\.GradientReversal"):
        UpdateLambda(layers=[keras.layers.Dense(1)])


def test_adapt_update_lambda_bad_input(keras: Any) -> None:
    from gradrev.compat.adapt import UpdateLambda

    with pytest.raises(ValueError, match=r"gamma=0\.0 is too close to 0"):
        UpdateLambda(gamma=0.0)
    with pytest.raises(ValueError, match="max_steps must be > 0, got 0"):
        UpdateLambda(max_steps=0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(
        ValueError, match=r"no gradrev\.keras\.GradientReversal layer and no lambda_"
    ):
        model.fit(np.zeros((4, 1)), np.zeros((4,)), verbose=0, callbacks=[UpdateLambda()])


@pytest.mark.parametrize("name", ["lambda_init", "lambda_max", "max_steps", "gamma"])
def test_update_lambda_refuses_a_huge_int_with_gradrevs_error(keras: Any, name: str) -> None:
    """Was: 10**400 raised a raw OverflowError from math.isfinite."""
    from gradrev.compat.adapt import UpdateLambda

    with pytest.raises(ValueError, match=rf"UpdateLambda: {name} must be finite"):
        UpdateLambda(**{name: 10**400})


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["jax", "torch"])
def test_adapt_update_lambda_on_other_keras_backends(keras_backend: str) -> None:
    """The tests above on the JAX and PyTorch Keras backends, one subprocess each."""
    summary = run_keras_child(keras_backend, Path(__file__), select="adapt", needs=("tensorflow",))
    assert summary.startswith("4 passed"), summary


# --- Every drop-in's edge (issue 20) ------------------------------------------------------


def drop_in_functions(torch: Any) -> dict[str, Any]:
    """Each drop-in as ``fn(x, alpha)``, the layers built with α."""
    from gradrev.compat import gradient_reversal, revgrad, tllib

    return {
        "revgrad.revgrad": revgrad.revgrad,
        "revgrad.RevGrad": lambda x, a: revgrad.RevGrad(a)(x),
        "gradient_reversal.gradient_reversal": gradient_reversal.gradient_reversal,
        "gradient_reversal.GradientReversalLayer": lambda x, a: (
            gradient_reversal.GradientReversalLayer(a)(x)
        ),
        "gradient_reversal.revgrad": gradient_reversal.revgrad,
        "gradient_reversal.GradientReversal": lambda x, a: gradient_reversal.GradientReversal(a)(x),
        "tllib.GradientReverseFunction": tllib.GradientReverseFunction.apply,
        "tllib.GradientReverseLayer": lambda x, a: tllib.GradientReverseLayer()(x, a),
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("shape", [(), (1,)])
def test_every_drop_in_refuses_a_non_finite_tensor_alpha(
    torch: Any, value: float, shape: tuple[int, ...]
) -> None:
    """Was: NaN and inf tensor α were accepted (NaN gradients), where docs/migration.md
    promises gradrev's error."""
    for fn in drop_in_functions(torch).values():
        with pytest.raises(ValueError, match=r"alpha must be finite"):
            fn(torch.ones(3, requires_grad=True), torch.full(shape, value))
        with pytest.raises(ValueError, match=r"alpha must be finite"):
            fn(torch.ones(3, requires_grad=True), value)


@pytest.mark.parametrize("alpha", [10**400, -(10**400)], ids=["+10**400", "-10**400"])
def test_every_drop_in_refuses_a_huge_int_alpha_with_gradrevs_error(torch: Any, alpha: int) -> None:
    """Was: α = 10**400 raised a raw OverflowError."""
    for fn in drop_in_functions(torch).values():
        with pytest.raises(ValueError, match=r"alpha must be finite, got int .*overflows"):
            fn(torch.ones(3, requires_grad=True), alpha)


@pytest.mark.parametrize("name", ["alpha", "lo", "hi", "max_iters"])
def test_tllib_warm_start_refuses_a_huge_int_with_gradrevs_error(torch: Any, name: str) -> None:
    """Was: 10**400 raised a raw OverflowError from math.isfinite."""
    from gradrev.compat.tllib import WarmStartGradientReverseLayer

    with pytest.raises(ValueError, match=rf"WarmStartGradientReverseLayer: {name} must be finite"):
        WarmStartGradientReverseLayer(**{name: 10**400})


def test_tllib_integer_input_becomes_float32_as_in_tllib(torch: Any) -> None:
    """Was: int64 out for int64 in; tllib's forward is ``input * 1.0``, which is float32."""
    from gradrev.compat.tllib import GradientReverseFunction, GradientReverseLayer

    reverse, _ = tllib_reference(torch)
    for dtype in (torch.int64, torch.int32, torch.uint8, torch.bool):
        x = torch.tensor([0, 1, 1], dtype=dtype)
        theirs = reverse.apply(x, 0.5)
        for ours in (GradientReverseFunction.apply(x, 0.5), GradientReverseLayer()(x)):
            assert ours.dtype == theirs.dtype == torch.float32
            assert torch.equal(ours, theirs)


def peer_backwards(torch: Any) -> dict[str, Any]:
    """The peers' backward expressions, as each one's source writes it (``-grad * alpha``
    for pytorch-revgrad, ``-alpha * grad`` for tadeephuy's, ``grad.neg() * coeff`` for
    tllib's); autograd then casts the result to the input's dtype."""
    return {
        "revgrad.revgrad": lambda g, a: -g * a,
        "gradient_reversal.revgrad": lambda g, a: -a * g,
        "tllib.GradientReverseFunction": lambda g, a: g.neg() * a,
    }


@pytest.mark.parametrize("dtype", [*DTYPES, "complex64"])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_a_float64_alpha_of_one_element_gives_the_peers_bits(
    torch: Any, dtype: str, shape: tuple[int, ...]
) -> None:
    """Was: 1 ulp off in 20-33% of elements: the drop-ins rounded α to float32, where the
    peers' α with dimensions promotes the product to float64."""
    functions = drop_in_functions(torch)
    torch.manual_seed(5)
    dt = getattr(torch, dtype)
    x, g = torch.randn(4096, dtype=dt), torch.randn(4096, dtype=dt)
    for value in (0.1, 1 / 3, 0.7071067811865476):
        alpha = torch.full(shape, value, dtype=torch.float64)
        for name, theirs in peer_backwards(torch).items():
            expected = theirs(g, alpha).reshape(g.shape).to(dt)
            ours = input_grad(torch, lambda t, f=functions[name]: f(t, alpha), x, g)
            assert ours.dtype == dt
            assert torch.equal(ours, expected), (name, value)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # the peer's own warning
def test_revgrad_float64_one_element_alpha_equals_the_installed_peer(torch: Any) -> None:
    pytorch_revgrad = peer("pytorch_revgrad", "pytorch-revgrad", "RevGrad")
    from gradrev.compat.revgrad import RevGrad

    x, g = torch.randn(4096), torch.randn(4096)
    alpha = torch.tensor([0.1], dtype=torch.float64)
    ours = input_grad(torch, RevGrad(alpha), x, g)
    assert torch.equal(ours, input_grad(torch, pytorch_revgrad.RevGrad(alpha), x, g))


def test_drop_ins_script_where_the_peers_script(torch: Any, tmp_path: Any) -> None:
    """Was: obscure TorchScript annotation errors. pytorch-revgrad's and tadeephuy's layers and
    torch-gradient-reversal's layer and function compile with torch.jit.script: so do the
    drop-ins, and, through gradrev's operators, the scripted modules also save and load."""
    from gradrev.compat import gradient_reversal, revgrad

    class UsesFunctions(torch.nn.Module):
        def forward(self, x):  # TorchScript reads an unannotated x as a Tensor
            y = revgrad.revgrad(x, torch.tensor([0.5]))
            y = gradient_reversal.revgrad(y, 2.0)
            return gradient_reversal.gradient_reversal(y, 0.25)

    modules = {
        "RevGrad": (revgrad.RevGrad(0.5), -0.5),
        "GradientReversalLayer": (gradient_reversal.GradientReversalLayer(0.5), -0.5),
        "GradientReversal": (gradient_reversal.GradientReversal(torch.tensor([0.5])), -0.5),
        "functions": (UsesFunctions(), -0.25),
    }
    for name, (module, want) in modules.items():
        scripted = torch.jit.script(module)
        path = tmp_path / f"{name}.pt"
        torch.jit.save(scripted, str(path))
        for m in (scripted, torch.jit.load(str(path))):
            x = torch.ones(3, requires_grad=True)
            assert torch.equal(m(x), torch.ones(3)), name
            m(x).sum().backward()
            assert x.grad.tolist() == [want] * 3, name
    with pytest.raises(Exception, match=r"lambda_ must be finite"):
        torch.jit.script(gradient_reversal.gradient_reversal)(torch.ones(2), float("nan"))


def test_tllib_layers_refuse_torch_jit_script_saying_what_to_use(torch: Any) -> None:
    """tllib's layers do not script (a *input forward, NumPy); the drop-ins say what does."""
    from gradrev.compat.tllib import GradientReverseLayer, WarmStartGradientReverseLayer

    for layer in (GradientReverseLayer(), WarmStartGradientReverseLayer()):
        with pytest.raises(TypeError, match=r"cannot be compiled by torch.jit.script.*Use "):
            torch.jit.script(layer)
    with pytest.raises(TypeError, match=r"schedules.warm_start"):
        torch.jit.script(torch.nn.Sequential(WarmStartGradientReverseLayer()))
