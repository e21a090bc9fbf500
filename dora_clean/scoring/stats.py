"""Per-neuron statistics of a dataset's activations: robust z-scores, skewness, direction, means."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["POOLINGS", "finding_score", "robust_scale", "robust_z", "skewness", "orientation", "combined_score", "mean_score", "layer_pooled", "pooled", "sample_rows"]


POOLINGS = ("mean", "max")


def robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's centre (median) and spread (1.4826 * MAD; the standard deviation where the MAD is 0,
    1 where that is 0 too): what :func:`robust_z` divides by."""
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - med), axis=0)
    spread = np.where(mad > 0, mad, np.std(x, axis=0))
    return med, np.where(spread > 0, spread, 1.0)


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) per column; a column without spread is centred only."""
    x = np.asarray(x, dtype=np.float64)
    centre, spread = robust_scale(x)
    return (x - centre) / spread


def finding_score(activations: np.ndarray, neurons: Sequence[int], directions: Sequence[int],
                  centre: Sequence[float], spread: Sequence[float]) -> np.ndarray:
    """A finding's score [N]: the mean over its ``neurons`` of ``direction * (activation - centre) / spread``
    (columns of ``activations`` [N, C], the layer's pooled activations). With each neuron's
    :func:`robust_scale` over the same images it is :func:`mean_score`; a stored detector scores new images
    with the scan's centre and spread."""
    if not len(neurons):
        return np.zeros(len(activations))
    x = np.asarray(activations[:, list(neurons)], dtype=np.float64)
    z = (x - np.asarray(centre, dtype=np.float64)) / np.asarray(spread, dtype=np.float64)
    return (z * np.asarray(directions, dtype=np.float64)).mean(axis=1)


def skewness(x: np.ndarray) -> np.ndarray:
    """The sample skewness of each column of [N, m] (a float for a 1-d score); 0 where constant."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    sd = centred.std(axis=0)
    skew = np.where(sd > 0, (centred**3).mean(axis=0) / np.where(sd > 0, sd, 1) ** 3, 0.0)
    return float(skew) if x.ndim == 1 else skew


def orientation(neuron_scores: np.ndarray, min_skew: float = 0.25) -> np.ndarray:
    """+1 or -1 per neuron [N, m] -> [m]: the direction in which a neuron marks the artifact.

    An artifact is a minority of a dataset, so it makes a tail on the side
    where it moves a neuron: above for a detector, below for a neuron the
    artifact silences (an infected layer has both). The sign of the
    skewness of the neuron's scores over the dataset says which; a neuron
    without a clear tail (|skewness| < ``min_skew``) counts as a detector.
    """
    x = np.asarray(neuron_scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return np.where(skewness(x) <= -min_skew, -1.0, 1.0)


def combined_score(neuron_scores: np.ndarray, orient: np.ndarray | None = None) -> np.ndarray:
    """The combined artifact score: the mean oriented robust z-score of the infected neurons [N, m] -> [N].

    Standardising first puts neurons with different activation scales on one
    footing; ``orient`` (default: :func:`orientation`) turns neurons the
    artifact silences around; the mean lets neurons that see the same
    artifact confirm each other.
    """
    neuron_scores = np.asarray(neuron_scores, dtype=np.float64)
    if neuron_scores.ndim == 1:
        neuron_scores = neuron_scores[:, None]
    if neuron_scores.shape[1] == 0:
        return np.zeros(len(neuron_scores))
    if orient is None:
        orient = orientation(neuron_scores)
    return (robust_z(neuron_scores) * orient).mean(axis=1)


def layer_pooled(mean_act: np.ndarray, max_act: np.ndarray, pooling: str) -> np.ndarray:
    """The layer's activations [N, C] under the chosen spatial pooling (as given: possibly memory-mapped)."""
    return mean_act if pooling == "mean" else max_act


def pooled(mean_act: np.ndarray, max_act: np.ndarray, neurons: Sequence[int], pooling: str) -> np.ndarray:
    """The chosen spatial pooling of some neurons' activations: [N, len(neurons)]."""
    return np.asarray(layer_pooled(mean_act, max_act, pooling)[:, list(neurons)], dtype=np.float64)


def sample_rows(n: int, max_rows: int) -> np.ndarray | None:
    """At most ``max_rows`` of ``n`` row indices drawn at random (the same every time), sorted; None for all."""
    if n <= max_rows:
        return None
    return np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False))


def mean_score(activations: np.ndarray, combined: dict[int, int]) -> np.ndarray:
    """:func:`combined_score` of the neurons in ``combined`` (neuron id -> direction), columns of ``activations``."""
    columns = np.asarray(activations[:, list(combined)], dtype=np.float64)
    return combined_score(columns, np.array(list(combined.values()), dtype=np.float64))
