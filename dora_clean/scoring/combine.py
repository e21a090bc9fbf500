"""The combined artifact score: seeds grown by recruiting compete, the cleanest split wins."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Collection, Sequence

import numpy as np

from .classes import CLASS_LAMBDA, ClassCentred, class_codes, class_lambda, class_names, has_classes
from .recruiting import SELECT_ROWS, column_ranks, grow_seed
from .seeds import DEFAULT_AGREEMENT, Seed, agreeing, tail_pursuit
from .stats import layer_pooled, mean_score, orientation, pooled, sample_rows, skewness
from . import thresholds
from .thresholds import RECRUIT_AUC, flag_threshold, separation, structure

__all__ = ["BIMODAL_SEEDS", "MIN_NEURONS", "PIECES", "SKEWED_SEEDS", "ArtifactScores", "Candidate", "ScoringSettings",
           "artifact_scores"]


#: The pieces of the combined score that :class:`ScoringSettings` can switch off (the ablation of
#: docs/benchmark.md): the tail seed, recruiting, the near-recruits, the nested threshold, the class rule,
#: the skewed seeds, the bimodal seeds and the class centring.
PIECES = ("tail", "recruiting", "near_recruits", "nested", "class_rule", "skewed", "bimodal", "centring")

#: Besides the infected neurons' seeds, each of the layer's this many most skewed neurons seeds a candidate
#: (for the combined score too, where class folders guard it): DORA's outlier step can miss an artifact's
#: detectors, which still make a long tail over the images. Chosen on the dev two-artifact families
#: (docs/benchmark.md).
SKEWED_SEEDS = 16

#: ... and so does each of its this many most bimodal neurons (highest own :func:`separation`): a common
#: artifact (40% of the images) splits its detectors' activations in two groups of similar size, which
#: is no long tail (docs/benchmark.md, "Bimodal seeds").
BIMODAL_SEEDS = 16

#: A candidate of fewer neurons than this (a seed that fewer than ``MIN_NEURONS - 1`` of the layer's other
#: neurons joined) wins the contest only where none of this many stands: an artifact the model learned has
#: several detectors that agree, while one neuron's clean split of the images is that neuron's alone. Chosen
#: on the dev families (docs/benchmark.md, "Lone neurons out of the contest").
MIN_NEURONS = 4


@dataclass(frozen=True)
class ScoringSettings:
    """How the combined score is made: ``agreement`` (:func:`agreeing`; <= 0: the plain mean of the infected
    neurons, and no tail seed), ``recruit_auc`` (:func:`grow_seed`; None: no recruiting) and ``off``, pieces
    of :data:`PIECES` switched off."""

    agreement: float = DEFAULT_AGREEMENT
    recruit_auc: float | None = RECRUIT_AUC
    off: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.off) - set(PIECES)
        if unknown:
            raise ValueError(f"unknown scoring pieces {sorted(unknown)}; choose from {PIECES}")

    @property
    def recruiting(self) -> float | None:
        """The recruit AUC, or None where recruiting is off."""
        return None if "recruiting" in self.off else self.recruit_auc


@dataclass
class Candidate:
    """One grown seed's score: a suspected artifact, turned so that the images it flags (above
    ``threshold``) are the smaller group.

    Attributes:
        seed: how its first neurons were chosen (:class:`~.seeds.Seed`).
        combined: neuron id -> direction, the neurons its score averages.
        score: [N] their mean oriented robust z-score.
        threshold: its label-free threshold.
        separation: its :func:`separation` at that threshold.
        class_lambda: its flagged set's :func:`class_lambda` (0 without class folders).
    """

    seed: str
    combined: dict[int, int]
    score: np.ndarray
    threshold: float
    separation: float
    class_lambda: float

    @functools.cached_property
    def structure(self) -> float:
        """How far its split stands from a bell curve's toward a perfect split (:func:`~.thresholds.structure`)."""
        return structure(self.score, self.threshold, self.separation)

    def standing(self, by_structure: bool = False) -> tuple[bool, float]:
        """What the seeds compete on: whether it has :data:`MIN_NEURONS` neurons, then its separation (with
        ``by_structure``, its :attr:`structure`)."""
        return len(self.combined) >= MIN_NEURONS, self.structure if by_structure else self.separation

    def beats(self, other: "Candidate", by_structure: bool = False) -> bool:
        """Whether it stands above ``other`` in the contest (the earlier keeps a tie)."""
        (many, value), (other_many, other_value) = self.standing(by_structure), other.standing(by_structure)
        return many > other_many or (many == other_many and value > other_value + 1e-9)

    def turned(self) -> "Candidate":
        """The candidate turned, where it flags more than half the images (an artifact is on a minority)."""
        if np.mean(self.score > self.threshold) <= 0.5:
            return self
        return Candidate(self.seed, {n: -o for n, o in self.combined.items()}, -self.score, -self.threshold,
                         self.separation, self.class_lambda)


@dataclass
class ArtifactScores:
    """Every image's artifact scores.

    Attributes:
        per_neuron: [N, m] each infected neuron's pooled activation.
        orient: [m] the direction in which each infected neuron marks the artifact
            (the combined score's, for those in it).
        score: [N] the combined score.
        combined: neuron id -> direction, for the neurons the combined score averages.
        seed: how the neurons that seed the score were chosen: "agreement"
            (:func:`agreeing`), "tail" (:func:`tail_pursuit`) or "skewed:N" (the layer's
            neuron N, one of its most skewed).
        separation: the combined score's :func:`separation`.
        class_content: seed -> :func:`class_lambda`, for the grown scores set aside
            because the class folders explain their flagged sets.
        class_lambda: the combined score's :func:`class_lambda` (None without class folders).
        threshold: the label-free threshold on ``score`` (:func:`flag_threshold`, with the layer's
            ranks where neurons were recruited): the images above it are flagged.
        candidates: every grown seed's score (:class:`Candidate`), the winner first, then the others and
            the skewed neurons' by separation; those set aside as class content last. The
            findings are made of them (:mod:`.findings`).
        own_orient: [m] each infected neuron's own direction (:func:`orientation`).
        class_centres: [K, C] each neuron's median within each class folder, which the scores took away
            from the activations (:class:`~.classes.ClassCentred`); None where they did not (no class folders).
        class_names: the class folders of ``class_centres``' rows.
        set_aside: the candidate of fewer than :data:`MIN_NEURONS` neurons that would have won on its split
            alone (None where the winner is that candidate).
        ranked_by: what the contest ranked the candidates by: "separation", or "structure" where the first
            winner's split was no cleaner than a bell curve's (:data:`~.thresholds.STRUCTURE`).
        pooling: how each neuron's map became the activations scored: "mean" or "max" (its peak).
    """

    per_neuron: np.ndarray
    orient: np.ndarray
    score: np.ndarray
    combined: dict[int, int]
    seed: str = "agreement"
    separation: float = 0.0
    class_content: dict[str, float] = field(default_factory=dict)
    class_lambda: float | None = None
    threshold: float = float("nan")
    candidates: list[Candidate] = field(default_factory=list)
    own_orient: np.ndarray | None = None
    class_centres: np.ndarray | None = None
    class_names: list[str] | None = None
    set_aside: Candidate | None = None
    ranked_by: str = "separation"
    pooling: str = "mean"

    def following(self, candidate: Candidate, infected: Sequence[int]) -> "ArtifactScores":
        """These scores with ``candidate`` as the combined score (``infected``: the infected neurons, in
        ``per_neuron``'s order)."""
        own = self.orient if self.own_orient is None else self.own_orient
        orient = np.array([candidate.combined.get(int(n), o) for n, o in zip(infected, own)], dtype=np.float64)
        return ArtifactScores(self.per_neuron, orient, candidate.score, candidate.combined, candidate.seed,
                              candidate.separation, self.class_content,
                              None if self.class_lambda is None else round(candidate.class_lambda, 4),
                              candidate.threshold, self.candidates, own, self.class_centres, self.class_names,
                              self.set_aside, self.ranked_by, self.pooling)


def _down_to(order: Sequence[int], k: int, outside: Collection[int], skip: Collection[int] = ()) -> list[int]:
    """``order``'s neurons from the first down to the ``k``-th not in ``outside``, but those of ``skip``."""
    taken, counted = [], 0
    for c in order:
        if counted == k:
            break
        if c not in skip:
            taken.append(c)
            counted += c not in outside
    return taken


def _most_skewed(activations: np.ndarray, k: int, winner: dict[int, int], block: int = 64) -> list[tuple[int, int]]:
    """The neurons (columns of ``activations`` [N, C]) of largest absolute skewness, down to the ``k``-th
    outside ``winner`` (the seeds' winner, whose own neurons met on the way are kept too), each with the
    direction of its tail: [(neuron, +1 or -1)]."""
    skew = np.concatenate([np.atleast_1d(skewness(np.asarray(activations[:, a : a + block], dtype=np.float64)))
                           for a in range(0, activations.shape[1], block)])
    order = [int(c) for c in np.argsort(-np.abs(skew), kind="stable")]
    return [(c, 1 if skew[c] >= 0 else -1) for c in _down_to(order, k, winner)]


def _most_bimodal(activations: np.ndarray, k: int, winner: dict[int, int], taken: Collection[int],
                  block: int = 64) -> list[tuple[int, int]]:
    """The neurons (columns of ``activations`` [N, C]) whose own Otsu split is cleanest (largest
    :func:`separation`), down to the ``k``-th outside ``winner`` and ``taken`` (``winner``'s own neurons
    met on the way are kept too, ``taken``'s are not), each in the direction of its smaller group."""
    from skimage.filters import threshold_otsu

    seps, signs = np.zeros(activations.shape[1]), np.ones(activations.shape[1], dtype=int)
    for a in range(0, activations.shape[1], block):  # a block of columns at a time: it may be memory-mapped
        x = np.asarray(activations[:, a : a + block], dtype=np.float64)
        for j in range(x.shape[1]):
            if np.ptp(x[:, j]) > 0:
                t = float(threshold_otsu(x[:, j]))
                seps[a + j], signs[a + j] = separation(x[:, j], t), 1 if np.mean(x[:, j] > t) <= 0.5 else -1
    order = [int(c) for c in np.argsort(-seps, kind="stable")]
    return [(c, int(signs[c])) for c in _down_to(order, k, set(winner) | set(taken), skip=taken)]


def artifact_scores(
    mean_act: np.ndarray,
    max_act: np.ndarray,
    infected: Sequence[int],
    pooling: str = "mean",
    classes: Sequence[str | None] | None = None,
    settings: ScoringSettings = ScoringSettings(),
    centre: bool = False,
) -> ArtifactScores:
    """Score the images.

    Two seeds from the infected neurons: those that agree (:func:`agreeing`,
    which finds common artifacts) and those that make a tail together
    (:func:`tail_pursuit`, which finds rare ones). Each seed is joined, unless
    recruiting is off (``settings``), by the layer's neurons that reproduce its
    flagged set and then by those that nearly do and sharpen it
    (:func:`grow_seed`); a score's flagged set is then the split of it that the
    layer reproduces (:func:`flag_threshold`). Where the images have
    ``classes`` (their class folders, two or more), a grown score whose flagged
    set the classes explain (:func:`class_lambda` >= :data:`CLASS_LAMBDA`) sees
    class content and is set aside (where all are, and none of the layer's
    seeds below passes the rule either, the least class-bound wins). Of the
    others, the one that separates the images most cleanly (:func:`separation`)
    wins, turned so that the images it flags are the smaller group (an
    artifact is on a minority of a dataset); a score of fewer than
    :data:`MIN_NEURONS` neurons wins only where none of that many stands.
    Where the winner's split is no cleaner than a bell curve's at its middle
    (its :attr:`Candidate.structure` below :data:`~.thresholds.STRUCTURE`),
    the contest is run again on the candidates' structure instead of their
    separation. Each of the
    layer's :data:`SKEWED_SEEDS` most skewed neurons outside the seeds' winner
    (and any of the winner's own neurons among the most skewed) seeds a
    candidate as well (DORA's outlier step can miss the detectors, which still
    make long tails); where there are ``classes`` these compete with the winner
    on the same terms, the class rule guarding them, and elsewhere they are
    candidate findings only. So does each of the layer's :data:`BIMODAL_SEEDS`
    most bimodal neurons (a common artifact's detectors split the images in two
    groups of similar size, no long tail). With ``centre`` and ``classes``, all
    of this reads each neuron's activations less its median within the image's
    class folder (:class:`~.classes.ClassCentred`; :func:`~.findings.score_findings`
    decides when). With
    ``settings.agreement`` <= 0 the seed is the plain mean of all infected
    neurons, as :func:`orientation` turns them.
    ``mean_act`` / ``max_act``: [N, C] the layer's pooled activations;
    ``settings``: :class:`ScoringSettings` (each piece can be switched off).
    """
    agreement, recruit_auc, off = settings.agreement, settings.recruiting, settings.off
    codes = None if classes is None else class_codes(classes)  # encoded once: every seed's lambda uses them
    by_class = has_classes(codes)
    layer = layer_pooled(mean_act, max_act, pooling)
    centred = centre and by_class
    if centred:
        layer = ClassCentred(layer, codes)
    per_neuron = pooled(mean_act, max_act, infected, pooling)  # as the layer gives them (scores.csv)
    seen = np.asarray(layer[:, list(infected)], dtype=np.float64) if centred else per_neuron  # as scored
    own = orientation(seen)
    first = str(Seed("agreement"))
    seeds = {first: agreeing(seen, own, agreement)}
    if agreement > 0 and seen.shape[1] >= 2 and "tail" not in off:
        keep, orient = tail_pursuit(seen, own)
        if not (np.array_equal(keep, seeds[first][0]) and np.array_equal(orient, seeds[first][1])):
            seeds[str(Seed("tail"))] = (keep, orient)
    starts = {name: {int(n): int(o) for n, o, u in zip(infected, orient, used) if u}
              for name, (used, orient) in seeds.items()}
    rows = sample_rows(len(per_neuron), SELECT_ROWS)  # the images on which recruiting decides
    chosen_on = layer if rows is None or recruit_auc is None else np.asarray(layer[rows])
    ranks = column_ranks(chosen_on) if recruit_auc is not None and len(infected) else None  # one rank pass for all
    split_ranks = None if "nested" in off else ranks

    def split(score: np.ndarray) -> float:  # on the images the layer was ranked on, where it was
        return flag_threshold(score if rows is None or split_ranks is None else score[rows], split_ranks)

    def grow(name: str, combined: dict[int, int]) -> Candidate:  # a seed, grown and split
        if ranks is not None:
            combined = grow_seed(chosen_on, combined, recruit_auc, split_ranks, near="near_recruits" not in off)
        score = mean_score(layer, combined)
        t = split(score)
        lam = class_lambda(score > t, codes) if by_class and "class_rule" not in off else 0.0
        return Candidate(name, combined, score, float(t), separation(score, t), lam)

    grown = [grow(name, combined) for name, combined in starts.items()]
    kept = [g for g in grown if g.class_lambda < CLASS_LAMBDA] or [min(grown, key=lambda g: g.class_lambda)]

    def seeds_winner(by_structure: bool) -> Candidate:
        best = kept[0]
        for g in kept[1:]:  # the earlier seed (agreement first) keeps a tie
            if g.beats(best, by_structure):
                best = g
        return best

    best = seeds_winner(False)
    by_separation = lambda g: (g.class_lambda >= CLASS_LAMBDA, -g.separation)  # noqa: E731
    single: list[tuple[str, int, int]] = []  # the layer's own neurons that seed a candidate each
    if ranks is not None and "skewed" not in off:
        single += [("skewed", c, sign) for c, sign in _most_skewed(chosen_on, SKEWED_SEEDS, best.combined)]
    if ranks is not None and "bimodal" not in off:
        taken = {c for _, c, _ in single}
        single += [("bimodal", c, sign) for c, sign in _most_bimodal(chosen_on, BIMODAL_SEEDS, best.combined, taken)]
    layer_seeds = [grow(str(Seed(kind, c)), {c: sign}) for kind, c, sign in single]

    def contest(by_structure: bool) -> tuple[Candidate, list[Candidate]]:  # the winner, and the rest in order
        best = seeds_winner(by_structure)
        others = [g for g in grown if g is not best]
        if by_class:  # where the class rule guards them, the layer's seeds compete for the combined score too
            top = max((g for g in layer_seeds if g.class_lambda < CLASS_LAMBDA),
                      key=lambda g: g.standing(by_structure), default=None)
            # a layer seed the class rule passes wins over grown seeds that it all set aside
            if top is not None and (best.class_lambda >= CLASS_LAMBDA or top.beats(best, by_structure)):
                return top, others + [best] + [g for g in layer_seeds if g is not top]
        return best, others + layer_seeds

    by_structure = False
    best, rest = contest(by_structure)
    # a bell curve's split: its separation says nothing the others' do not, so they are ranked by structure
    if thresholds.STRUCTURE > 0 and best.structure < thresholds.STRUCTURE:
        by_structure = True
        best, rest = contest(by_structure)
    # the lone neurons' score that its split alone would have chosen, where MIN_NEURONS set it aside
    contestants = [g for g in kept + (layer_seeds if by_class else []) if g.class_lambda < CLASS_LAMBDA] or kept
    lone = max(contestants, key=lambda g: g.standing(by_structure)[1])
    set_aside = None if lone.standing(by_structure)[1] <= best.standing(by_structure)[1] + 1e-9 else lone.turned()
    # the artifact is on the smaller side of the split (clearer in the final score than in any seed)
    candidates = [g.turned() for g in [best] + sorted(rest, key=by_separation)]
    winner = candidates[0]
    class_content = {g.seed: round(g.class_lambda, 4) for g in grown
                     if g.class_lambda >= CLASS_LAMBDA and g is not best}
    return ArtifactScores(per_neuron, own, winner.score, winner.combined, winner.seed, winner.separation,
                          class_content, round(winner.class_lambda, 4) if by_class else None, winner.threshold,
                          candidates, own, layer.centres if centred else None,
                          class_names(classes) if centred else None, set_aside,
                          "structure" if by_structure else "separation", pooling).following(winner, infected)
