"""The class folders in scoring: how well they explain a flagged set (Goodman and Kruskal's lambda), and
the layer's activations centred within each class folder (:class:`ClassCentred`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["CLASS_LAMBDA", "ClassCentred", "class_centres", "class_codes", "class_lambda", "class_names",
           "has_classes"]


#: A score whose flagged set the class folders explain at least this well
#: (:func:`class_lambda`) sees class content, not an artifact: chosen on the planted benchmark
#: (0.3 and 0.7 did about as well).
CLASS_LAMBDA = 0.5


def class_codes(classes: Sequence[str | None]) -> np.ndarray:
    """Each image's class folder as an integer [N] (None, an image outside the folders, is a class too)."""
    return np.unique(np.asarray([str(c) for c in classes]), return_inverse=True)[1]


def class_names(classes: Sequence[str | None]) -> list[str]:
    """The class folders in the order of :func:`class_codes` (code k is ``class_names(classes)[k]``)."""
    return [str(c) for c in np.unique(np.asarray([str(c) for c in classes]))]


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


def class_centres(activations: np.ndarray, codes: np.ndarray, block: int = 64) -> np.ndarray:
    """Each neuron's median within each class folder: [K, C] for ``activations`` [N, C] (possibly
    memory-mapped: read a block of columns at a time) and ``codes`` [N] in 0..K-1."""
    codes = np.asarray(codes)
    k = int(codes.max()) + 1 if len(codes) else 0
    out = np.zeros((k, activations.shape[1]))
    members = [np.flatnonzero(codes == c) for c in range(k)]
    for a in range(0, activations.shape[1], block):
        x = np.asarray(activations[:, a : a + block], dtype=np.float64)
        for c, rows in enumerate(members):
            if len(rows):
                out[c, a : a + block] = np.median(x[rows], axis=0)
    return out


class ClassCentred:
    """A layer's pooled activations [N, C] with each neuron's median within the image's class folder
    taken away: what the class folders explain about a neuron is gone, what varies within the classes
    (an artifact spread over them) stays.

    Indexed like the array (``x[rows]``, ``x[:, columns]``, ``x[rows, columns]``: two index arrays or masks
    take rows, then columns, not numpy's pairs), it reads the activations
    (possibly memory-mapped) and centres what it read; nothing of the size of the layer is copied.
    ``centres``: [K, C] from :func:`class_centres` (made here when None).
    """

    def __init__(self, activations: np.ndarray, codes: np.ndarray, centres: np.ndarray | None = None):
        self.activations = activations
        self.codes = np.asarray(codes)
        self.centres = class_centres(activations, self.codes) if centres is None else np.asarray(centres)
        self.shape = activations.shape

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, (list, np.ndarray)) and isinstance(columns, (list, np.ndarray)):  # numpy would pair them
            x = np.asarray(self.activations[rows])[:, columns]
        else:
            x = np.asarray(self.activations[rows, columns])
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
        return x.astype(dtype, copy=False) - self.centres[:, columns][self.codes[rows]].astype(dtype)
