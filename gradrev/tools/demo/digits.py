"""Digits → digits-M: the MNIST → MNIST-M experiment of the DANN paper, rebuilt from the data
that ships with scikit-learn, so that it runs offline.

The source is ``sklearn.datasets.load_digits`` (1,797 handwritten 8×8 digits, 0–16), scaled to
[0, 1] and replicated to three channels. The target is digits-M, made with the MNIST-M recipe
(Ganin et al., JMLR 2016, §5.2.2): each digit is blended over a colour patch cut from a
photograph, per channel ``|digit − patch|``. The photographs are the two that
``sklearn.datasets.load_sample_images`` ships; a patch is a random 32×32 crop averaged down
to 8×8 in 4×4 blocks, so that it keeps the photograph's texture at the digit's scale.

Example:
    ```python
    from gradrev.tools.demo.digits import digits_m

    data = digits_m(seed=0)
    data.source_train.shape, data.target_test.shape  # ((1198, 8, 8, 3), (599, 8, 8, 3))
    ```
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP = 32  # the photograph patch before averaging down to the digit's 8×8
SIZE = 8


@dataclass(frozen=True)
class DigitsM:
    """Images (n, 8, 8, 3) in [0, 1], float64, and labels (n,) int64.

    The target's labels are for evaluation only: a domain-adaptation method never trains on
    them. ``target_train`` holds the same digits as ``source_train``, as MNIST-M's training
    set holds MNIST's.
    """

    source_train: np.ndarray
    source_train_labels: np.ndarray
    target_train: np.ndarray
    target_train_labels: np.ndarray
    source_test: np.ndarray
    source_test_labels: np.ndarray
    target_test: np.ndarray
    target_test_labels: np.ndarray


def split() -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/test split: every third image (index 2, 5, 8, ...) is a test image."""
    index = np.arange(1797)
    return index[index % 3 != 2], index[index % 3 == 2]


def patches(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` colour patches (n, 8, 8, 3) in [0, 1] from the shipped photographs."""
    from sklearn.datasets import load_sample_images  # type: ignore[import-untyped]

    photos = [np.asarray(p, np.float64) / 255.0 for p in load_sample_images().images]
    which = rng.integers(0, len(photos), n)
    out = np.empty((n, SIZE, SIZE, 3))
    for k in range(n):
        photo = photos[which[k]]
        top = rng.integers(0, photo.shape[0] - CROP + 1)
        left = rng.integers(0, photo.shape[1] - CROP + 1)
        crop = photo[top : top + CROP, left : left + CROP]
        b = CROP // SIZE
        out[k] = crop.reshape(SIZE, b, SIZE, b, 3).mean(axis=(1, 3))
    return out


def digits_m(seed: int = 0) -> DigitsM:
    """The source digits and their digits-M blend; the same ``seed`` gives the same arrays."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = np.repeat((digits.images / 16.0)[..., None], 3, axis=3)
    target = np.abs(source - patches(len(source), np.random.default_rng(seed)))
    labels = digits.target.astype(np.int64)
    train, test = split()
    return DigitsM(
        source[train],
        labels[train],
        target[train],
        labels[train],
        source[test],
        labels[test],
        target[test],
        labels[test],
    )
