"""Step 6: artifact labels, ROC curves and AUC (scikit-learn)."""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .errors import DoraError

__all__ = ["Curve", "LabelWarning", "auc", "break_even", "neuron_aucs", "precision_recall", "rank_aucs", "read_label_columns", "read_labels", "roc_curves"]


class LabelWarning(UserWarning):
    """Labels and files disagree, but the evaluation can go on."""


def _norm(path: str, root: Path) -> str:
    p = path.strip().replace("\\", "/")
    if Path(p).is_absolute():
        try:
            p = Path(p).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return p
    return PurePosixPath(p).as_posix().removeprefix("./")


def read_labels(path: str | Path, root: str | Path, relpaths: Sequence[str]) -> dict[str, int]:
    """Artifact labels matched to the dataset's files: relpath -> 1 where the image carries an artifact
    (any column of :func:`read_label_columns`), else 0."""
    columns = read_label_columns(path, root, relpaths)
    out: dict[str, int] = {}
    for labels in columns.values():
        for p, v in labels.items():
            out[p] = max(out.get(p, 0), v)
    return out


def _label_value(text: str) -> int | None:
    value = text.strip().lower()
    if value in ("1", "1.0", "true", "yes"):
        return 1
    if value in ("0", "0.0", "false", "no"):
        return 0
    return None


def read_label_columns(path: str | Path, root: str | Path, relpaths: Sequence[str]) -> dict[str, dict[str, int]]:
    """Read artifact labels and match them to the dataset's files: column -> {relpath: 0/1}.

    The file has a ``filepath`` column and either ``artifact`` or one 0/1
    column per kind of artifact (``filepath,ruler,bandaid``). Raises
    DoraError for a missing file, missing columns, values other than 0/1,
    duplicated paths, or labels that match no image; warns
    (``LabelWarning``) when only some images are labelled or some labels
    name files that are not in the dataset.
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise DoraError(f"labels file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or []]
            names = [c for c in fields if c and c != "filepath"]
            if "filepath" not in fields or not names:
                raise DoraError(
                    f"labels file {path} needs the columns filepath,artifact or filepath and one 0/1 column per "
                    f"artifact, like filepath,ruler,bandaid (it has: {','.join(fields) or 'none'})"
                )
            if len(set(names)) != len(names):
                raise DoraError(f"labels file {path} has a column twice ({','.join(fields)})")
            rows = [{k.strip(): (v or "") for k, v in r.items() if k} for r in reader]
    except UnicodeDecodeError as e:
        raise DoraError(f"labels file {path} is not UTF-8 text") from e
    columns: dict[str, dict[str, int]] = {c: {} for c in names}
    bad_values, dupes, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        key = _norm(row["filepath"], root)
        if key in seen:
            dupes.append(key)
        seen.add(key)
        for c in names:
            v = _label_value(row.get(c, ""))
            if v is None:
                bad_values.append(f"line {line}, {c}: {row.get(c, '')!r}")
            else:
                columns[c][key] = v
    if bad_values:
        raise DoraError(f"labels file {path}: each artifact column must be 0 or 1 ({'; '.join(bad_values[:3])})")
    if dupes:
        raise DoraError(f"labels file {path} names {dupes[0]} more than once")
    known = set(relpaths)
    extra = [p for p in seen if p not in known]
    matched = [p for p in seen if p in known]
    if not matched:
        example = next(iter(seen), "")
        raise DoraError(
            f"no label in {path} matches an image of {root} (e.g. {example!r}): "
            "filepath must be relative to the dataset folder, like class/image.png"
        )
    if extra:
        warnings.warn(
            f"{len(extra)} label(s) name files not scanned (e.g. {sorted(extra)[0]}); they are ignored", LabelWarning
        )
    missing = len(known) - len(matched)
    if missing:
        warnings.warn(f"{missing} image(s) have no label; ROC/AUC use the {len(matched)} labelled ones", LabelWarning)
    return {c: {p: v for p, v in labels.items() if p in known} for c, labels in columns.items()}


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None where the labels hold one class only."""
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def neuron_aucs(
    labels: np.ndarray, activations: np.ndarray, rows: np.ndarray | None = None, block: int = 64
) -> np.ndarray:
    """AUC of every neuron (column of ``activations`` [N, C]) as an artifact detector: [C].

    The Mann-Whitney form of the AUC (ties count half, as in
    ``roc_auc_score``), from the ranks of ``block`` columns at a time, so a
    memory-mapped array is never read whole.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    if len(labels) == 0 or labels.min() == labels.max():
        return np.full(activations.shape[1], np.nan)
    out = np.empty(activations.shape[1])
    for a in range(0, activations.shape[1], block):
        cols = np.asarray(activations[:, a : a + block], dtype=np.float64)
        out[a : a + block] = rank_aucs(rankdata(cols if rows is None else cols[rows], axis=0), labels)
    return out


def rank_aucs(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The Mann-Whitney AUC of each column from its ranks [N, C] (ties sharing their mean rank)
    against boolean ``labels`` [N] holding both kinds: [C]."""
    n = len(labels)
    n1 = int(labels.sum())
    n0 = n - n1
    if n1 <= n0:
        rank_sum = ranks[labels].sum(axis=0, dtype=np.float64)
    else:  # from the smaller side: each column's ranks add up to n(n+1)/2
        rank_sum = n * (n + 1) / 2 - ranks[~labels].sum(axis=0, dtype=np.float64)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass
class Curve:
    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def roc_curves(labels: np.ndarray, named_scores: dict[str, np.ndarray]) -> list[Curve]:
    """ROC curves of several scores against one set of labels."""
    curves = []
    for name, s in named_scores.items():
        fpr, tpr, _ = roc_curve(labels, np.asarray(s, dtype=np.float64))
        curves.append(Curve(name, fpr, tpr, float(roc_auc_score(labels, s))))
    return curves


def precision_recall(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a flagged set."""
    labels, flagged = np.asarray(labels).astype(bool), np.asarray(flagged).astype(bool)
    tp = np.sum(labels & flagged)
    precision = tp / flagged.sum() if flagged.sum() else 0.0
    recall = tp / labels.sum() if labels.sum() else 0.0
    return float(precision), float(recall)


def break_even(labels: np.ndarray, scores: np.ndarray) -> float:
    """The precision (= recall) at the threshold where a score's precision equals its recall.

    That threshold flags exactly as many images as there are artifacts.
    """
    labels = np.asarray(labels).astype(bool)
    n = int(labels.sum())
    if n == 0:
        return float("nan")
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:n]
    return float(labels[top].mean())
