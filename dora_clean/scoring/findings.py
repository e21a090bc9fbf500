"""Findings: the suspected artifacts of a scan, each with its own neurons, score, flags and confidence.

A dataset may carry several artifacts (rulers and ink marks, tubes and
hospital text), and a layer may hold detectors of each. Every seed of the
combined score (:mod:`.combine`) grows into a candidate, and so does each of the
layer's most skewed and most bimodal neurons (DORA's infected set can miss the
detectors of a second artifact, which still make a long tail, or two groups
where the artifact is common); the candidates that
flag other images than a better one are the findings, each judged on its own
(:func:`~.confidence.assess`). A candidate flags a better one's images when
it holds at least half of them (:data:`SAME_IMAGES`), with or without more
around them (the wider top of a feature that the better split cuts more
cleanly); the better one (the contest's winner first, then by separation) stands
for both. (Half of the candidate's own images would merge a rare artifact
into a better-ranked split by class that holds half of it.)

Which candidates are reported: the contest's winner always (it is what the
scan's single score was before findings), any other that is confident, and
any other that would be but for one test: the layer reproduces it, but not
within the class folders (:attr:`~.confidence.Confidence.class_edge`; one
class's content may fill its edge, so it is listed for review). At most
:data:`MAX_FINDINGS`; confident ones first. Findings read from each
neuron's peak over its map are never confident (:func:`for_review`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .combine import ArtifactScores, Candidate, ScoringSettings, artifact_scores
from .classes import ClassCentred, class_codes, class_names, has_classes
from .confidence import CLASS_ASSOCIATION, Confidence, assess, class_association
from .stats import finding_score, layer_pooled, robust_scale
from . import thresholds
from .thresholds import structure

__all__ = ["DEFAULT_POOLING", "MAX_FINDINGS", "PEAK_REASON", "SAME_IMAGES", "Finding", "find_findings", "for_review",
           "peak_reads_better", "same_images", "score_findings"]

#: A scan reports at most this many findings.
MAX_FINDINGS = 5

#: A candidate is a better finding again when its flagged set holds this share of that finding's.
SAME_IMAGES = 0.5

#: At most this many distinct candidates are judged (:func:`assess` ranks the whole layer once each).
_MAX_JUDGED = 3 * MAX_FINDINGS


@dataclass
class Finding:
    """One suspected artifact.

    Attributes:
        id: its rank, from 1 (confident findings first).
        candidate: the grown seed it comes from (:class:`~.combine.Candidate`).
        centre, spread: [len(neurons)] each of its neurons' median and spread over the scanned
            images (:func:`robust_scale`): what :func:`~.stats.finding_score` needs to score new images.
        threshold: the images whose score lies above it are flagged.
        flagged: [N] bool, the images it flags.
        confidence: whether its flags are an artifact to remove without review, and why not.
        class_centres: class folder -> [len(neurons)] each neuron's median within it, taken away from the
            activations before ``centre`` and ``spread`` (:class:`~.classes.ClassCentred`); None where the
            scores were not centred.
    """

    id: int
    candidate: Candidate
    centre: np.ndarray
    spread: np.ndarray
    threshold: float
    flagged: np.ndarray
    confidence: Confidence
    class_centres: dict[str, np.ndarray] | None = None

    @property
    def neurons(self) -> dict[int, int]:
        """Its neurons (infected and recruited): neuron id -> direction."""
        return self.candidate.combined

    @property
    def score(self) -> np.ndarray:
        return self.candidate.score

    @property
    def confident(self) -> bool:
        return self.confidence.confident

    def to_json(self, infected: list[int] | tuple[int, ...]) -> dict:
        """Its entry in summary.json's ``findings`` (without labels)."""
        return {
            "id": self.id, "seed": self.candidate.seed,
            "neurons": {str(n): int(d) for n, d in self.neurons.items()},
            "infected_neurons": [int(n) for n in infected if int(n) in self.neurons],
            "threshold": float(self.threshold), "n_flagged": int(self.flagged.sum()),
            "confident": self.confident, "confidence": self.confidence.to_json(),
            "separation": round(self.candidate.separation, 4), "structure": round(self.candidate.structure, 4),
        }

    def detector(self) -> dict:
        """Its entry in detector.json's ``findings``."""
        out = {"id": self.id, "neurons": [int(n) for n in self.neurons],
               "directions": [int(d) for d in self.neurons.values()],
               "centre": [float(v) for v in self.centre], "spread": [float(v) for v in self.spread],
               "threshold": float(self.threshold), "confident": self.confident}
        if self.class_centres is not None:
            out["class_centres"] = {k: [float(v) for v in c] for k, c in self.class_centres.items()}
        return out


def same_images(later: np.ndarray, earlier: np.ndarray, share: float = SAME_IMAGES) -> bool:
    """Whether a candidate's flagged set ``later`` is the finding ``earlier`` again: it holds ``share`` of
    ``earlier``'s images (with or without more around them)."""
    before = int(earlier.sum())
    return before > 0 and int(np.sum(later & earlier)) >= share * before


def find_findings(activations: np.ndarray, scores: ArtifactScores, codes: np.ndarray | None = None,
                  threshold: float | None = None, top: int | None = None,
                  names: list[str] | None = None) -> list[Finding]:
    """The findings of a scan, ranked: confident ones first, the contest's winner first among its kind.

    ``activations``: [N, C] the layer's pooled activations (possibly memory-mapped: the scores read them
    centred within the class folders where ``scores`` were, confidence as they are); ``scores``:
    :func:`~.combine.artifact_scores` of them; ``codes``: the images' class folders as integers (None:
    no class folders), ``names`` their names by code. ``threshold`` / ``top`` (the user's ``--threshold`` /
    ``--flag-top``) replace the winner's label-free threshold (the images above ``threshold``, or the ``top`` highest), and the winner is
    then the only finding: the user chose the flags. Without class folders nothing is confident, so no
    candidate past the winner could be a finding: the winner alone is judged.
    """
    centred = scores.class_centres is not None and codes is not None
    scored = ClassCentred(activations, codes, scores.class_centres) if centred else activations
    found: list[tuple[Candidate, float, np.ndarray, Confidence]] = []
    judged = 0
    chosen = threshold is not None or top is not None  # the user set the flags: the winner is the only finding
    only_winner = chosen or not has_classes(codes)
    for rank, c in enumerate(scores.candidates[:1] if only_winner else scores.candidates):
        t = c.threshold
        if rank == 0 and top is not None:
            ordered = np.sort(c.score)[::-1]
            t = float(ordered[top]) if 0 <= top < len(ordered) else (-np.inf if top >= len(ordered) else np.inf)
        elif rank == 0 and threshold is not None:
            t = float(threshold)
        flagged = c.score > t
        if rank > 0 and (not flagged.any() or flagged.mean() > 0.5 or any(same_images(flagged, f[2]) for f in found)):
            continue  # nothing, a majority (never confident), or a finding already
        if judged >= _MAX_JUDGED or len(found) >= MAX_FINDINGS:
            break
        judged += 1
        confidence = assess(activations, flagged, codes, names, structure(c.score, t))
        if rank == 0 or confidence.listed:
            found.append((c, t, flagged, confidence))
    found.sort(key=lambda f: not f[3].confident)  # stable: the winner stays first among its kind
    out = []
    for k, (c, t, flagged, confidence) in enumerate(found, start=1):
        neurons = list(c.combined)
        centre, spread = robust_scale(np.asarray(scored[:, neurons], dtype=np.float64))
        # the score as a stored detector computes it (the same arithmetic: apply flags what the scan flagged)
        score = finding_score(scored, neurons, list(c.combined.values()), centre, spread)
        c = dataclasses.replace(c, score=score)
        by_class = ({name: scores.class_centres[j, neurons] for j, name in enumerate(scores.class_names)}
                    if centred else None)
        out.append(Finding(k, c, centre, spread, t, score > t, confidence, by_class))
    return out


#: The scan's ``--pooling`` (:func:`score_findings`).
DEFAULT_POOLING = "auto"

#: Why a finding read from each neuron's peak is not confident (docs/benchmark.md, "The peak for review").
PEAK_REASON = ("read from each neuron's peak over its map, which can take in clean images of a class that looks "
               "like the artifact: left for review")


def for_review(findings: list[Finding]) -> list[Finding]:
    """The findings, none of them confident: a peak's findings. On an unseen model a confident finding read
    from the peak took in clean images of a look-alike class (docs/benchmark.md, "The peak for review")."""
    return [dataclasses.replace(f, confidence=dataclasses.replace(
        f.confidence, confident=False, reasons=[*f.confidence.reasons, PEAK_REASON])) for f in findings]


def peak_reads_better(mean: Finding, peak: Finding) -> bool:
    """Whether the first finding read from each neuron's peak splits the images clearly further from a bell
    curve than the one read from its mean: its structure passes the mean's by :data:`~.thresholds.STRUCTURE`.
    A small artifact moves a few positions of a large map, which the mean dilutes; where both readings see
    it, the mean stays (the peak also catches a few clean images that look like the artifact somewhere)."""
    return peak.candidate.structure >= mean.candidate.structure + thresholds.STRUCTURE


def score_findings(
    mean_act: np.ndarray,
    max_act: np.ndarray,
    infected: Sequence[int],
    pooling: str = "mean",
    classes: Sequence[str | None] | None = None,
    settings: ScoringSettings = ScoringSettings(),
    threshold: float | None = None,
    top: int | None = None,
) -> tuple[ArtifactScores, list[Finding]]:
    """A scan's scores and findings (:func:`~.combine.artifact_scores`, then :func:`find_findings`).

    Where the first finding's flags go with the class folders (its class association reaches
    :data:`~.confidence.CLASS_ASSOCIATION`: the confidence step would call them class content), or those
    of the lone neurons' score that the contest set aside (:attr:`~.combine.ArtifactScores.set_aside`:
    a clean split the class folders explain is the sign of a model that learned an artifact as its
    class's evidence, even where a smaller score of several neurons won), the layer
    is scored again on its activations centred within the class folders (:class:`~.classes.ClassCentred`,
    unless ``centring`` is off in ``settings``), and that answer is the scan's. A model that learned an
    artifact as its class's evidence has detectors that fire on that class's content too; centred, what the
    classes explain is gone and an artifact spread over them still moves its detectors within each. Where
    the first answer is not class content, it stands: centring everywhere split clean images into halves
    at a rare artifact's expense (docs/benchmark.md, "Class-centred activations").

    ``pooling`` "auto": the layer is scored from each neuron's mean over its map; where none of its findings
    is confident, it is scored again from each neuron's peak, and the peak's answer is the scan's where
    :func:`peak_reads_better` (``scores.pooling`` says which). A confident finding is as much as a scan can
    trust: the peak is read only where the mean trusts nothing. With "max" (or "auto" where it takes the
    peak) no finding is confident (:func:`for_review`): the default export removes what the mean's would.
    """
    if pooling == "auto":
        mean = score_findings(mean_act, max_act, infected, "mean", classes, settings, threshold, top)
        if mean[1][0].confident or np.array_equal(mean_act[:256], max_act[:256]):  # (a class token: one reading)
            return mean
        peak = score_findings(mean_act, max_act, infected, "max", classes, settings, threshold, top)
        return peak if peak_reads_better(mean[1][0], peak[1][0]) else mean
    src = layer_pooled(mean_act, max_act, pooling)
    codes = None if classes is None else class_codes(classes)
    names = None if classes is None else class_names(classes)
    scores = artifact_scores(mean_act, max_act, infected, pooling, classes, settings)
    findings = find_findings(src, scores, codes, threshold, top, names)
    associations = [findings[0].confidence.class_association]
    if scores.set_aside is not None and has_classes(codes):
        associations.append(class_association(scores.set_aside.score > scores.set_aside.threshold, codes))
    if "centring" not in settings.off and any(a is not None and a >= CLASS_ASSOCIATION for a in associations):
        scores = artifact_scores(mean_act, max_act, infected, pooling, classes, settings, centre=True)
        findings = find_findings(src, scores, codes, threshold, top, names)
    return scores, (for_review(findings) if pooling == "max" else findings)
