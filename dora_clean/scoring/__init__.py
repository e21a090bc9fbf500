"""Step 5, scoring: every image's artifact score from the layer's activations, and which images to flag.

:func:`artifact_scores` is the entry point (:mod:`.combine`); the pieces it
is built from live in :mod:`.stats`, :mod:`.seeds`, :mod:`.recruiting`,
:mod:`.classes` and :mod:`.thresholds`. ``docs/method.md`` explains them.
"""
from .classes import CLASS_LAMBDA, ClassCentred, class_centres, class_codes, class_lambda
from .confidence import CLASS_ASSOCIATION, MIN_REPRODUCING, REPRODUCE_PRECISION, Confidence, assess, class_association, reproducing_neurons
from .combine import PIECES, ArtifactScores, Candidate, ScoringSettings, artifact_scores
from .findings import DEFAULT_POOLING, MAX_FINDINGS, SAME_IMAGES, Finding, find_findings, peak_reads_better, same_images, score_findings
from .recruiting import (EXTEND_AUC, RECRUIT_ROUNDS, SELECT_ROWS, add_near_recruits, column_ranks, flagged_aucs,
                         grow_seed, reaching, recruit_neurons)
from .seeds import DEFAULT_AGREEMENT, Seed, agreeing, tail_pursuit
from .stats import (POOLINGS, combined_score, finding_score, robust_scale, layer_pooled, mean_score, orientation, pooled, robust_z,
                    sample_rows, skewness)
from .thresholds import (NESTED_SPLITS, RECRUIT_AUC, REPRODUCING, flag_images, flag_threshold, nested_thresholds,
                         separation)

__all__ = [
    "DEFAULT_POOLING", "MAX_FINDINGS", "SAME_IMAGES", "Candidate", "Finding", "find_findings", "peak_reads_better", "same_images", "score_findings", "finding_score",
    "robust_scale", "CLASS_ASSOCIATION", "CLASS_LAMBDA", "MIN_REPRODUCING", "REPRODUCE_PRECISION", "Confidence", "assess", "class_association", "reproducing_neurons", "DEFAULT_AGREEMENT", "EXTEND_AUC", "NESTED_SPLITS", "PIECES", "POOLINGS",
    "RECRUIT_AUC", "RECRUIT_ROUNDS", "REPRODUCING", "SELECT_ROWS", "ArtifactScores", "ScoringSettings", "Seed", "add_near_recruits",
    "ClassCentred", "agreeing", "artifact_scores", "class_centres", "class_codes", "class_lambda", "column_ranks", "combined_score", "flag_images",
    "flag_threshold", "flagged_aucs", "grow_seed", "layer_pooled", "mean_score",
    "nested_thresholds", "orientation", "pooled", "reaching", "recruit_neurons", "robust_z", "sample_rows",
    "separation", "skewness", "tail_pursuit",
]
