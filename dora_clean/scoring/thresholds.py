"""The label-free flagging threshold on a score, and how cleanly a threshold splits it."""
from __future__ import annotations

import numpy as np

__all__ = ["RECRUIT_AUC", "REPRODUCING", "NESTED_SPLITS", "STRUCTURE", "nested_thresholds", "flag_threshold",
           "flag_images", "separation", "normal_separation", "structure"]


#: How well (AUC) a neuron of the layer must reproduce the infected neurons' flagged
#: set to join the combined score: chosen on the planted benchmark, with the artifact
#: spread over all classes and with it concentrated in one.
RECRUIT_AUC = 0.98


#: A nested split (:func:`flag_threshold`) stands where the mean AUC of the layer's this many
#: neurons that reproduce it best reaches :data:`RECRUIT_AUC`: 5 since 1 Dec 2026 (was 3), checked on
#: fresh held-out families added for it (docs/benchmark.md, "Scoring constants").
REPRODUCING = 5


#: Otsu's split and at most this many levels of splits nested in it (:func:`nested_thresholds`).
NESTED_SPLITS = 3


#: A split stands clear of a bell curve's where its :func:`structure` reaches this. Below it, the contest's
#: winner is no cleaner than a bell curve's split and the candidates are ranked again by their own structure
#: instead of their separation (:func:`~.combine.artifact_scores`), and a finding is not confident
#: (:func:`~.confidence.assess`); 0 turns both off. Fixed before it was run (docs/benchmark.md, "Separation
#: above a bell curve's"; "Confident removal of a bell curve's top").
STRUCTURE = 0.1


def nested_thresholds(score: np.ndarray, levels: int = NESTED_SPLITS) -> list[float]:
    """Otsu's threshold, then Otsu's again on the side of it away from the bulk (its smaller
    side), and so on, ``levels`` deep at most: outermost first. A side of fewer than 20 images,
    or one without spread, is not split again."""
    from skimage.filters import threshold_otsu

    score = np.asarray(score, dtype=np.float64)
    if len(score) == 0:
        return [float("inf")]
    if np.ptp(score) == 0:
        return [float(score[0])]
    out, side, upper = [], score, None
    while len(out) < levels and len(side) >= 20 and np.ptp(side) > 0:
        t = float(threshold_otsu(side))
        high = side > t
        if upper is None:
            upper = bool(high.mean() <= 0.5)
        out.append(t)
        side = side[high] if upper else side[~high]
    return out or [float(threshold_otsu(score))]


def flag_threshold(score: np.ndarray, ranks: np.ndarray | None = None, min_auc: float = RECRUIT_AUC) -> float:
    """A label-free threshold on a score: the images above it and those below are its split.

    Otsu's threshold, which splits the scores into a low and a high group
    with the least variance within each. With the layer's ``ranks`` (its
    :func:`column_ranks` over the same images), the outermost of the
    :func:`nested_thresholds` whose split the layer reproduces: the
    :data:`REPRODUCING` neurons that rank one side above the other best do
    so with mean AUC >= ``min_auc`` (Otsu's where none does). Where an
    artifact is rare and the clean images' scores have a long tail, Otsu's
    split falls inside the bulk and flags that tail too (a quarter of the
    images for a 2% artifact); no neuron sees the tail as a group, while the
    artifact's detectors rank the artifact images above all others.

    Otsu's alone was chosen on the planted-artifact benchmark (where a
    two-component Gaussian mixture and robust z-score cut-offs missed most
    artifacts on some cases), and the reproduced split on it and on fresh
    models of the same task. Either assumes the dataset holds an artifact:
    on a clean one it still splits the scores in two, so review the flagged
    images, or set ``--threshold`` / ``--flag-top``.
    """
    from ..evaluate import rank_aucs

    candidates = nested_thresholds(score)
    if ranks is None or len(candidates) == 1:
        return candidates[0]
    score = np.asarray(score, dtype=np.float64)
    k = min(REPRODUCING, ranks.shape[1])

    def reproduced(t: float) -> bool:
        high = score > t
        if high.min() == high.max():
            return False
        a = rank_aucs(ranks, high)
        return bool(np.sort(np.maximum(a, 1 - a))[-k:].mean() >= min_auc)

    return next((t for t in candidates if reproduced(t)), candidates[0])


def flag_images(score: np.ndarray, threshold: float | None = None, top: int | None = None) -> np.ndarray:
    """The flagged mask: the top ``top`` scores, or the scores above ``threshold``."""
    score = np.asarray(score)
    out = np.zeros(len(score), dtype=bool)
    if top is not None:
        out[np.argsort(-score, kind="stable")[: max(0, top)]] = True
        return out
    return score > (flag_threshold(score) if threshold is None else threshold)


def separation(score: np.ndarray, threshold: float | None = None) -> float:
    """How cleanly a threshold (default: Otsu's) splits a score: the share of its variance
    that lies between the flagged and the unflagged group (Otsu's criterion, 0-1)."""
    score = np.asarray(score, dtype=np.float64)
    if len(score) < 2 or np.ptp(score) == 0:
        return 0.0
    high = score > (flag_threshold(score) if threshold is None else threshold)
    w = high.mean()
    if w in (0.0, 1.0):
        return 0.0
    return float(w * (1 - w) * (score[high].mean() - score[~high].mean()) ** 2 / score.var())


def normal_separation(share: float) -> float:
    """The :func:`separation` of a normal distribution split with ``share`` of it above the threshold: what
    a score without structure gives at that split (2/pi at a half, 0.34 at a tenth, 0.12 at 2%; 0 at 0 or 1).
    Otsu's split of a bell curve is its middle, which looks as clean as a split of one gets."""
    from scipy.stats import norm

    if not 0.0 < share < 1.0:
        return 0.0
    return float(norm.pdf(norm.ppf(1.0 - share)) ** 2 / (share * (1.0 - share)))


def structure(score: np.ndarray, threshold: float, separation_: float | None = None) -> float:
    """How far a split stands from a bell curve's toward a perfect split: (separation - s0) / (1 - s0), s0
    the :func:`normal_separation` at the share it flags (0: no cleaner than a bell curve's; negative: less
    clean; 1: perfect). ``separation_``: the split's :func:`separation`, where it is known."""
    score = np.asarray(score)
    s0 = normal_separation(float(np.mean(score > threshold)) if len(score) else 0.0)
    sep = separation(score, threshold) if separation_ is None else separation_
    return (sep - s0) / (1.0 - s0)
