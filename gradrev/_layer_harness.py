"""The layer conformance harness: the layer contract (docs/semantics.md, "Layers") as checks
that any GradientReversal layer can run through a small adapter, as backends run `certify`.

Re-exported from `gradrev.testing`: [LayerAdapter][gradrev.testing.LayerAdapter],
[certify_layer][gradrev.testing.certify_layer], [run_layer_check][gradrev.testing.run_layer_check]
and [LAYER_CHECKS][gradrev.testing.LAYER_CHECKS]. gradrev runs it on its own layers (torch,
NNX, Linen, Keras on three backends, MLX) in tests/test_layers.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gradrev import _reference, schedules

MAX_STEPS = 2**31 - 1
DTYPES = ("float16", "bfloat16", "float32", "float64")
GRID_LAMBDAS = (0.3, -0.7, 1e-3, 1 / 3, 2.5, 1e5)
X = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -4.0]], np.float32)
G = np.array([[0.3, -1.0, 2.0], [1e-3, 5.0, -0.7]], np.float32)


class LayerAdapter(Protocol):
    """What the harness needs to drive one layer kind, in NumPy terms.

    A stateless layer (``has_state = False``, λ passed per call) needs only the first five
    methods; the lifecycle and restore checks are then skipped. ``SETUPS`` names the
    precision set-ups (``made_under``, ``context``, ``supports``) of the precision grid.
    """

    name: str
    has_state: bool
    SETUPS: tuple[str, ...]

    def make(self, lambda_: float | None = None, schedule: Any = None) -> Any:
        """A new layer, built as ``GradientReversal(lambda_, schedule=schedule)``."""

    def grad(self, layer: Any, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The gradient through ``layer`` at ``x`` for the cotangent ``g``."""

    def get(self, layer: Any) -> float:
        """λ, as ``layer.lambda_`` reads it."""

    def set(self, layer: Any, value: float) -> None:
        """``layer.lambda_ = value``."""

    def made_under(self, setup: str, lambda_: float) -> Any:
        """A layer holding ``lambda_`` made (and cast) under a precision set-up."""

    def context(self, setup: str) -> Any:
        """A context manager the set-up's gradients are taken in."""

    def supports(self, setup: str, dtype: str) -> bool:
        """Whether inputs of ``dtype`` exist under the set-up."""

    def forward(self, layer: Any, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The forward now; returns the backward, to be run later with a cotangent."""

    def step(self, layer: Any) -> float:
        """``layer.step()``."""

    def steps(self, layer: Any) -> int:
        """The layer's step count."""

    def restore_into(self, layer: Any, target: Any) -> Any:
        """Save ``layer`` as users do, load it into ``target``; return the restored layer."""

    def load_values(self, layer: Any, lam: Any, steps: Any) -> None:
        """Write λ and the step count through the framework's load path."""


class LayerCheckError(AssertionError):
    """A layer check failed; the message says what differed."""


@dataclass
class LayerCertificate:
    """The outcome of each check: ``results[name]`` is None if it passed, else why not."""

    layer: str
    results: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(why is None or why.startswith("skipped") for why in self.results.values())

    def __str__(self) -> str:
        lines = [f"gradrev layer conformance of {self.layer}:"]
        lines += [f"  {name:<44} {why or 'ok'}" for name, why in self.results.items()]
        return "\n".join(lines)


class _Skip(Exception):
    pass


def certify_layer(adapter: LayerAdapter, *, strict: bool = True) -> LayerCertificate:
    """Run every check in [LAYER_CHECKS][gradrev.testing.LAYER_CHECKS] against a layer kind.

    Raises [LayerCheckError][gradrev.testing.LayerCheckError] listing the failures if
    ``strict`` (the default); otherwise only reports them.
    """
    certificate = LayerCertificate(adapter.name)
    for name in LAYER_CHECKS:
        try:
            applies = run_layer_check(name, adapter)
        except AssertionError as e:
            certificate.results[name] = str(e) or "failed"
        except Exception as e:  # the layer itself raised where the contract says it must not
            certificate.results[name] = f"raised {e!r}"
        else:
            certificate.results[name] = None if applies else "skipped: a stateless layer"
    if strict and not certificate.ok:
        raise LayerCheckError(str(certificate))
    return certificate


def run_layer_check(name: str, adapter: LayerAdapter) -> bool:
    """Run one check; False if it does not apply (a stateless layer), raises if it fails."""
    try:
        LAYER_CHECKS[name](adapter)
    except _Skip:
        return False
    return True


def _expect(ok: Any, what: str) -> None:
    if not ok:
        raise LayerCheckError(what)


def _raises(error: type[Exception], match: str, call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except error as e:
        _expect(re.search(match, str(e)), f"{what}: {error.__name__} without {match!r}: {e}")
        return
    except Exception as e:
        raise LayerCheckError(f"{what}: wanted {error.__name__}, got {e!r}") from e
    raise LayerCheckError(f"{what}: accepted, wanted {error.__name__} matching {match!r}")


def _same(got: np.ndarray, g: np.ndarray, lam: float, what: str) -> None:
    same = _reference.same_bits(np.asarray(got), _reference.reverse_grad(g, lam))
    _expect(same.all(), f"{what}: {int((~same).sum())} of {same.size} elements differ from λ={lam}")


def _stateful(adapter: LayerAdapter) -> None:
    if not adapter.has_state:
        raise _Skip("stateless: λ is passed per call, there is no step or restore")


# -- The checks: forward, precision, errors --------------------------------------------------


def check_backward_is_minus_lambda(a: LayerAdapter) -> None:
    _same(a.grad(a.make(0.3), X, G), G, 0.3, "λ=0.3")
    layer = a.make(0.5)
    a.set(layer, -2.0)
    _expect(a.get(layer) == -2.0, f"set λ=-2.0, read {a.get(layer)}")
    _same(a.grad(layer, X, G), G, -2.0, "after set")
    other = a.make(2.0)
    _expect(a.get(other) == 2.0, "two layers share λ")


def check_precision_grid(a: LayerAdapter) -> None:
    rng = np.random.default_rng(0)
    for setup in a.SETUPS:
        for dtype in DTYPES:
            if not a.supports(setup, dtype):
                continue
            values = rng.uniform(0.1, 10.0, 64) * rng.choice([-1.0, 1.0], 64)
            x = values.reshape(8, 8).astype(_reference.dtype(dtype))
            with a.context(setup):
                for v in GRID_LAMBDAS:
                    _same(a.grad(a.made_under(setup, v), x, x), x, v, f"{setup}, {dtype}")


def check_bad_lambda_is_refused(a: LayerAdapter) -> None:
    _raises(ValueError, "must be finite", lambda: a.make(float("nan")), "make(nan)")
    _raises(ValueError, "overflows a float64", lambda: a.make(10**400), "make(10**400)")
    _raises(TypeError, "lambda_ must be", lambda: a.make("0.5"), "make('0.5')")  # type: ignore[arg-type]
    if a.has_state:
        _raises(TypeError, "schedule must be", lambda: a.make(schedule=0.5), "schedule=0.5")
        layer = a.make(0.5)
        _raises(ValueError, "must be finite", lambda: a.set(layer, float("inf")), "λ = inf")
        _expect(a.get(layer) == 0.5, "a refused λ changed the layer")


# -- The lifecycle ---------------------------------------------------------------------------


def check_only_step_moves_the_schedule(a: LayerAdapter) -> None:
    _stateful(a)
    dann = schedules.dann(total_steps=10)
    layer = a.make(schedule=dann)
    a.grad(layer, X, G)
    _expect(a.steps(layer) == 0 and a.get(layer) == 0.0, "a forward moved the schedule")
    for n in range(1, 4):
        _expect(a.step(layer) == dann(n), f"step {n} is not schedule({n})")
    _raises(ValueError, r"got both lambda_=0\.5", lambda: a.make(0.5, schedule=dann), "both")
    _raises(ValueError, "follows its schedule", lambda: a.set(layer, 0.5), "set λ on a schedule")


def check_backward_uses_its_forward_lambda(a: LayerAdapter) -> None:
    _stateful(a)
    layer = a.make(schedule=schedules.linear(0.5, 1.0, 10))
    finish = a.forward(layer, X)
    a.step(layer)
    _same(finish(G), G, 0.5, "stepped between forward and backward")


def check_failing_step_changes_nothing(a: LayerAdapter) -> None:
    _stateful(a)
    bad = iter([float("nan"), "0.5"])
    layer = a.make(schedule=lambda step: next(bad) if step == 2 else 0.25 * step)
    a.step(layer)
    for error, match in [(ValueError, "must be finite"), (TypeError, "must return a real")]:
        _raises(error, match, lambda: a.step(layer), "a bad schedule value")
        _expect(a.steps(layer) == 1 and a.get(layer) == 0.25, "a failing step moved the layer")


def check_schedule_attached_later_sets_lambda(a: LayerAdapter) -> None:
    _stateful(a)
    dann = schedules.dann(total_steps=100)
    layer = a.make()
    a.step(layer)
    layer.schedule = dann
    _expect(a.get(layer) == dann(1), f"λ = {a.get(layer)} after attaching, not schedule(1)")
    _same(a.grad(layer, X, G), G, dann(1), "after attaching")


def check_steps_never_wrap(a: LayerAdapter) -> None:
    _stateful(a)
    layer = a.make(schedule=schedules.linear(0.0, 1.0, 10))
    a.load_values(layer, 1.0, MAX_STEPS)
    _raises(OverflowError, r"2\*\*31 - 1", lambda: a.step(layer), "step() at 2**31 - 1")
    _expect(a.steps(layer) == MAX_STEPS and a.get(layer) == 1.0, "a refused step moved it")


# -- Restore ---------------------------------------------------------------------------------


def check_restore_continues_the_saved_run(a: LayerAdapter) -> None:
    _stateful(a)
    dann = schedules.dann(total_steps=100)
    saved = a.make(schedule=dann)
    for _ in range(5):
        a.step(saved)
    for target in (a.make(), a.make(schedule=schedules.linear(0.0, 1.0, 10))):
        restored = a.restore_into(saved, target)
        _expect(a.get(restored) == dann(5) and a.steps(restored) == 5, "λ or steps not restored")
        _expect(a.step(restored) == dann(6), "the restored layer does not continue its schedule")
    restored = a.restore_into(a.make(0.7), a.make(schedule=dann))
    _expect(restored.schedule is None and a.step(restored) == 0.7, "constant λ not restored")


def check_unsaveable_schedule_is_refused(a: LayerAdapter) -> None:
    _stateful(a)
    layer = a.make(schedule=lambda step: 0.1 * step)
    try:
        restored = a.restore_into(layer, a.make())
    except TypeError as e:
        _expect("cannot save the schedule" in str(e), f"unclear error: {e}")
        return
    # A framework with no save hook (nnx.state): the restored layer must refuse to step.
    _raises(TypeError, "gradrev cannot save", lambda: a.step(restored), "unsaved schedule")


def check_loading_bad_values_is_refused(a: LayerAdapter) -> None:
    _stateful(a)
    layer = a.make(0.5)
    for bad in (float("nan"), float("inf")):
        _raises(ValueError, "must be finite", lambda: a.load_values(layer, bad, 0), f"λ={bad}")
        _expect(a.get(layer) == 0.5, f"a refused λ={bad} changed the layer")
    _same(a.grad(layer, X, G), G, 0.5, "after refused loads")
    _raises(ValueError, "whole number", lambda: a.load_values(layer, 0.5, -1), "steps=-1")


LAYER_CHECKS: dict[str, Callable[[Any], None]] = {
    "backward_is_minus_lambda": check_backward_is_minus_lambda,
    "precision_grid": check_precision_grid,
    "bad_lambda_is_refused": check_bad_lambda_is_refused,
    "only_step_moves_the_schedule": check_only_step_moves_the_schedule,
    "backward_uses_its_forward_lambda": check_backward_uses_its_forward_lambda,
    "failing_step_changes_nothing": check_failing_step_changes_nothing,
    "schedule_attached_later_sets_lambda": check_schedule_attached_later_sets_lambda,
    "steps_never_wrap": check_steps_never_wrap,
    "restore_continues_the_saved_run": check_restore_continues_the_saved_run,
    "unsaveable_schedule_is_refused": check_unsaveable_schedule_is_refused,
    "loading_bad_values_is_refused": check_loading_bad_values_is_refused,
}
