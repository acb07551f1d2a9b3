"""``gradrev demo``: the DANN inter-twinning moons experiment (Ganin et al., JMLR 2016, §5.1)
in every installed framework, from the same weights and the same batches; ``--task digits``
runs the paper's MNIST → MNIST-M experiment on scikit-learn's digits (``convnet``).

The source domain is two moons with labels; the target is the same distribution rotated
35°, without labels. Each backend trains a source-only model and a DANN model
(feature extractor → label head; feature extractor → GradientReversal → domain head), with
λ from [gradrev.schedules.dann][], stepped once per batch through the layer.

This module imports neither NumPy nor a framework, so that ``gradrev --help`` works in any
install; the training lives in ``problem`` and the per-framework modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradrev import _registry

# The built-in frameworks that have their trainers here (<name>.py and digits_<name>.py).
BACKENDS = tuple(
    fw.name for fw in _registry.BUILTINS if (Path(__file__).parent / f"{fw.name}.py").exists()
)
LAYERS = (("f1", 2, "h"), ("f2", "h", "h"), ("label", "h", 2), ("d1", "h", "h"), ("d2", "h", 1))


@dataclass(frozen=True)
class Config:
    """Hyperparameters; the defaults finish in well under 2 minutes on 2 CPU cores."""

    seeds: int = 5
    steps: int = 1000
    batch_size: int = 32
    hidden: int = 32
    lr: float = 0.005
    lambda_max: float = 1.0
    gamma: float = 10.0
    points: int = 300
    noise: float = 0.1
    rotation: float = 35.0
    dtype: str = "float64"


@dataclass(frozen=True)
class DigitsConfig:
    """Hyperparameters of ``gradrev demo --task digits`` (the same for every framework);
    the defaults ran all four frameworks in float64 in 254 s on 2 CPU cores at load average
    about 5 (docs/demo.md)."""

    seeds: int = 3
    steps: int = 400
    batch_size: int = 32
    lr: float = 0.03
    momentum: float = 0.9
    lambda_max: float = 1.0
    gamma: float = 10.0
    channels: tuple[int, int] = (4, 8)
    hidden: int = 64
    upsample: int = 2  # nearest-neighbour factor: 2 trains on 16×16 images
    data_seed: int = 0
    batchnorm: bool = True
    normalize: bool = True  # per-image input normalisation
    dtype: str = "float64"


def installed_backends() -> list[str]:
    """The backends whose frameworks (and layer libraries) are installed."""
    return [
        fw.name
        for fw in _registry.BUILTINS
        if all(_registry.importable(m) for m in (fw.module, *fw.layer_modules))
    ]
