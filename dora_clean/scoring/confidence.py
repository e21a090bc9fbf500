"""Confidence: whether a flagged set is an artifact the model sees, or nothing to trust.

Every score splits a dataset in two, on a clean one too. A flagged set is
*confident* when three things hold:

- **the layer reproduces it**: at least :data:`MIN_REPRODUCING` of the
  layer's neurons, each on its own, rank the flagged images at the top
  (at least :data:`REPRODUCE_PRECISION` of a neuron's top images, as many as
  are flagged, are flagged ones, in either direction). An artifact the model
  learned has several detectors that agree image by image; a loose split
  (a rare artifact flagged along with many clean images), or the tail of a
  spread of scores, has none;
- **the layer reproduces it within the classes too**: counted the same way on
  the activations centred within the class folders (each neuron's median in
  the image's folder taken away, :class:`~.classes.ClassCentred`), at least
  :data:`MIN_REPRODUCING` neurons still put it at their top. A model that
  learned an artifact as one class's evidence has detectors that fire on that
  class's clean images a little too; where those images fill the edge of the
  flagged set, centring takes away what put them there, and few neurons
  reproduce it (docs/benchmark.md, "The default export on two-artifact scans");
- **the class folders do not explain it**: no one class holds more of it
  than the other classes' share predicts (:func:`class_excess`: whole
  classes, or a slice of one class's clean images that a model which learned
  an artifact as its class's evidence flags with it). A split by class
  content is what a model trained without any artifact offers most readily,
  and the layer reproduces it as well as an artifact. So without class
  folders (a flat folder, or one class) nothing is confident: the flags are
  left for review. (Its :func:`class_association` with the classes is
  reported, and decides where a scan scores again within the class folders;
  until 2 Dec 2026 it was a test here too, which no benchmark row needed once
  :func:`class_excess` was added: docs/benchmark.md, "The ablation of
  today's scan".)

And at most half the images are flagged (an artifact is on a minority), and
the split has structure: it stands at least :data:`~.thresholds.STRUCTURE` of
the way from a bell curve's split toward a perfect one
(:func:`~.thresholds.structure`). The top of a feature many images share,
with an artifact at its far end, is reproduced by the neurons that read the
feature, but is no group (docs/benchmark.md, "Confident removal of a bell
curve's top"). The constants were chosen on the dev families of the
families benchmark (docs/benchmark.md, "Confidence").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import thresholds
from .classes import ClassCentred, has_classes
from .recruiting import SELECT_ROWS
from .stats import sample_rows

__all__ = ["CLASS_ASSOCIATION", "CLASS_EXCESS_P", "CLASS_EXCESS_SHARE", "MIN_REPRODUCING", "REPRODUCE_PRECISION",
           "ClassExcess", "Confidence", "assess", "class_association", "class_excess", "reproducing_neurons"]


#: A neuron reproduces a flagged set when at least this share of its top images (as many as are flagged) are flagged.
REPRODUCE_PRECISION = 0.9

#: A flagged set is confident only when at least this many neurons of the layer reproduce it. On the dev
#: families and the planted benchmark, every trusted set of the last layer had 8 or more; loose sets (a rare
#: artifact flagged with hundreds of clean images) had 3 (docs/benchmark.md, "One bar for every finding").
#: 8 since 1 Dec 2026 (was 6: sets of 0.73-0.83 precision had 6; docs/benchmark.md, "Bimodal seeds").
MIN_REPRODUCING = 8

#: ... and no class folder holds more of the flagged set than the other folders' flagged share predicts, by a
#: one-sided binomial test at this level (divided by the number of folders) ...
CLASS_EXCESS_P = 0.001

#: ... where that excess is at least this share of the flagged set (a large dataset's small differences
#: do not count). Both fixed before any run (docs/benchmark.md, "A confident set with a class inside it").
CLASS_EXCESS_SHARE = 0.1

#: A flagged set whose bias-corrected Cramer's V with the class folders (:func:`class_association`) reaches this
#: goes with the classes: where a scan's first finding does, the layer is scored again within the class folders
#: (:func:`~.findings.score_findings`).
CLASS_ASSOCIATION = 0.2


@dataclass
class ClassExcess:
    """A class folder that holds more of a flagged set than the other folders' share predicts."""

    code: int
    flagged: int
    expected: float
    name: str | None = None

    def to_json(self) -> dict:
        return {"class": self.name if self.name is not None else self.code, "flagged": self.flagged,
                "expected": round(self.expected, 1)}


@dataclass
class Confidence:
    """How strong the evidence for a flagged set is.

    Attributes:
        confident: whether the flagged set is an artifact to remove without review.
        reproducing: how many of the layer's neurons reproduce the flagged set (:func:`reproducing_neurons`).
        reproducing_centred: how many reproduce it on the activations centred within the class folders
            (None where it was not counted: without class folders, or where another test already fails).
        class_association: its :func:`class_association` with the class folders (None without them).
        flagged_share: the share of the images flagged.
        reasons: why it is not confident (empty when it is).
        class_excess: the class folder that holds more of it than the others' share predicts
            (:func:`class_excess`; None where none does, or without class folders).
        class_edge: whether the layer reproduces it as it is but not within the class folders (one class's
            content may fill its edge).
    """

    confident: bool
    reproducing: int
    class_association: float | None
    flagged_share: float
    reasons: list[str] = field(default_factory=list)
    class_excess: ClassExcess | None = None
    reproducing_centred: int | None = None
    class_edge: bool = False

    @property
    def listed(self) -> bool:
        """Whether the set stands as a finding of its own: confident, or failing only the within-class test
        (``class_edge``: the layer reproduces it, but not within the class folders), so it is listed for
        review with its reason."""
        return self.confident or (self.class_edge and len(self.reasons) == 1)

    def to_json(self) -> dict:
        return {"confident": self.confident, "reproducing_neurons": self.reproducing,
                "reproducing_neurons_centred": self.reproducing_centred,
                "class_association": None if self.class_association is None else round(self.class_association, 4),
                "class_excess": None if self.class_excess is None else self.class_excess.to_json(),
                "flagged_share": round(self.flagged_share, 4), "reasons": list(self.reasons)}


def reproducing_neurons(activations: np.ndarray, flagged: np.ndarray, precision: float = REPRODUCE_PRECISION,
                        block: int = 64) -> int:
    """How many neurons (columns of ``activations`` [N, C]) put the ``flagged`` images [N] at their top:
    of a neuron's top k images (k = how many are flagged), in either direction, at least ``precision`` are
    flagged. 0 when nothing or everything is flagged."""
    flagged = np.asarray(flagged, dtype=bool)
    k = int(flagged.sum())
    if k == 0 or k == len(flagged):
        return 0
    count = 0
    for a in range(0, activations.shape[1], block):  # a block of columns at a time: it may be memory-mapped
        x = np.asarray(activations[:, a : a + block], dtype=np.float64)
        hit = np.zeros(x.shape[1], dtype=bool)
        for sign in (1.0, -1.0):
            top = np.argpartition(-sign * x, k - 1, axis=0)[:k]
            hit |= flagged[top].mean(axis=0) >= precision
        count += int(hit.sum())
    return count


def class_association(flagged: np.ndarray, codes: np.ndarray) -> float:
    """How strongly the class folders go with a flagged set: Cramer's V of the flagged x class table,
    bias-corrected (Bergsma 2013) so that chance, in a small dataset with many classes, gives about 0.
    0: every class has the same share flagged (an artifact spread over them); 1: the flagged set is
    whole classes. ``codes``: each image's class as an integer (:func:`~.classes.class_codes`)."""
    flagged = np.asarray(flagged, dtype=bool)
    codes = np.asarray(codes)
    n = len(flagged)
    table = np.stack([np.bincount(codes[flagged], minlength=codes.max() + 1),
                      np.bincount(codes[~flagged], minlength=codes.max() + 1)]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    r, k = table.shape
    if n < 2 or k < 2 or table[0].sum() in (0, n):
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    phi2 = float(((table - expected) ** 2 / expected).sum()) / n
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    kc, rc = k - (k - 1) ** 2 / (n - 1), r - (r - 1) ** 2 / (n - 1)
    return float(np.sqrt(phi2 / max(min(kc - 1, rc - 1), 1e-12)))


def class_excess(flagged: np.ndarray, codes: np.ndarray, p: float = CLASS_EXCESS_P,
                 share: float = CLASS_EXCESS_SHARE) -> ClassExcess | None:
    """The class folder whose part of a flagged set most exceeds what the other folders' flagged share
    predicts, where the excess is significant (one-sided binomial test at ``p`` divided by the number of
    folders) and at least ``share`` of the flagged set; None where no folder's is. An artifact spread over
    the classes is flagged at one rate in every folder; a model that learned it as one class's evidence
    also flags a slice of that class's clean images, which Cramer's V of the whole table can miss."""
    from scipy.stats import binom

    flagged = np.asarray(flagged, dtype=bool)
    codes = np.asarray(codes)
    size = np.bincount(codes)
    hits = np.bincount(codes[flagged], minlength=len(size))
    n, k = len(flagged), int(flagged.sum())
    rest = n - size
    rate = (k - hits) / np.maximum(rest, 1)  # the flagged share outside each folder
    expected = rate * size
    excess = hits - expected
    folders = int(np.count_nonzero(size))
    found = ((size > 0) & (rest > 0) & (excess >= share * k)
             & (binom.sf(hits - 1, size, rate) < p / max(folders, 1)))
    if not found.any():
        return None
    c = int(np.argmax(np.where(found, excess, -np.inf)))  # the largest excess (the first on a tie)
    return ClassExcess(c, int(hits[c]), float(expected[c]))


def assess(activations: np.ndarray, flagged: np.ndarray, codes: np.ndarray | None = None,
           names: list[str] | None = None, structure: float | None = None) -> Confidence:
    """The :class:`Confidence` of a flagged set [N]: ``activations`` [N, C] the layer's pooled activations
    over the same images (possibly memory-mapped), ``codes`` their class folders as integers (None, or one
    class: not used), ``names`` the folders' names by code (for the reasons), ``structure`` the split's
    :func:`~.thresholds.structure` (None: not tested). The tests are made on at most :data:`SELECT_ROWS`
    images drawn at random."""
    flagged = np.asarray(flagged, dtype=bool)
    share = float(flagged.mean()) if len(flagged) else 0.0
    rows = sample_rows(len(flagged), SELECT_ROWS)
    if rows is not None:
        activations, flagged = np.asarray(activations[rows]), flagged[rows]
        codes = None if codes is None else np.asarray(codes)[rows]
    reproducing = reproducing_neurons(activations, flagged)
    by_class = has_classes(codes)
    association = class_association(flagged, codes) if by_class else None
    excess = class_excess(flagged, codes) if by_class and flagged.any() else None
    if excess is not None and names is not None:
        excess = dataclasses.replace(excess, name=names[excess.code])
    reasons = []
    if share == 0:
        reasons.append("nothing is flagged")
    elif share > 0.5:
        reasons.append(f"{share:.0%} of the images are flagged (an artifact is on a minority)")
    if share > 0 and structure is not None and structure < thresholds.STRUCTURE:
        reasons.append(f"the scores split no more cleanly than a bell curve's (structure {structure:.2f}): "
                       "the flagged images may be the top of a feature many images share, not a group")
    if share > 0 and reproducing < MIN_REPRODUCING:
        reasons.append(f"{reproducing} of the layer's neurons reproduce the flagged set "
                       f"(a learned artifact has {MIN_REPRODUCING} or more)")
    if not by_class:
        reasons.append("no class folders: without them dora-clean cannot tell an artifact from one class's "
                       "content (review the flags)")
    if excess is not None:
        folder = f"class folder {excess.name!r}" if excess.name is not None else "one class folder"
        reasons.append(f"{folder} holds {excess.flagged} of the flagged images where the other folders' share "
                       f"predicts {excess.expected:.0f}: part of the set may be that class's content")
    centred, class_edge = None, False
    if not reasons:  # counted only where it decides: every other test passed (a pass of the layer per finding)
        centred = reproducing_neurons(ClassCentred(activations, codes), flagged)
        class_edge = centred < MIN_REPRODUCING
        if class_edge:
            reasons.append(f"within the class folders only {centred} of the layer's neurons reproduce the flagged "
                           "set (each folder's median taken away): part of it may be one class's content")
    return Confidence(not reasons, reproducing, association, share, reasons, excess, centred, class_edge)
