"""Seeds of a combined score: groups of infected neurons (agreement, tail)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import orientation, robust_z, sample_rows, skewness

__all__ = ["DEFAULT_AGREEMENT", "Seed", "agreeing", "tail_pursuit"]


@dataclass(frozen=True)
class Seed:
    """How a score's first neurons were chosen, written ``kind`` or ``kind:neuron`` in summary.json.

    Kinds: ``agreement`` (:func:`agreeing`), ``tail`` (:func:`tail_pursuit`), ``skewed`` (``neuron``,
    one of the layer's most skewed neurons) and ``bimodal`` (one of its most bimodal).
    """

    kind: str
    neuron: int | None = None

    def __str__(self) -> str:
        return self.kind if self.neuron is None else f"{self.kind}:{self.neuron}"

    @classmethod
    def parse(cls, text: str) -> "Seed":
        kind, _, neuron = str(text).partition(":")
        return cls(kind, int(neuron) if neuron else None)


#: How strongly (|Pearson r| over the dataset) an infected neuron must go with the
#: best-corroborated one to count in the combined score: chosen on the planted benchmark.
DEFAULT_AGREEMENT = 0.3


def agreeing(
    neuron_scores: np.ndarray, orient: np.ndarray, min_agreement: float = DEFAULT_AGREEMENT
) -> tuple[np.ndarray, np.ndarray]:
    """Which infected neurons the combined score uses, and their direction: (mask [m], orient [m]).

    Neurons that see the same artifact rise and fall together over a
    dataset; one that goes with none of the others sees something else, and
    averaging it in dilutes the artifact score. The anchor is the neuron
    with the largest total agreeing |correlation| to the others; those whose
    |correlation| with it reaches ``min_agreement`` join it, turned by the
    sign of that correlation; the group's direction is that of the tail of
    its mean score (:func:`orientation`). With fewer than three neurons, with no pair
    that agrees, or with ``min_agreement`` <= 0, every neuron is kept as
    ``orient`` has it.
    """
    x = np.asarray(neuron_scores, dtype=np.float64)
    orient = np.asarray(orient, dtype=np.float64)
    keep = np.ones(x.shape[1], dtype=bool)
    if x.shape[1] < 3 or min_agreement <= 0:
        return keep, orient
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.nan_to_num(np.corrcoef(x, rowvar=False))
    agree = np.abs(r)
    np.fill_diagonal(agree, 0.0)
    if agree.max() < min_agreement:
        return keep, orient
    anchor = int(np.argmax(np.where(agree >= min_agreement, agree, 0.0).sum(axis=1)))
    keep = agree[anchor] >= min_agreement
    keep[anchor] = True
    turned = np.where(r[anchor] < 0, -1.0, 1.0)  # relative to the anchor
    # the group's direction: the side of the tail of its mean (clearer than any one neuron's)
    turned *= orientation((robust_z(x[:, keep]) * turned[keep]).mean(axis=1))[0]
    return keep, np.where(keep, turned, orient)


def tail_pursuit(
    neuron_scores: np.ndarray, orient: np.ndarray, max_rows: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """The infected neurons whose signed mean has the longest upper tail: (mask [m], orient [m]).

    A rare artifact (a few percent of the images) barely moves the
    correlations between neurons, which clean images dominate, so
    :func:`agreeing` can group neurons by class content instead. What it
    does make is a tail: starting from the neuron and direction of largest
    skewness, neurons join (in either direction) while the skewness of the
    group's mean robust z-score grows; the others keep ``orient``. Larger
    datasets are judged on ``max_rows`` images drawn at random (the same
    ones every time).
    """
    x = np.asarray(neuron_scores)
    rows = sample_rows(len(x), max_rows)
    z = robust_z(x if rows is None else x[rows])
    m = z.shape[1]
    best, first, sign = max((skewness(s * z[:, j]), j, s) for j in range(m) for s in (1.0, -1.0))
    group = np.zeros(m)
    group[first] = sign
    total = sign * z[:, first]
    while True:
        n = np.count_nonzero(group)
        options = [(skewness((total + s * z[:, j]) / (n + 1)), j, s)
                   for j in np.flatnonzero(group == 0) for s in (1.0, -1.0)]
        if not options:
            break
        value, j, s = max(options)
        if value <= best:
            break
        best, group[j] = value, s
        total = total + s * z[:, j]
    keep = group != 0
    return keep, np.where(keep, group, orient)
