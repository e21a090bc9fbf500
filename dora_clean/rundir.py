"""The run directory (DESIGN.md, "The run directory"): the one place that reads and writes its files."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from .atomic import atomic_save, atomic_write, remove_stale_temps
from .errors import DoraError
from .scanning.files import Skipped

__all__ = [
    "NeuronRow", "RemovedRow", "RunDir", "SamsImage", "Scores", "dataset_root", "read_scores", "read_summary",
    "removed_csv", "sample_filepaths", "update_summary",
]

SUMMARY = "summary.json"
NEURONS = "neurons.csv"
SCORES = "scores.csv"
HEATMAPS = "heatmaps.npy"
SKIPPED = "skipped.csv"
REMOVED = "removed.csv"
SAMS = "sams"
REPORT = "report.html"
DETECTOR = "detector.json"

_NEURON_COLUMNS = ["neuron", "outlier_score", "infected", "dead", "atlas_x", "atlas_y"]
_REMOVED_COLUMNS = ["filepath", "reason", "score", "findings"]


@dataclass
class Scores:
    """scores.csv as columns; row i is also row i of heatmaps.npy."""

    filepaths: list[str]  # posix, relative to the dataset
    labels: list[str]  # class folder names ("" in a flat layout)
    score: np.ndarray  # float
    neurons: dict[int, np.ndarray]  # infected neuron -> its score per image (column order: the infected order)
    flagged: np.ndarray  # bool: the union of the confident findings' flags (finding 1's where none is confident)
    artifact: np.ndarray | None  # bool, only when labels were given; None for an image the labels leave out
    findings: dict[int, np.ndarray] = field(default_factory=dict)  # finding id -> its score per image
    finding_flags: dict[int, np.ndarray] = field(default_factory=dict)  # finding id -> the images it flags (bool)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)  # label column -> labels, with several columns

    def flags_of(self, finding: int) -> np.ndarray:
        """The images a finding flags; a run written before findings has one: ``flagged``."""
        if finding in self.finding_flags:
            return self.finding_flags[finding]
        if not self.finding_flags and finding == 1:
            return self.flagged
        raise DoraError(f"the run has no finding {finding} (it has: {', '.join(map(str, self.finding_ids)) or 'none'})")

    @property
    def finding_ids(self) -> list[int]:
        """The run's findings, by id (``[1]`` for a run written before findings)."""
        return sorted(self.finding_flags) or [1]


@dataclass(frozen=True)
class NeuronRow:
    """One row of neurons.csv."""

    neuron: int
    outlier_score: float
    infected: bool
    dead: bool
    atlas_x: float
    atlas_y: float
    auc: float | None = None  # only where labels were given


@dataclass(frozen=True)
class RemovedRow:
    """One row of removed.csv: an image the export left out, and why."""

    filepath: str
    reason: str  # "tagged", "flagged" or "skipped[: why]"
    score: float | None = None  # None for a skipped image
    findings: tuple[int, ...] = ()  # the chosen findings that flag it (for "flagged")


class SamsImage(NamedTuple):
    """One s-AMS image, ``sams/NEURON_SAMPLE.png``."""

    neuron: int
    sample: int
    path: Path


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with atomic_write(path, newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """The rows and the columns; FileNotFoundError when the file is not there."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def _read_json(path: Path, missing: str) -> dict:
    """A JSON file; a DoraError saying ``missing`` when it is not there, or what is wrong with it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DoraError(missing) from None
    except (OSError, ValueError) as e:
        raise DoraError(f"cannot read {path}: {e}") from None


def _write_json(path: Path, value: dict, indent: int) -> None:
    with atomic_write(path) as f:
        json.dump(value, f, indent=indent)
        f.write("\n")


def _cell(value: Any) -> Any:
    """An artifact label as written: 0/1, or empty for an image without a label."""
    return "" if value is None or value == "" else int(value)


def _artifact_column(rows: list[dict], column: str = "artifact") -> np.ndarray:
    """Artifact labels: bool, or (where the labels file left some images out) objects with None for those."""
    values = [None if r[column] in ("", None) else int(r[column]) == 1 for r in rows]
    return np.array(values, dtype=object if None in values else bool)


def removed_csv(rows: Iterable[RemovedRow]) -> str:
    """The text of removed.csv (it also goes into the exported copy)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_REMOVED_COLUMNS)
    w.writerows([r.filepath, r.reason, "" if r.score is None else repr(float(r.score)), " ".join(map(str, r.findings))]
                for r in rows)
    return buf.getvalue()


@dataclass(frozen=True)
class RunDir:
    """A run directory: the path of each of its files, and the one reader and writer of each."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def neurons_path(self) -> Path:
        return self.path / NEURONS

    @property
    def scores_path(self) -> Path:
        return self.path / SCORES

    @property
    def heatmaps_path(self) -> Path:
        return self.path / HEATMAPS

    @property
    def skipped_path(self) -> Path:
        return self.path / SKIPPED

    @property
    def removed_path(self) -> Path:
        return self.path / REMOVED

    @property
    def sams_dir(self) -> Path:
        return self.path / SAMS

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def detector_path(self) -> Path:
        return self.path / DETECTOR

    @property
    def atlas_plot(self) -> Path:
        return self.path / "atlas.png"

    @property
    def sams_plot(self) -> Path:
        return self.path / "infected_sams.png"

    @property
    def roc_plot(self) -> Path:
        return self.path / "roc.png"

    @property
    def flagged_plot(self) -> Path:
        return self.path / "flagged.png"

    def finding_plot(self, finding: int) -> Path:
        """The report's page of one finding, ``finding_K.png``."""
        return self.path / f"finding_{finding}.png"

    def sams_image(self, neuron: int, sample: int) -> Path:
        """The path of one s-AMS image, ``sams/NEURON_SAMPLE.png``."""
        return self.sams_dir / f"{neuron}_{sample}.png"

    def create(self) -> None:
        """Make the folder and ``sams/``, and clear what an interrupted run was writing."""
        self.sams_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.path, self.sams_dir):
            remove_stale_temps(d)

    # -- summary.json ------------------------------------------------------------------------------------------
    def read_summary(self) -> dict:
        """The run's summary.json; a DoraError when this is not a run."""
        return _read_json(self.summary_path, f"{self.path} is not a dora-clean run directory (no summary.json)")

    def write_summary(self, summary: dict) -> None:
        """Write summary.json (atomically)."""
        _write_json(self.summary_path, summary, indent=2)

    def update_summary(self, **values: Any) -> dict:
        """Set keys of summary.json (read, update, atomic write); returns the new summary."""
        summary = self.read_summary()
        summary.update(values)
        self.write_summary(summary)
        return summary

    def dataset_root(self, summary: dict | None = None) -> Path:
        """The scanned dataset's folder, from summary.json."""
        return dataset_root(self.read_summary() if summary is None else summary, self.path)

    # -- detector.json ---------------------------------------------------------------------------------------
    def write_detector(self, detector: dict) -> None:
        """Write detector.json (atomically): what ``dora-clean apply`` needs to score new images."""
        _write_json(self.detector_path, detector, indent=1)

    def read_detector(self) -> dict:
        """The run's detector.json; a DoraError when there is none."""
        return _read_json(self.detector_path,
                          f"{self.path} has no detector.json: scan again with this version of dora-clean")

    # -- neurons.csv -------------------------------------------------------------------------------------------
    def write_neurons(self, rows: Sequence[NeuronRow]) -> None:
        """Write neurons.csv; the ``auc`` column when the rows have one."""
        with_auc = any(r.auc is not None for r in rows)
        _write_csv(self.neurons_path, _NEURON_COLUMNS + (["auc"] if with_auc else []), (
            [r.neuron, f"{r.outlier_score:.6f}", int(r.infected), int(r.dead), f"{r.atlas_x:.5f}", f"{r.atlas_y:.5f}"]
            + ([f"{r.auc:.6f}" if r.auc is not None else ""] if with_auc else [])
            for r in rows
        ))

    def read_neurons(self) -> list[NeuronRow]:
        """The rows of neurons.csv, in file order."""
        try:
            rows, columns = _read_csv(self.neurons_path)
        except FileNotFoundError:
            raise DoraError(f"{self.path} has no neurons.csv: run `dora-clean scan` first") from None
        missing = set(_NEURON_COLUMNS) - set(columns)
        if missing:
            raise DoraError(f"{self.neurons_path} lacks the column(s) {', '.join(sorted(missing))}")

        def number(text: str | None) -> float | None:
            return float(text) if text not in (None, "") else None

        try:
            return [NeuronRow(
                neuron=int(r["neuron"]), outlier_score=float(r["outlier_score"] or "nan"),
                infected=r["infected"] == "1", dead=r["dead"] == "1",
                atlas_x=float(r["atlas_x"]), atlas_y=float(r["atlas_y"]), auc=number(r.get("auc")),
            ) for r in rows]
        except (TypeError, ValueError) as e:
            raise DoraError(f"{self.neurons_path} has a bad value: {e}") from None

    # -- scores.csv --------------------------------------------------------------------------------------------
    def write_scores(self, scores: Scores) -> None:
        """Write scores.csv: one row per image."""
        neurons, ids = list(scores.neurons), sorted(scores.findings)
        header = (["filepath", "label", "score"] + [f"neuron_{n}" for n in neurons] + ["flagged"]
                  + [c for k in ids for c in (f"finding_{k}", f"flagged_{k}")])
        labels = ([scores.artifact] if scores.artifact is not None else []) + list(scores.artifacts.values())
        header += (["artifact"] if scores.artifact is not None else []) + [f"artifact_{c}" for c in scores.artifacts]
        columns = [scores.neurons[n] for n in neurons]
        pairs = [(scores.findings[k], scores.finding_flags[k]) for k in ids]
        _write_csv(self.scores_path, header, (
            [p, scores.labels[i] or "", f"{scores.score[i]:.6f}"] + [f"{c[i]:.6f}" for c in columns]
            + [int(scores.flagged[i])] + [v for f, g in pairs for v in (f"{f[i]:.6f}", int(g[i]))]
            + [_cell(c[i]) for c in labels]
            for i, p in enumerate(scores.filepaths)
        ))

    def read_scores(self) -> Scores:
        """The run's scores.csv (see DESIGN.md, "The run directory")."""
        path = self.scores_path
        try:
            rows, columns = _read_csv(path)
        except FileNotFoundError:
            raise DoraError(f"{self.path} has no scores.csv: run `dora-clean scan` first") from None
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
                artifact=_artifact_column(rows) if "artifact" in columns else None,
                findings={int(c[len("finding_"):]): np.array([float(r[c]) for r in rows], dtype=float)
                          for c in columns if re.fullmatch(r"finding_\d+", c)},
                finding_flags={int(c[len("flagged_"):]): np.array([int(r[c]) == 1 for r in rows], dtype=bool)
                               for c in columns if re.fullmatch(r"flagged_\d+", c)},
                artifacts={c[len("artifact_"):]: _artifact_column(rows, c)
                           for c in columns if c.startswith("artifact_")},
            )
        except (TypeError, ValueError) as e:
            raise DoraError(f"{path} has a bad value: {e}") from None

    # -- heatmaps.npy ------------------------------------------------------------------------------------------
    def write_heatmaps(self, maps: np.ndarray) -> None:
        """Write heatmaps.npy: one float16 map per scores.csv row."""
        atomic_save(self.heatmaps_path, lambda p: np.save(p, np.asarray(maps).astype(np.float16)))

    def read_heatmaps(self, mmap: bool = True) -> np.ndarray | None:
        """heatmaps.npy (memory-mapped by default); None when the run has none."""
        if not self.heatmaps_path.exists():
            return None
        return np.load(self.heatmaps_path, mmap_mode="r" if mmap else None)

    # -- skipped.csv and removed.csv ---------------------------------------------------------------------------
    def write_skipped(self, skipped: Iterable[Skipped]) -> None:
        """Write skipped.csv, sorted by path."""
        _write_csv(self.skipped_path, ["filepath", "reason"],
                   ([k.relpath, k.reason] for k in sorted(skipped, key=lambda k: k.relpath)))

    def read_skipped(self) -> list[Skipped]:
        """The images the scan left out; none when there is no skipped.csv."""
        try:
            rows, _ = _read_csv(self.skipped_path)
        except FileNotFoundError:
            return []
        return [Skipped(r["filepath"], r.get("reason") or "") for r in rows]

    def write_removed(self, rows: Iterable[RemovedRow]) -> None:
        """Write removed.csv, the export's manifest of what it left out."""
        text = removed_csv(rows)
        with atomic_write(self.removed_path) as f:
            f.write(text)

    def read_removed(self) -> list[RemovedRow]:
        """removed.csv's rows; none when nothing was exported."""
        try:
            rows, _ = _read_csv(self.removed_path)
        except FileNotFoundError:
            return []
        return [RemovedRow(r["filepath"], r["reason"], float(r["score"]) if r.get("score") else None,
                           tuple(int(k) for k in (r.get("findings") or "").split())) for r in rows]

    # -- sams/ -------------------------------------------------------------------------------------------------
    def copy_sams(self, source: Path, neurons: Sequence[int], n_signals: int) -> None:
        """Copy the cached s-AMS PNG files (``source/N_J.png``) into ``sams/``, unless the same size is there."""
        self.sams_dir.mkdir(parents=True, exist_ok=True)
        for n in neurons:
            for j in range(n_signals):
                src, dst = Path(source) / f"{n}_{j}.png", self.sams_image(n, j)
                if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                    shutil.copyfile(src, dst)

    def sams_images(self) -> list[SamsImage]:
        """The s-AMS images in ``sams/``, by neuron then sample."""
        found = []
        for path in self.sams_dir.glob("*.png"):
            m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
            if m:
                found.append(SamsImage(int(m.group(1)), int(m.group(2)), path))
        return sorted(found)


def read_summary(run_dir: str | os.PathLike) -> dict:
    """The run's summary.json; a DoraError when ``run_dir`` is not a run."""
    return RunDir(run_dir).read_summary()


def update_summary(run_dir: str | os.PathLike, **values: Any) -> dict:
    """Set keys of summary.json (read, update, atomic write); returns the new summary."""
    return RunDir(run_dir).update_summary(**values)


def read_scores(run_dir: str | os.PathLike) -> Scores:
    """The run's scores.csv (see DESIGN.md, "The run directory")."""
    return RunDir(run_dir).read_scores()


def dataset_root(summary: dict, run_dir: str | os.PathLike) -> Path:
    """The scanned dataset's folder, from summary.json."""
    if not summary.get("dataset"):
        raise DoraError(f"{Path(run_dir) / SUMMARY} does not name the scanned dataset")
    return Path(summary["dataset"])


def sample_filepaths(root: str | os.PathLike, relpaths: list[str]) -> list[str]:
    """The absolute filepaths of scores.csv's relative ones (as in the FiftyOne dataset)."""
    return [os.path.normpath(os.path.join(root, rel)) for rel in relpaths]
