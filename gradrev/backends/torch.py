"""PyTorch backend. Its arithmetic is canonical: the other backends reproduce it bit for bit."""

from __future__ import annotations

import math
import sys
from typing import Any

try:
    import torch

    # private API [torch-unwrap-if-dead]: docs/private-apis.md
    from torch._C._functorch import unwrap_if_dead
    from torch.autograd import forward_ad
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev import _lambda
from gradrev.backends import ScheduleMath

__all__ = ["GradReverse", "is_tensor", "reverse"]

_FRAMEWORK = "torch"
_REDUCED = (torch.float16, torch.bfloat16)
# The dtypes PyTorch computes grad * -λ in; float8 and complex32 have no CPU arithmetic.
_DTYPES = frozenset(
    (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)
)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of this backend's framework (subclasses, Parameters and
    ``torch.fx`` proxies included)."""
    return isinstance(x, (torch.Tensor, torch.fx.Proxy))


def reverse(x: torch.Tensor, lambda_: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity forward, gradient times ``-lambda_`` backward.

    Contract: returns a zero-copy view of ``x``; only ``lambda_`` is kept for backward.

    Example:
        ```python
        import torch
        from gradrev.backends.torch import reverse

        y = reverse(torch.ones(3, requires_grad=True), 0.5)
        ```
    """
    if not isinstance(x, torch.Tensor):
        if isinstance(x, torch.fx.Proxy):  # torch.fx.symbolic_trace: record the operator
            if not isinstance(lambda_, torch.fx.Proxy):
                # A proxy has no device to check a tensor λ against: check λ on its own.
                like = lambda_ if isinstance(lambda_, torch.Tensor) else torch.empty(())
                lambda_ = _check_lambda(lambda_, like)
            return _recorded(x, lambda_)
        raise _lambda.wrong_input(x, "gradrev.reverse", "a torch.Tensor")
    if x.layout != torch.strided or x.is_nested:
        raise _not_dense(x)
    compiling = torch.compiler.is_compiling()
    if type(lambda_) is float and -math.inf < lambda_ < math.inf and not compiling:
        lam: float | torch.Tensor = lambda_  # the common case, checked in 0.1 µs
    else:
        lam = _check_lambda_traced(lambda_, x) if compiling else _check_lambda(lambda_, x)
    if not _carries_gradient(x):
        return x  # integers and bools carry no gradient: pass through untouched
    if compiling:
        # private API [torch-forward-ad-level], [torch-functorch-active]: docs/private-apis.md
        if forward_ad._current_level >= 0 or _functorch_active():
            raise _no_compiled_transform()
        if _is_exporting() and not _onnx_exporting():
            return _recorded(x, lam)
        return _GradReverseCompiled.apply(x, lam)  # type: ignore[no-untyped-call,no-any-return]
    # private API [torch-forward-ad-level]: docs/private-apis.md
    if forward_ad._current_level >= 0:
        return _GradReverseDual.apply(x, lam)  # type: ignore[no-untyped-call,no-any-return]
    # private API [torch-functorch-active]: docs/private-apis.md
    if _functorch_active():
        return GradReverse.apply(x, lam)  # type: ignore[no-untyped-call,no-any-return]
    # torch.jit.is_tracing() without its is_scripting() check, which costs 40 ns a call.
    # private API [torch-is-tracing]: docs/private-apis.md
    if _is_tracing() and not _onnx_exporting():
        return _recorded(x, lam)
    # Outside torch.func transforms, Function.apply only binds default arguments through
    # inspect.signature (about 15 µs per call for the setup_context form), unwraps tensors
    # that a finished torch.func transform left wrapped, and then makes this very call.
    # Skipping the binding makes the forward 4x cheaper.
    # private API [torch-unwrap-if-dead]: docs/private-apis.md
    if isinstance(lam, torch.Tensor):
        lam = unwrap_if_dead(lam)
    # private API [torch-apply-bypass], [torch-unwrap-if-dead]: docs/private-apis.md
    return _apply_eagerly(unwrap_if_dead(x), lam)  # type: ignore[no-untyped-call,no-any-return]


def _carries_gradient(x: torch.Tensor) -> bool:
    """Whether x is floating or complex; a dtype PyTorch has no arithmetic for is refused."""
    if not (x.is_floating_point() or x.is_complex()):
        return False
    if x.dtype not in _DTYPES:
        raise _lambda.unsupported_dtype(str(x.dtype).removeprefix("torch."), "gradrev.reverse")
    return True


def reverse_eagerly(x: torch.Tensor, lambda_: float) -> torch.Tensor:
    """``reverse(x, lambda_)`` for a finite Python-float λ, for a caller that knows it runs in
    plain eager PyTorch (no torch.compile, trace or torch.func transform): the torch layer's
    forward, which checks that, and saves reverse's checks of λ and of the mode."""
    if x.layout != torch.strided or x.is_nested:
        raise _not_dense(x)
    if not _carries_gradient(x):
        return x
    # private API [torch-apply-bypass], [torch-unwrap-if-dead]: docs/private-apis.md
    return _apply_eagerly(unwrap_if_dead(x), lambda_)  # type: ignore[no-untyped-call,no-any-return]


class GradReverse(torch.autograd.Function):
    """The autograd Function behind [reverse][gradrev.backends.torch.reverse]: ``apply(x, lambda_)``.

    ``lambda_`` is a finite float or a detached 0-d floating tensor.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, lambda_: float | torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, lambda_ = inputs
        if isinstance(lambda_, torch.Tensor):
            ctx.save_for_backward(lambda_)
            ctx.save_for_forward(lambda_)
            ctx.lambda_ = None
        else:
            ctx.lambda_ = lambda_

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        lambda_ = ctx.lambda_ if ctx.lambda_ is not None else ctx.saved_tensors[0]
        return _scale(grad, lambda_), None

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, lambda_tangent: Any) -> torch.Tensor:
        # Forward mode (torch.func.jvp, torch.autograd.forward_ad): the tangent is -λ·t.
        lambda_ = ctx.lambda_ if ctx.lambda_ is not None else ctx.saved_tensors[0]
        return _scale(x_tangent, lambda_)


class _GradReverseCompiled(GradReverse):
    """GradReverse without ``jvp``, used while TorchDynamo traces.

    Dynamo (torch 2.13) refuses to trace an autograd.Function that defines ``jvp``, so
    forward-mode AD is available eagerly but not inside ``torch.compile``.
    """

    jvp = torch.autograd.Function.jvp  # type: ignore[assignment]


class _GradReverseDual(GradReverse):
    """GradReverse that copies, used inside ``torch.autograd.forward_ad.dual_level``.

    There, autograd requires the tangent of a view to be a view of the input's tangent,
    which a tangent scaled by -λ cannot be. (``torch.func.jvp`` has no such rule.)
    """

    @staticmethod
    def forward(x: torch.Tensor, lambda_: float | torch.Tensor) -> torch.Tensor:
        return x.clone()


def _no_compiled_transform() -> RuntimeError:
    # Under torch.func transforms and forward mode, TorchDynamo differentiates the Function's
    # forward (an identity) and would silently give +g or +t. Both flags are trace-time
    # constants, so the check costs the compiled graph nothing. Without fullgraph=True,
    # Dynamo falls back to running the function eagerly, where the transform is right.
    return RuntimeError(
        "gradrev.reverse: torch.func transforms (grad, vjp, jvp, vmap) and forward-mode AD "
        "inside torch.compile are not supported: TorchDynamo would ignore the reversal and "
        "give +g. Apply the transform outside the compiled function, or compile without "
        "fullgraph=True"
    )


# private API [torch-apply-bypass]: docs/private-apis.md
_apply_eagerly = super(torch.autograd.Function, GradReverse).apply
# Bound once: each saves an attribute lookup on every eager call.
# private API [torch-functorch-active]: docs/private-apis.md
_functorch_active = torch._C._are_functorch_transforms_active
# private API [torch-is-tracing]: docs/private-apis.md (torch.jit.is_tracing() adds an
# is_scripting() call: 40 ns on every call)
_is_tracing = torch._C._is_tracing


# Exported programs and TorchScript traces lose an autograd.Function: torch.export records
# its forward (a view_as, so training the program gives +grad), a TorchScript trace records
# a Python call that torch.jit.save refuses, and torch.fx cannot call it on a proxy. An
# operator registered through torch.library is recorded as itself and carries its backward
# formula into the program, and a process that loads the program finds it again once
# gradrev.backends.torch is imported. A custom operator may not return a view of its input,
# so its kernel copies: it is used only while exporting or tracing, never eagerly or under
# torch.compile. See docs/deployment.md.
# The operators are public (torch.ops.gradrev.*) and run inside exported programs and fx
# graphs with whatever λ their caller passes, so each kernel checks λ as reverse does: the
# real kernel at every call, the fake one while a program is exported or compiled.
@torch.library.custom_op("gradrev::reverse", mutates_args=())
def _reverse_op(x: torch.Tensor, lambda_: float) -> torch.Tensor:
    """``gradrev.reverse`` with a Python-float λ, as a PyTorch operator."""
    _check_op_call(x, lambda_, "torch.ops.gradrev.reverse")
    return x.clone()


@torch.library.custom_op("gradrev::reverse_lambda_tensor", mutates_args=())
def _reverse_lambda_tensor_op(x: torch.Tensor, lambda_: torch.Tensor) -> torch.Tensor:
    """``gradrev.reverse`` with a 0-d tensor λ, as a PyTorch operator."""
    _check_op_call(x, lambda_, "torch.ops.gradrev.reverse_lambda_tensor")
    return x.clone()


def _op_fake(x: torch.Tensor, lambda_: Any) -> torch.Tensor:
    if isinstance(lambda_, (float, torch.Tensor)):  # not a symbolic float
        _check_op_lambda(x, lambda_, f"torch.ops.gradrev.{_op_name(lambda_)}")
    return torch.empty_like(x)


def _op_name(lambda_: Any) -> str:
    return "reverse_lambda_tensor" if isinstance(lambda_, torch.Tensor) else "reverse"


def _check_op_call(x: torch.Tensor, lambda_: Any, where: str) -> None:
    _check_op_lambda(x, lambda_, where)
    # private API [torch-forward-ad-level]: docs/private-apis.md
    if forward_ad._current_level >= 0:
        # torch.func.jvp and forward_ad.dual_level reach the kernel with the tangent already
        # stripped: the operator has no forward-mode formula, and would give a zero tangent.
        raise RuntimeError(
            f"{where}: forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) through "
            "gradrev's operator, as recorded in an exported program, fx graph or TorchScript "
            "trace, is not supported: it would give a zero tangent, not -λ·t. Call "
            "gradrev.reverse in eager PyTorch for forward mode"
        )


def _check_op_lambda(x: torch.Tensor, lambda_: Any, where: str) -> None:
    """The operator's λ, checked as gradrev.reverse checks it."""
    if not isinstance(lambda_, torch.Tensor):
        _lambda.as_float(lambda_, where, _FRAMEWORK)
        return
    if lambda_.ndim != 0:
        raise _lambda.not_scalar(lambda_, where, _FRAMEWORK)
    if not lambda_.is_floating_point():
        raise _lambda.not_floating(lambda_, where, _FRAMEWORK)
    if lambda_.device != x.device and lambda_.device.type != "cpu":
        raise _wrong_device(lambda_, x, where)


for _op in (_reverse_op, _reverse_lambda_tensor_op):
    _op.register_fake(_op_fake)
    # The same saved state and backward as GradReverse, so the bits are the same too.
    _op.register_autograd(GradReverse.backward, setup_context=GradReverse.setup_context)


def _recorded(x: torch.Tensor, lambda_: float | torch.Tensor) -> torch.Tensor:
    """The reversal as an operator call, for programs that record operators (see above)."""
    if isinstance(lambda_, torch.Tensor):
        return torch.ops.gradrev.reverse_lambda_tensor(x, lambda_)  # type: ignore[no-any-return]
    return torch.ops.gradrev.reverse(x, lambda_)  # type: ignore[no-any-return]


def _is_exporting() -> bool:
    """Whether torch.export is tracing. torch.compiler.is_exporting is new in torch 2.7; on
    older torch, export cannot be told apart from torch.compile here (docs/install.md)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return is_exporting is not None and bool(is_exporting())


def _onnx_exporting() -> bool:
    # ONNX programs are inference-only, where the reversal is the identity; both ONNX
    # exporters already translate the autograd.Function's forward, but not the operator.
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and bool(onnx.is_in_onnx_export())


def _scale(grad: torch.Tensor, lambda_: float | torch.Tensor) -> torch.Tensor:
    """``grad * -lambda_`` with PyTorch's opmath rounding, for a float or a 0-d tensor λ."""
    if not isinstance(lambda_, torch.Tensor):
        return grad * -lambda_  # the canonical definition
    # A 0-d tensor on an accelerator is rounded to grad's dtype before the multiply;
    # a Python float is not. Spell out opmath so both forms of λ give the same bits.
    if grad.dtype in _REDUCED:
        return (grad.float() * -lambda_.float()).to(grad.dtype)
    # dtype.is_complex, not grad.is_complex(): torch.compile in torch 2.6 rejects the call.
    real = grad.real.dtype if grad.dtype.is_complex else grad.dtype
    return grad * -lambda_.to(real)


def _check_lambda(lambda_: Any, x: torch.Tensor) -> float | torch.Tensor:
    if isinstance(lambda_, torch.Tensor):
        if lambda_.ndim != 0:
            raise _lambda.not_scalar(lambda_, "gradrev.reverse", _FRAMEWORK)
        if not lambda_.is_floating_point():
            raise _lambda.not_floating(lambda_, "gradrev.reverse", _FRAMEWORK)
        # Checked here: a λ on another device would otherwise fail only at backward.
        if lambda_.device != x.device and lambda_.device.type != "cpu":
            raise _wrong_device(lambda_, x, "gradrev.reverse")
        return lambda_.detach()
    if torch.compiler.is_compiling() and _is_numpy(lambda_):
        # TorchDynamo hands a NumPy scalar to the trace as a 0-d array (a tensor in
        # disguise), which fails the numbers.Real test that the same scalar passes eagerly.
        return torch.as_tensor(lambda_, dtype=torch.float64, device=x.device)
    return _lambda.as_float(lambda_, "gradrev.reverse", _FRAMEWORK)


def _check_lambda_traced(lambda_: Any, x: torch.Tensor) -> float | torch.Tensor:
    """``_check_lambda`` under TorchDynamo. An error raised while tracing reaches the user of
    ``torch.compile(fullgraph=True)`` as "Unsupported: Observed exception", with gradrev's
    message only in its debug context; a failed ``torch._assert`` surfaces its own text."""
    try:
        return _check_lambda(lambda_, x)
    except (TypeError, ValueError) as e:
        # private API [torch-assert]: docs/private-apis.md
        torch._assert(False, str(e))  # type: ignore[no-untyped-call]
        raise


def _wrong_device(lambda_: torch.Tensor, x: torch.Tensor, where: str) -> ValueError:
    return ValueError(
        f"{where}: lambda_ is on device {lambda_.device}, but x is on device "
        f"{x.device}; accepted: a λ on x's device, or a 0-d CPU tensor (any x)"
    )


def _is_numpy(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray) and value.ndim == 0


def _not_dense(x: torch.Tensor) -> TypeError:
    kind = (
        "nested" if x.is_nested else f"sparse {str(x.layout).removeprefix('torch.sparse_').upper()}"
    )
    return TypeError(
        f"gradrev.reverse: x must be a dense (strided, not nested) torch.Tensor, got a {kind} "
        f"torch.Tensor (layout {x.layout}); reverse x.to_dense(), or the nested tensor's "
        "values()"
    )


# -- What the tools and schedules read (gradrev/_registry.py): devices, schedule math --


def devices() -> list[str]:
    """The devices PyTorch sees, CPU first."""
    gpus = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return ["cpu", *gpus]


def schedule_math() -> ScheduleMath:
    return ScheduleMath(
        lambda s: s.to(torch.float32),
        lambda p: p.clamp(0.0, 1.0),
        torch.exp,
        lambda s: s.clamp(min=0.0),
    )
