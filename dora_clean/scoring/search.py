"""The judged score: DORA's combined score, or, where its flags are not trusted, a split the layer holds.

The infected neurons can miss a layer's detectors (on models the defaults
were never chosen on, they often rank far down the outlier list), and then
no score grown from them flags the artifact. The layer itself may still hold
it: here every neuron of the layer seeds a score, grown by recruiting
(:func:`grow_seed`) as the infected neurons' seeds are, and the confident
ones (:func:`assess`) compete by how many neurons reproduce them, then by
separation. A clean model offers splits by class content and loose tails,
which confidence does not trust, so the search finds nothing there.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .classes import class_codes, class_lambda
from .combine import ArtifactScores, ScoringSettings, artifact_scores
from .confidence import MIN_REPRODUCING, Confidence, assess
from .recruiting import SELECT_ROWS, column_ranks, grow_seed
from .seeds import Seed
from .stats import layer_pooled, mean_score, orientation, sample_rows
from .thresholds import RECRUIT_AUC, flag_threshold, separation

__all__ = ["SEARCH_REPRODUCING", "judged_scores", "search_layer"]


#: A score the search finds must be reproduced by at least this many neurons: it is chosen among as many
#: candidates as the layer has neurons, so one passes :data:`MIN_REPRODUCING` by chance more easily than
#: DORA's own. Chosen on the dev families (docs/benchmark.md, "The layer search").
SEARCH_REPRODUCING = 2 * MIN_REPRODUCING


@dataclasses.dataclass
class _Found:
    neuron: int
    combined: dict[int, int]
    score: np.ndarray
    threshold: float
    confidence: Confidence
    separation: float


def search_layer(layer: np.ndarray, codes: np.ndarray | None = None, recruit_auc: float = RECRUIT_AUC) -> _Found | None:
    """The best confident score that one neuron of the layer seeds, reproduced by at least
    :data:`SEARCH_REPRODUCING` neurons; None where there is none.

    ``layer``: [N, C] the pooled activations (possibly memory-mapped); ``codes``: the class folders as
    integers, or None. Each neuron not already in an earlier seed's grown score seeds one, in the direction
    of its tail (:func:`orientation`); recruiting and the split are decided on at most :data:`SELECT_ROWS`
    images, as in :func:`artifact_scores`.
    """
    rows = sample_rows(len(layer), SELECT_ROWS)
    chosen_on = np.asarray(layer if rows is None else layer[rows], dtype=np.float64)
    ranks = column_ranks(chosen_on)
    own = orientation(chosen_on)
    covered: set[int] = set()
    best: _Found | None = None
    for n in range(chosen_on.shape[1]):
        if n in covered:
            continue
        combined = grow_seed(chosen_on, {n: int(own[n])}, recruit_auc, ranks)
        covered |= set(combined)
        score = mean_score(layer, combined)
        t = flag_threshold(score if rows is None else score[rows], ranks)
        if np.mean(score > t) > 0.5:  # the artifact is on the smaller side
            score, t, combined = -score, -t, {k: -v for k, v in combined.items()}
        confidence = assess(layer, score > t, codes)
        if not confidence.confident or confidence.reproducing < SEARCH_REPRODUCING:
            continue
        found = _Found(n, combined, score, float(t), confidence, separation(score, t))
        if best is None or (found.confidence.reproducing, found.separation) > (best.confidence.reproducing,
                                                                              best.separation):
            best = found
    return best


def judged_scores(
    mean_act: np.ndarray,
    max_act: np.ndarray,
    infected: Sequence[int],
    pooling: str = "mean",
    classes: Sequence[str | None] | None = None,
    neighbours: dict[int, Sequence[int]] | None = None,
    settings: ScoringSettings = ScoringSettings(),
) -> tuple[ArtifactScores, Confidence]:
    """:func:`artifact_scores` and the :class:`Confidence` of its flags; where they are not trusted (and
    recruiting and the search are on), the layer's own best confident score (:func:`search_layer`), its seed
    written ``layer:N``."""
    scores = artifact_scores(mean_act, max_act, infected, pooling, classes, neighbours, settings)
    layer = layer_pooled(mean_act, max_act, pooling)
    codes = None if classes is None else class_codes(classes)
    confidence = assess(layer, scores.score > scores.threshold, codes)
    if confidence.confident or settings.recruiting is None or "search" in settings.off:
        return scores, confidence
    found = search_layer(layer, codes, settings.recruiting)
    if found is None:
        return scores, confidence
    orient = np.array([found.combined.get(int(n), o) for n, o in zip(infected, scores.orient)], dtype=np.float64)
    lam = None if scores.class_lambda is None else round(class_lambda(found.score > found.threshold, codes), 4)
    searched = dataclasses.replace(
        scores, orient=orient, score=found.score, combined=found.combined, seed=str(Seed("layer", found.neuron)),
        separation=found.separation, class_content={}, class_lambda=lam, threshold=found.threshold)
    return searched, found.confidence
