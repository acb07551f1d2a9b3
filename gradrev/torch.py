"""PyTorch layer: ``gradrev.torch.GradientReversal``.

```python
import torch
from gradrev import schedules
from gradrev.torch import GradientReversal

grl = GradientReversal(schedule=schedules.dann(total_steps=100))
grl.step()
assert round(grl.lambda_, 4) == 0.0500
```
"""

from collections.abc import Callable
from typing import Any

try:
    import torch
    from torch.autograd import forward_ad
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    from gradrev._install import missing

    raise missing(__name__, "torch", e) from e

from gradrev import _lambda, _layer
from gradrev.backends import torch as backend

__all__ = ["GradientReversal"]

_WHERE = "gradrev.torch.GradientReversal"


class GradientReversal(_layer.LambdaState, torch.nn.Module):
    """Identity forward, gradient times −λ backward, with λ held in a float64 buffer.

    Gives the bits of `gradrev.reverse(x, v)` for the Python float v = λ, in every input
    dtype, whatever the module is cast to: `.half()`, `.bfloat16()`, `.to(dtype)`, precision
    plugins and FSDP's `buffer_dtype` move λ but never round it. The state dict holds
    tensors only (safetensors can save it): λ (`lam`, float64 of shape (1,)), the step count
    (`steps`) and the schedule's config (`schedule_config`, bytes); loading it restores all
    three, checked as the constructor checks them. Changing λ never recompiles
    `torch.compile`, and a backward always uses the λ its forward saw.

    Args:
        lambda_: the constant λ (default 1.0). Not allowed together with `schedule`.
        schedule: a `gradrev.schedules` object or a callable `step -> λ`; λ starts at
            `schedule(0)` and each `step()` moves it on.
    """

    # Annotations evaluated at import (no `from __future__ import annotations` here): the
    # TorchScript compiler reads them, and cannot read 'torch.Tensor' as a string.
    lam: torch.Tensor
    steps: torch.Tensor
    schedule_config: torch.Tensor
    _where = _WHERE
    # The properties are Python (they check λ): TorchScript compiles forward only.
    __jit_unused_properties__ = ("lambda_", "schedule")

    def __init__(
        self, lambda_: float | None = None, *, schedule: Callable[[int], Any] | None = None
    ) -> None:
        torch.nn.Module.__init__(self)
        value = self._init_state(lambda_, schedule)
        self._lambda_init = value
        self._value = value  # λ as a Python float: what a wrapper's cast of the buffer rounded
        # Shape (1,), not (): TorchDynamo treats a 0-d float64 input like a Python float and
        # recompiles once its value changes.
        self.register_buffer("lam", torch.tensor([value], dtype=torch.float64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("schedule_config", torch.zeros(_layer.CONFIG_BYTES, dtype=torch.uint8))
        self._put_schedule(schedule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The backward must use this forward's λ even if step() or `lambda_ =` changes it
        # before backward() runs: they put a new tensor in the buffer, never write into the
        # one a backward saved. The copy is rounded to the dtype the backward computes in
        # (float32 below float64), exactly as PyTorch rounds a Python float.
        # torch.jit.script compiles only this branch (backend.reverse is Python dispatch):
        # the operator that torch.export and torch.jit.trace record too.
        if torch.jit.is_scripting():  # type: ignore[attr-defined]
            wide = x.dtype in (torch.float64, torch.complex128)
            copy = self.lam.to(torch.float64 if wide else torch.float32, copy=True).view(())
            return torch.ops.gradrev.reverse_lambda_tensor(x, copy)  # type: ignore[no-any-return]
        # The buffer itself, not `self.lam`: nn.Module.__getattr__ costs about 1 µs a call,
        # a sixth of the eager forward (issue 23).
        # private API [torch-module-buffers]: docs/private-apis.md
        # (No mypy ignore comment on these lines: TorchScript parses such comments as types.)
        lam = self._buffers["lam"]
        assert lam is not None  # registered in __init__
        if lam.dtype != torch.float64:  # a wrapper cast it behind our back (FSDP1's buffer_dtype)
            lam = self._uncast(lam)
        elif _plain_eager(x) and lam.is_cpu and not lam.is_inference():
            # Plain eager PyTorch: λ as the Python float the buffer holds, read once per new
            # λ. The same bits (the contract above), and the forward's λ is the float the
            # backward keeps, without a tensor copy per call (issue 23: the layer's cost).
            return backend.reverse_eagerly(x, self._eager_float(lam))
        wide = x.dtype in (torch.float64, torch.complex128)
        lam = lam.to(torch.float64 if wide else torch.float32, copy=True).view(())
        return backend.reverse(x, lam)

    def _eager_float(self, lam: torch.Tensor) -> float:
        """``float(lam)``, cached while the buffer is the same tensor at the same version (an
        in-place write, as ``load_state_dict`` makes, bumps the version)."""
        cached = self.__dict__.get("_eager_lambda")
        # private API [torch-tensor-version]: docs/private-apis.md
        if cached is None or cached[0] is not lam or cached[1] != lam._version:
            cached = (lam, lam._version, float(lam))
            self.__dict__["_eager_lambda"] = cached
        return cached[2]

    # -- storage for the shared state machine -----------------------------------------------
    def _get_lambda(self) -> float:
        return self._trusted(float(self.lam))

    def _put_lambda(self, value: float) -> None:
        # A new tensor, not fill_(): a compiled graph may have saved the old one for its
        # backward, and an in-place write would make that backward fail (or see the new λ).
        # private API [torch-module-buffers]: docs/private-apis.md
        lam = self._buffers["lam"]
        device = lam.device if lam is not None else None
        self._buffers["lam"] = torch.tensor([value], dtype=torch.float64, device=device)
        self._value = value

    def _get_steps(self) -> int:
        return int(self.steps)

    @torch.no_grad()
    def _put_steps(self, steps: int) -> None:
        self.steps.fill_(steps)

    @torch.no_grad()
    def _put_schedule(self, schedule: Any) -> None:
        data = _layer.encode(schedule, _WHERE)
        self.schedule_config.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self._schedule = schedule

    # -- casts, resets, state dicts ------------------------------------------------------------
    def _trusted(self, value: float) -> float:
        """λ read from the buffer; a rounding of the Python λ (a wrapper cast it) reads as λ."""
        if _layer.is_rounding_of(value, self._value):
            return self._value
        self._value = value
        return value

    def _uncast(self, lam: torch.Tensor) -> torch.Tensor:
        value = float(lam)
        if not _layer.is_rounding_of(value, self._value):
            raise ValueError(
                f"{_WHERE}: λ must be held in float64, got a {lam.dtype} λ = {value!r} "
                "(from functional_call or a rewritten buffer); pass float64"
            )
        exact = torch.tensor([self._value], dtype=torch.float64, device=lam.device)
        # private API [torch-module-buffers]: docs/private-apis.md
        if lam is self._buffers.get("lam"):
            self._buffers["lam"] = exact  # FSDP1 rewrote .data: put λ back once
        return exact

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Back to the initial λ and step 0 (e.g. after `to_empty()` from the meta device)."""
        self.steps.zero_()
        schedule = self.schedule
        if schedule is None:
            self._put_lambda(self._lambda_init)
        else:
            self._put_schedule(schedule)
            self._put_lambda(_layer.lambda_at(schedule, 0, _WHERE))

    # private API [torch-module-apply]: docs/private-apis.md
    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        # Module casts (.half(), .bfloat16(), .to(dtype), Lightning's precision plugins) reach
        # buffers only through this private hook. The state follows the device but keeps its
        # dtypes, or a bfloat16 cast would turn 0.3 into 0.30078125 and 1e5 into inf.
        # private API [torch-module-buffers]: docs/private-apis.md
        before = {name: self._buffers[name] for name in ("lam", "steps", "schedule_config")}
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        for name, old in before.items():
            # private API [torch-module-buffers]: docs/private-apis.md
            new = self._buffers[name]
            if old is not None and new is not None and new.dtype != old.dtype:
                self._buffers[name] = old.to(new.device)
        return self

    # private API [torch-load-from-state-dict]: docs/private-apis.md
    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Every load (assign=True included) goes through the constructor's checks, and
        # restores λ, the step count and the schedule together: all are checked before any
        # is written, so a refused load changes nothing.
        lam, steps, config = (
            _restored_tensor(state_dict, prefix, key) for key in ("lam", "steps", "schedule_config")
        )
        extra = state_dict.pop(prefix + "_extra_state", None)  # gradrev 0.1 saved a dict
        value = schedule = None
        if lam is not None:
            value = _layer.restored_lambda(_one_number(lam, "lam"), "float64", _WHERE)
            lam64 = torch.tensor([value], dtype=torch.float64, device=lam.device)
            state_dict[prefix + "lam"] = lam64  # gradrev 0.1 saved a 0-d float32 λ
        if steps is not None:
            count = _layer.restored_steps(_one_number(steps, "steps"), _WHERE)
            state_dict[prefix + "steps"] = torch.tensor(count, device=steps.device)
        if config is None and lam is not None:  # a checkpoint from before schedule_config
            saved = extra.get("schedule") if isinstance(extra, dict) else None
            encoded = _layer.encode(_layer.schedule_from_config(saved), _WHERE)
            config = torch.frombuffer(bytearray(encoded), dtype=torch.uint8)
        if config is not None:
            data = _config_bytes(config)
            schedule = _layer.decode(data.numpy().tobytes(), _WHERE)
            state_dict[prefix + "schedule_config"] = data.to(config.device)
        super()._load_from_state_dict(state_dict, prefix, *args)
        if config is not None:
            self._schedule = schedule
        if value is not None:
            self._value = value

    # private API [torch-save-to-state-dict]: docs/private-apis.md
    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        _layer.check_saveable(self.schedule)  # refuses a callable it could not restore
        super()._save_to_state_dict(destination, prefix, keep_vars)
        lam = self.lam
        if not lam.is_meta and (lam.dtype != torch.float64 or float(lam) != self._value):
            value = self._get_lambda()  # a wrapper's cast saves λ, not its rounding
            destination[prefix + "lam"] = torch.tensor([value], dtype=torch.float64)

    def extra_repr(self) -> str:
        if self.lam.is_meta:  # deferred initialization: no values yet
            return f"lambda_=<meta>, schedule={self._schedule!r}"
        return f"lambda_={self.lambda_:.6g}, steps={int(self.steps)}, schedule={self._schedule!r}"


def _restored_tensor(state_dict: dict[str, Any], prefix: str, key: str) -> Any:
    """``state_dict[prefix + key]`` (None when absent): a tensor that holds values."""
    value = state_dict.get(prefix + key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{_WHERE}: the restored {key} must be a torch.Tensor (as state_dict() saves it), "
            f"got {_lambda.describe(value)}"
        )
    if value.is_meta or value.is_complex():
        raise ValueError(
            f"{_WHERE}: the restored {key} must hold real values, got "
            f"{_lambda.describe(value)}{' on the meta device' if value.is_meta else ''}"
        )
    return value


def _one_number(value: torch.Tensor, key: str) -> float:
    if value.numel() != 1:
        raise ValueError(
            f"{_WHERE}: the restored {key} must hold one number, got {_lambda.describe(value)}"
        )
    return float(value.detach().reshape(()).to("cpu", torch.float64))


def _config_bytes(config: torch.Tensor) -> torch.Tensor:
    """The schedule's config as the saved uint8 bytes. A float cast keeps bytes exact, so any
    real dtype holding whole numbers in [0, 255] is read; anything else is refused."""
    config = config.detach().to("cpu")
    wide = config.to(torch.float64)
    if (
        config.shape != (_layer.CONFIG_BYTES,)
        or not bool((wide == wide.floor()).all())
        or not bool(((wide >= 0) & (wide <= 255)).all())
    ):
        raise ValueError(
            f"{_WHERE}: the restored schedule_config must be the {_layer.CONFIG_BYTES} bytes "
            "that state_dict() saves (shape "
            f"({_layer.CONFIG_BYTES},), whole numbers in [0, 255]), got {_lambda.describe(config)}"
        )
    return config.to(torch.uint8)


def _plain_eager(x: Any) -> bool:
    """Whether ``x`` is a tensor outside every trace and transform, where a Python-float λ is
    not baked into a program (torch.compile, export, jit.trace and fx keep the buffer's λ),
    and no saved-tensor hooks run: torch.utils.checkpoint recomputes a saved λ tensor with
    the λ of its recomputation (pinned in the tests), which a float in ctx would not follow."""
    return (
        isinstance(x, torch.Tensor)
        and not _is_compiling()
        and not _is_tracing()
        # private API [torch-forward-ad-level]: docs/private-apis.md
        and forward_ad._current_level < 0
        and not _functorch_active()
        and _saved_tensors_hooks(False) is None
    )


# Bound once: the eager forward calls them on every call.
_is_compiling = torch.compiler.is_compiling
# private API [torch-is-tracing]: docs/private-apis.md
_is_tracing = torch._C._is_tracing
# private API [torch-functorch-active]: docs/private-apis.md
_functorch_active = torch._C._are_functorch_transforms_active
# The innermost torch.autograd.graph.saved_tensors_hooks, None when none is active.
# private API [torch-saved-tensor-hooks]: docs/private-apis.md
_saved_tensors_hooks = torch._C._autograd._top_saved_tensors_default_hooks
