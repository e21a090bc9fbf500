"""Step 4: infected neurons (outliers of the EA distance) and the representation atlas."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DoraError

__all__ = [
    "DEFAULT_METHOD", "GROUP", "METHODS", "NEIGHBOUR_METHODS", "OutlierResult", "OutlierSettings", "Z_THRESHOLD",
    "atlas", "default_neighbors", "find_dead", "find_infected", "outlier_scores", "select_infected",
]

METHODS = ("knn+group", "knn", "group", "lof", "pca", "iforest")
DEFAULT_METHOD = "knn+group"
#: The methods that score a neuron by its distances to its nearest neurons (bands of one sort).
NEIGHBOUR_METHODS = ("knn", "group", "knn+group")
#: The group score skips this many nearest neurons: a group of up to this many
#: and one more, far from the rest, scores like a lone outlier.
GROUP = 8
#: Outlier scores this many robust standard deviations above the median are clear outliers.
Z_THRESHOLD = 3.0


@dataclass(frozen=True)
class OutlierSettings:
    """How the infected neurons are found.

    Attributes:
        method: the outlier detector (:data:`METHODS`).
        n_infected: take exactly this many top-ranked live neurons (default: a cut-off, see
            :func:`select_infected`).
        n_neighbors: neighbours for the neighbour methods and LOF (default: :func:`default_neighbors`).
        max_fraction: at most this share of the layer is infected.
        representation: how the EA distance sees the layer's responses
            (:data:`~dora_clean.analysis.representations.REPRESENTATIONS`; used by
            :func:`~dora_clean.analysis.analyse_layer`, which computes the distance).
    """

    method: str = DEFAULT_METHOD
    n_infected: int | None = None
    n_neighbors: int | None = None
    max_fraction: float = 0.05
    representation: str = "standardised"


@dataclass
class OutlierResult:
    """Neurons ranked by how far their representation lies from the rest.

    Attributes:
        neurons: the analysed neuron ids, in the order of ``scores``.
        scores: outlier score per neuron (higher is more anomalous; NaN for dead neurons).
        infected: the infected neuron ids, most anomalous first.
        dead: neurons whose own s-AMS barely excite them (kept out of ``infected``).
        atlas: 2-D coordinates per neuron (UMAP of the EA distance), [k, 2].
        method: the outlier detector used.
    """

    neurons: list[int]
    scores: np.ndarray
    infected: list[int]
    dead: list[int] = field(default_factory=list)
    atlas: np.ndarray | None = None
    method: str = DEFAULT_METHOD

    @property
    def ranking(self) -> list[int]:
        """All live neurons, most anomalous first."""
        order = np.argsort(-np.nan_to_num(self.scores, nan=-np.inf), kind="stable")
        return [self.neurons[i] for i in order if not np.isnan(self.scores[i])]


def find_dead(self_act: np.ndarray, rel: float = 0.1) -> np.ndarray:
    """Neurons whose own s-AMS barely excite them: a mask [k].

    Dead or degenerate neurons (the optimisation found nothing that drives
    them) sit far from everything in the EA distance and would otherwise be
    the top outliers. A neuron is dead when its s-AMS excite it less than
    ``rel`` times the median neuron's s-AMS excite theirs.
    """
    self_act = np.asarray(self_act, dtype=float)
    typical = np.median(self_act[self_act > 0]) if np.any(self_act > 0) else 0.0
    return ~(self_act > rel * typical) | (typical <= 0)


def outlier_scores(
    distance: np.ndarray,
    method: str = DEFAULT_METHOD,
    n_neighbors: int | None = None,
    representations: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """An outlier score per neuron from the EA distance matrix (higher is more anomalous).

    Methods:
        knn: the mean distance to the ``n_neighbors`` nearest neurons: a lone outlier.
        group: the mean distance to the ``n_neighbors`` nearest neurons after the
            :data:`GROUP` nearest: how far the neuron's group of similar neurons
            lies from the rest. A layer's detectors of one artifact often form a
            small group; within it each one's nearest neurons are its group-mates,
            so the kNN distance sees a dense spot.
        knn+group: both, in turns: 1 - r / k, where r is the better of the
            neuron's two ranks (0 the most anomalous; a kNN rank before an equal
            group rank).
        lof: LocalOutlierFactor on the precomputed distance (the DORA notebooks' choice).
        pca: the distance from the median in the space of the representations' top
            principal components (90% of the variance; the seed README's "PCA");
            needs ``representations`` [k, C].
        iforest: IsolationForest on the representations.
    """
    k = len(distance)
    if n_neighbors is None:
        n_neighbors = default_neighbors(k, method)
    n_neighbors = int(min(max(1, n_neighbors), k - 1))
    if method == "lof":
        from sklearn.neighbors import LocalOutlierFactor

        lof = LocalOutlierFactor(n_neighbors=n_neighbors, metric="precomputed")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lof.fit(np.asarray(distance, dtype=np.float64))
        return -lof.negative_outlier_factor_
    if method in NEIGHBOUR_METHODS:
        d = np.sort(np.asarray(distance, dtype=np.float64), axis=1)  # one sort for both bands
        knn = d[:, 1 : 1 + n_neighbors].mean(axis=1)
        skip = min(GROUP, k - 1 - n_neighbors)
        group = d[:, 1 + skip : 1 + skip + n_neighbors].mean(axis=1)
        if method != "knn+group":
            return knn if method == "knn" else group
        ranks = [np.argsort(np.argsort(-s, kind="stable"), kind="stable") for s in (knn, group)]
        return 1 - np.minimum(ranks[0], ranks[1] + 0.5) / k
    if method in ("pca", "iforest"):
        if representations is None:
            raise DoraError(f"outlier method {method!r} needs the representations")
        X = np.asarray(representations, dtype=np.float64)
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if method == "iforest":
            from sklearn.ensemble import IsolationForest

            return -IsolationForest(random_state=seed).fit(X).score_samples(X)
        from sklearn.decomposition import PCA

        pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(X)
        Z = pca.transform(X)
        return np.linalg.norm(Z - np.median(Z, axis=0), axis=1)
    raise DoraError(f"unknown outlier method {method!r}: use one of {', '.join(METHODS)}")


def default_neighbors(k: int, method: str = DEFAULT_METHOD) -> int:
    """Neighbours: 5 for kNN and group (the planted-artifact benchmark's best); for LOF 15% of the layer."""
    return 5 if method in NEIGHBOUR_METHODS else int(max(5, round(0.15 * k)))


def select_infected(
    scores: np.ndarray,
    neurons: Sequence[int],
    dead: np.ndarray,
    n_infected: int | None = None,
    max_fraction: float = 0.05,
    z_threshold: float | None = Z_THRESHOLD,
) -> list[int]:
    """The infected neurons, most anomalous first.

    With ``n_infected`` given, the top that many live neurons. Otherwise the
    live neurons whose score lies more than ``z_threshold`` robust standard
    deviations (median absolute deviation) above the median, at most
    ``max_fraction`` of the layer and at least one; with ``z_threshold``
    None, ``max_fraction`` of the layer (DORA's ``outliers_fraction``).
    """
    scores = np.asarray(scores, dtype=float)
    live = np.flatnonzero(~dead)
    if len(live) == 0:
        return []
    order = live[np.argsort(-scores[live], kind="stable")]
    if n_infected is not None:
        return [int(neurons[i]) for i in order[: max(0, n_infected)]]
    s = scores[live]
    s = s[np.isfinite(s)]
    if len(s) == 0:  # no scores (fewer than 3 live neurons): the first live neuron
        s = np.zeros(1)
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med)) or np.std(s) or 1.0
    z = (scores[order] - med) / mad
    cap = max(1, int(np.floor(max_fraction * len(scores))))
    n = cap if z_threshold is None else int(np.clip(np.sum(z > z_threshold), 1, cap))
    return [int(neurons[i]) for i in order[:n]]


def atlas(distance: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D UMAP of the precomputed EA distance: the representation atlas, [k, 2]."""
    k = len(distance)
    if k < 4:
        return np.c_[np.arange(k, dtype=float), np.zeros(k)]
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(
            n_components=2,
            metric="precomputed",
            n_neighbors=min(15, k - 1),
            random_state=seed,
            init="random",
            n_jobs=1,
        )
        return reducer.fit_transform(np.asarray(distance, dtype=np.float64)).astype(np.float32)


def find_infected(
    distance: np.ndarray,
    self_act: np.ndarray,
    neurons: Sequence[int],
    settings: OutlierSettings = OutlierSettings(),
    representations: np.ndarray | None = None,
    with_atlas: bool = True,
    seed: int = 0,
) -> OutlierResult:
    """Dead neurons out, outlier scores on the rest, the infected set and the atlas.

    ``settings``: the method, the infected set's size and the neighbours
    (``settings.representation`` is not used here: ``distance`` is already made).
    ``knn+group`` ranks have no scale for a z cut-off: its infected set is
    ``max_fraction`` of the layer, taken in turns from the kNN and the group ranking.
    """
    method = settings.method
    distance = np.asarray(distance, dtype=np.float64)
    dead = find_dead(self_act)
    live = np.flatnonzero(~dead)
    scores = np.full(len(neurons), np.nan)
    if len(live) >= 3:
        reps = None if representations is None else np.asarray(representations)[live]
        scores[live] = outlier_scores(distance[np.ix_(live, live)], method, settings.n_neighbors, reps, seed)
    infected = select_infected(np.nan_to_num(scores, nan=-np.inf), neurons, dead, settings.n_infected,
                               settings.max_fraction, None if method == "knn+group" else Z_THRESHOLD)
    return OutlierResult(
        neurons=[int(i) for i in neurons],
        scores=scores,
        infected=infected,
        dead=[int(neurons[i]) for i in np.flatnonzero(dead)],
        atlas=atlas(distance, seed) if with_atlas else None,
        method=method,
    )
