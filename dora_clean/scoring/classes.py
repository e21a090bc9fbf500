"""Class-boundness: how well the class folders explain a flagged set (Goodman and Kruskal's lambda)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["CLASS_LAMBDA", "LAMBDA_WEIGHT", "class_codes", "class_lambda", "has_classes"]


#: A score whose flagged set the class folders explain at least this well
#: (:func:`class_lambda`) sees class content, not an artifact: chosen on the planted benchmark
#: (0.3 and 0.7 did about as well).
CLASS_LAMBDA = 0.5


#: Below :data:`CLASS_LAMBDA`, a score's class lambda counts against its separation with this
#: weight when the seeds compete: a score the classes partly explain needs a cleaner split to
#: win. Chosen on the planted benchmark, over the weights 0, 1/2 and 1 (docs/benchmark.md).
LAMBDA_WEIGHT = 0.5


def class_codes(classes: Sequence[str | None]) -> np.ndarray:
    """Each image's class folder as an integer [N] (None, an image outside the folders, is a class too)."""
    return np.unique(np.asarray([str(c) for c in classes]), return_inverse=True)[1]


def has_classes(codes: np.ndarray | None) -> bool:
    """Whether the images' class folders (integers, or None) can be asked: two classes or more."""
    return codes is not None and len(np.unique(codes)) >= 2


def class_lambda(flagged: np.ndarray, classes: Sequence[str | None] | np.ndarray, draws: int = 8) -> float:
    """How well the class folders predict a flagged set, beyond chance (0-1).

    Goodman and Kruskal's lambda: the share of the errors in guessing
    flagged / unflagged that knowing each image's class saves; 0 where every
    class has the same share flagged (an artifact spread over the classes), 1
    where each class is all flagged or all unflagged (the content of some
    classes). Small classes save errors by chance (folders of one image
    each would give 1 for any flagged set), so the result is corrected
    for the mean lambda of ``draws`` random flagged sets of the same size
    (the same draws every time): (lambda - chance) / (1 - chance).
    ``classes``: the class folders, or their :func:`class_codes`.
    """
    flagged = np.asarray(flagged, dtype=bool)
    which = np.asarray(classes)
    if which.dtype.kind not in "iu":
        which = class_codes(classes)
    size = np.bincount(which)
    n, k = len(flagged), int(flagged.sum())
    guess = min(k, n - k)
    if guess == 0:
        return 1.0

    def lam(f: np.ndarray) -> float:
        per_class = np.bincount(which, weights=f, minlength=len(size))
        return 1 - np.minimum(per_class, size - per_class).sum() / guess

    rng = np.random.default_rng(0)
    chance = float(np.mean([lam(rng.permutation(flagged)) for _ in range(draws)]))
    return 0.0 if chance >= 1 else float(max(0.0, (lam(flagged) - chance) / (1 - chance)))
