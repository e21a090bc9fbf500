"""Recruiting: the layer's other neurons that reproduce a score's flagged split join it."""
from __future__ import annotations

import numpy as np

from .stats import mean_score, robust_z
from .thresholds import RECRUIT_AUC, flag_threshold, separation

__all__ = ["RECRUIT_ROUNDS", "EXTEND_AUC", "SELECT_ROWS", "recruit_neurons", "flagged_aucs", "column_ranks", "reaching", "add_near_recruits", "grow_seed"]


#: Recruiting runs again on the grown score, whose flagged set is cleaner than the seed's
#: (a third round changed nothing on the planted benchmark: docs/benchmark.md).
RECRUIT_ROUNDS = 2


def recruit_neurons(
    activations: np.ndarray, seed_score: np.ndarray, min_auc: float = RECRUIT_AUC
) -> tuple[list[int], np.ndarray]:
    """Neurons of the layer that see what the infected neurons flag: (neuron ids, orient).

    The seed score's label-free flagged set (Otsu) serves as pseudo-labels;
    every neuron (column of ``activations`` [N, C]) whose AUC against them
    reaches ``min_auc`` in either direction joins, oriented by that
    direction. A layer often holds many more detectors of an artifact than
    the few outliers DORA calls infected, and their mean is a cleaner score
    than any one of them. The bar is high so that a neuron for class content
    that merely overlaps the artifact stays out. Empty when nothing reaches
    it or the flagged set is empty or everything.
    """
    a = flagged_aucs(activations, seed_score)
    return ([], np.zeros(0)) if a is None else reaching(a, min_auc)


def flagged_aucs(activations: np.ndarray, score: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray | None:
    """Every neuron's AUC [C] against a score's label-free flagged set as pseudo-labels; None when it
    flags nothing or everything. Without ``ranks`` the flagged set is Otsu's and the layer
    ``activations`` [N, C] are ranked once; with their :func:`column_ranks` it is the split the
    layer reproduces (:func:`flag_threshold`)."""
    from ..evaluate import neuron_aucs, rank_aucs

    score = np.asarray(score, dtype=np.float64)
    pseudo = score > flag_threshold(score, ranks)
    if pseudo.min() == pseudo.max():
        return None
    return neuron_aucs(pseudo, activations) if ranks is None else rank_aucs(ranks, pseudo)


def column_ranks(activations: np.ndarray, block: int = 64) -> np.ndarray:
    """The ranks of each column of ``activations`` [N, C] (ties share their mean rank), as float32
    (exact below 8 million rows): the Mann-Whitney AUC against any labels is then a sum."""
    from scipy.stats import rankdata

    out = np.empty(activations.shape, dtype=np.float32)
    for a in range(0, activations.shape[1], block):  # a block of columns at a time: it may be memory-mapped
        out[:, a : a + block] = rankdata(np.asarray(activations[:, a : a + block], dtype=np.float64), axis=0)
    return out


def reaching(aucs: np.ndarray, min_auc: float) -> tuple[list[int], np.ndarray]:
    """The neurons whose AUC reaches ``min_auc`` in either direction: (neuron ids, orient)."""
    strong = np.flatnonzero(np.maximum(aucs, 1 - aucs) >= min_auc)
    return [int(c) for c in strong], np.where(aucs[strong] >= 0.5, 1.0, -1.0)


#: Neurons whose AUC against the flagged set reaches this, short of :data:`RECRUIT_AUC`,
#: may still join, one at a time, if each makes the split cleaner: chosen on the planted
#: benchmark (0.85 and 0.95 gave much the same).
EXTEND_AUC = 0.9


def add_near_recruits(
    activations: np.ndarray,
    score: np.ndarray,
    combined: dict[int, int],
    min_auc: float = EXTEND_AUC,
    aucs: np.ndarray | None = None,
    ranks: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, int]]:
    """Grow a combined score by the near-recruits that sharpen it: (score, combined).

    When the flagged set is loose (a rare artifact flagged together with as
    many clean images), the artifact's other detectors reproduce it only
    partly and miss :func:`recruit_neurons`'s bar. Here the layer's neurons whose AUC
    against the flagged set reaches ``min_auc`` are tried in order of that
    AUC, and each joins (in its direction) if the mean with it splits the
    images more cleanly (:func:`separation`). A neuron for class content
    blurs the split and stays out. ``combined``: neuron id -> direction of
    the neurons in ``score`` (their mean oriented robust z-score); ``aucs``:
    :func:`flagged_aucs` of ``score`` where the caller has them already; ``ranks``: the layer's
    :func:`column_ranks`, where the split is the one the layer reproduces (:func:`flag_threshold`).
    """
    a = flagged_aucs(activations, score, ranks) if aucs is None else aucs
    if a is None:
        return score, combined
    strength = np.maximum(a, 1 - a)
    order = [int(c) for c in np.argsort(-strength, kind="stable") if strength[c] >= min_auc and int(c) not in combined]
    if not order:
        return score, combined
    combined = dict(combined)
    total, best = score * len(combined), separation(score, flag_threshold(score, ranks))
    for start in range(0, len(order), 16):  # a block of columns at a time: the layer may be memory-mapped
        block = order[start : start + 16]
        z = robust_z(np.asarray(activations[:, block], dtype=np.float64)) * np.where(a[block] >= 0.5, 1.0, -1.0)
        for k, c in enumerate(block):  # in order of AUC: each joins if the split gets cleaner with it
            trial = (total + z[:, k]) / (len(combined) + 1)
            value = separation(trial, flag_threshold(trial, ranks))
            if value > best:
                total, best = total + z[:, k], value
                combined[c] = 1 if a[c] >= 0.5 else -1
    return total / len(combined), combined


#: Which neurons join a score is decided on at most this many images (drawn at random,
#: the same every time): each decision ranks the whole layer. The score covers all images.
SELECT_ROWS = 50_000


def grow_seed(
    activations: np.ndarray, combined: dict[int, int], recruit_auc: float = RECRUIT_AUC, ranks: np.ndarray | None = None,
    near: bool = True,
) -> dict[int, int]:
    """A seed's neurons joined by the layer's recruits (:func:`recruit_neurons`, up to :data:`RECRUIT_ROUNDS`
    times) and then, with ``near``, by the near-recruits that sharpen its split (:func:`add_near_recruits`):
    neuron id -> direction.

    ``activations``: [N, C] the layer's pooled activations; ``combined``: the seed, neuron id -> direction;
    ``ranks``: the activations' :func:`column_ranks`, where several seeds grow on one layer and the flagged
    split is the one the layer reproduces (:func:`flag_threshold`; None: Otsu's). One
    :func:`flagged_aucs` per score: the last serves recruiting and extending alike.
    """
    score = mean_score(activations, combined)
    aucs = flagged_aucs(activations, score, ranks)
    for _ in range(RECRUIT_ROUNDS):
        if aucs is None:
            break
        joined, joined_orient = reaching(aucs, recruit_auc)
        new = {n: int(o) for n, o in zip(joined, joined_orient) if n not in combined}
        if not new:
            break
        combined = combined | new  # they join the seed's neurons (which keep their direction)
        score = mean_score(activations, combined)
        aucs = flagged_aucs(activations, score, ranks)
    if aucs is None or not near:
        return combined
    return add_near_recruits(activations, score, combined, aucs=aucs, ranks=ranks)[1]
