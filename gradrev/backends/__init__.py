"""What a gradrev backend is, and the helpers that give it gradrev's own errors.

A backend is a module with two functions, [Backend][gradrev.backends.Backend]'s
``is_tensor`` and ``reverse``. gradrev ships one per framework (``gradrev.backends.torch``,
``jax``, ``tensorflow``, ``mlx``); another package registers its own under the entry point
group ``gradrev.backends``, named after its framework's top-level module:

```toml
[project.entry-points."gradrev.backends"]
toygrad = "toygrad_gradrev"
```

[gradrev.reverse][] loads it the first time it meets a tensor whose class comes from that
(already imported) module, and [gradrev.testing.certify][] proves that it conforms. Besides
the two functions, a backend module may define what the tools and schedules read (every
built-in does): ``Adapter`` (its conformance adapter, for ``gradrev check``), ``devices()``
(for ``gradrev info``) and ``schedule_math()`` (a [ScheduleMath][gradrev.backends.ScheduleMath]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from gradrev._lambda import as_float, not_floating, not_scalar, wrong_input

__all__ = ["Backend", "ScheduleMath", "as_float", "not_floating", "not_scalar", "wrong_input"]

T = TypeVar("T")


class Backend(Protocol):
    """The face every backend module has (checked by [gradrev.testing][])."""

    def is_tensor(self, x: Any) -> bool:
        """Whether ``x`` is a tensor of this backend's framework, traced ones included."""

    def reverse(self, x: T, lambda_: Any = 1.0) -> T:
        """Identity forward; the gradient is PyTorch's ``g * -lambda_``, bit for bit.

        ``lambda_`` is a finite real Python number or a 0-d floating tensor of the
        framework; anything else is gradrev's own ``TypeError`` or ``ValueError`` (use
        ``as_float``, ``not_scalar``, ``not_floating`` and ``wrong_input``). Integer and
        bool tensors pass through untouched.
        """


class ScheduleMath(NamedTuple):
    """What [gradrev.schedules][] needs to step a schedule with a 0-d integer tensor.

    A backend that has it defines ``schedule_math() -> ScheduleMath``; the schedules also use
    the tensor's ``/``, ``*`` and ``+`` with Python floats.
    """

    to_float32: Callable[[Any], Any]  # the step as a float32 tensor
    clip01: Callable[[Any], Any]  # clipped to [0, 1]
    exp: Callable[[Any], Any]
    clamp_min0: Callable[[Any], Any]  # max(x, 0)
