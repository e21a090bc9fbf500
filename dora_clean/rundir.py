"""The run directory (DESIGN.md, "The run directory"): read and write its files."""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import DoraError

__all__ = ["Scores", "dataset_root", "read_scores", "read_summary", "sample_filepaths", "update_summary"]


@dataclass
class Scores:
    """scores.csv as columns; row i is also row i of heatmaps.npy."""

    filepaths: list[str]  # posix, relative to the dataset
    labels: list[str]  # class folder names ("" in a flat layout)
    score: np.ndarray  # float
    neurons: dict[int, np.ndarray]  # infected neuron -> its score per image
    flagged: np.ndarray  # bool
    artifact: np.ndarray | None  # bool, only when labels were given


def read_summary(run_dir: str | os.PathLike) -> dict:
    """The run's summary.json; a DoraError when ``run_dir`` is not a run."""
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DoraError(f"{run_dir} is not a dora-clean run directory (no summary.json)") from None
    except (OSError, ValueError) as e:
        raise DoraError(f"cannot read {path}: {e}") from None


def update_summary(run_dir: str | os.PathLike, **values: Any) -> dict:
    """Set keys of summary.json (read, update, atomic write); returns the new summary."""
    summary = read_summary(run_dir)
    summary.update(values)
    with atomic_write(Path(run_dir) / "summary.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary


def read_scores(run_dir: str | os.PathLike) -> Scores:
    """The run's scores.csv (see DESIGN.md, "The run directory")."""
    path = Path(run_dir) / "scores.csv"
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise DoraError(f"{run_dir} has no scores.csv: run `dora-clean scan` first") from None
    missing = {"filepath", "label", "score", "flagged"} - set(columns)
    if missing:
        raise DoraError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
    try:
        return Scores(
            filepaths=[r["filepath"] for r in rows],
            labels=[r["label"] or "" for r in rows],
            score=np.array([float(r["score"]) for r in rows], dtype=float),
            neurons={
                int(c[len("neuron_"):]): np.array([float(r[c]) for r in rows], dtype=float)
                for c in columns
                if re.fullmatch(r"neuron_\d+", c)
            },
            flagged=np.array([int(r["flagged"]) == 1 for r in rows], dtype=bool),
            artifact=(
                np.array([int(r["artifact"]) == 1 for r in rows], dtype=bool)
                if "artifact" in columns
                else None
            ),
        )
    except (TypeError, ValueError) as e:
        raise DoraError(f"{path} has a bad value: {e}") from None


def dataset_root(summary: dict, run_dir: str | os.PathLike) -> Path:
    """The scanned dataset's folder, from summary.json."""
    if not summary.get("dataset"):
        raise DoraError(f"{Path(run_dir) / 'summary.json'} does not name the scanned dataset")
    return Path(summary["dataset"])


def sample_filepaths(root: str | os.PathLike, relpaths: list[str]) -> list[str]:
    """The absolute filepaths of scores.csv's relative ones (as in the FiftyOne dataset)."""
    return [os.path.normpath(os.path.join(root, rel)) for rel in relpaths]
