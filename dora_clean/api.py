"""The public API: scan a folder or a FiftyOne dataset's images, and work with the run as an object."""
from __future__ import annotations

import csv
import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import DoraError
from .rundir import RunDir, Scores

if TYPE_CHECKING:
    import fiftyone as fo
    from torch import nn

__all__ = ["ScanRun", "compute_artifacts", "scan"]


class ScanRun:
    """A scan's run directory (DESIGN.md, "The run directory") as an object.

    The properties read the files each time, so they see what a later step
    (the FiftyOne import, an export) wrote.
    """

    def __init__(self, path: str | os.PathLike):
        self._run = RunDir(Path(path))

    @classmethod
    def open(cls, path: str | os.PathLike) -> ScanRun:
        """An earlier run; a DoraError when ``path`` is not a run directory."""
        run = cls(path)
        run._run.read_summary()
        return run

    @property
    def path(self) -> Path:
        return self._run.path

    @property
    def summary(self) -> dict:
        """summary.json."""
        return self._run.read_summary()

    @property
    def scores(self) -> Scores:
        """scores.csv, as columns."""
        return self._run.read_scores()

    @property
    def flagged(self) -> list[str]:
        """The flagged images: paths relative to the scanned folder, in scores.csv's order."""
        scores = self.scores
        return [p for p, f in zip(scores.filepaths, scores.flagged) if f]

    @property
    def artifact_found(self) -> bool:
        """Whether the scan trusts its flags (summary.json's ``confidence`` says why or why not); the default
        export removes flagged images only then."""
        return bool(self.summary.get("artifact_found"))

    @property
    def findings(self) -> list[dict]:
        """The suspected artifacts, ranked (summary.json's ``findings``): each with ``id``, ``neurons``,
        ``n_flagged``, ``confident`` and ``confidence``; their scores and flags are scores.csv's
        ``finding_K`` and ``flagged_K``."""
        return list(self.summary.get("findings", []))

    @property
    def infected_neurons(self) -> list[int]:
        """The infected neurons, most anomalous first."""
        return [int(n) for n in self.summary.get("infected_neurons", [])]

    def to_fiftyone(self, name: str | None = None, progress: bool = True) -> "fo.Dataset":
        """The run's review dataset in FiftyOne (:func:`dora_clean.review.to_fiftyone`)."""
        from .review import to_fiftyone

        return to_fiftyone(self.path, name=name, progress=progress)

    def export(self, to: str | os.PathLike, **kw: Any) -> dict:
        """A cleaned copy of the dataset (:func:`dora_clean.export.export_clean`); returns its counts."""
        from .export import export_clean

        return export_clean(self.path, to, **kw)

    def apply(self, dataset: str | os.PathLike, **kw: Any) -> dict:
        """Score new images with this scan's detector.json (:func:`dora_clean.detector.apply_detector`);
        returns the summary of what it wrote."""
        from .detector import apply_detector

        return apply_detector(self.path, dataset, **kw)

    def review(self, **kw: Any):
        """The FiftyOne App on the flagged images (:func:`dora_clean.review.launch_review`)."""
        from .review import launch_review

        return launch_review(self.path, **kw)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        try:
            s = self.summary
            counts = f", {s.get('n_images')} images, {s.get('n_flagged')} flagged"
        except DoraError:
            counts = ", no summary.json"
        return f"ScanRun({str(self.path)!r}{counts})"


def _settings(**given: Any):
    """ScanSettings from keyword arguments; a TypeError names an unknown one."""
    from .pipeline import ScanSettings

    names = {f.name for f in dataclasses.fields(ScanSettings)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; the settings are the fields of "
                        f"dora_clean.pipeline.ScanSettings: {', '.join(sorted(names))}")
    return ScanSettings(**given)


def scan(
    dataset: str | os.PathLike,
    model: "str | nn.Module | None" = None,
    *,
    layer: str | None = None,
    weights: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    **settings: Any,
) -> ScanRun:
    """Scan a folder of images (flat or in class folders) and write the run directory; returns the run.

    ``model`` is a spec as ``--model`` (None: the bundled demo model) or an
    ``nn.Module``; ``settings`` are fields of
    :class:`dora_clean.pipeline.ScanSettings` (``image_size``, ``device``,
    ``fiftyone``, ``sams=SamsConfig(...)``, ...). ``out`` defaults to
    ``dora-runs/<folder name>``.

    >>> import dora_clean as dc
    >>> run = dc.scan("data/train", "resnet50", weights="model.pth", fiftyone=False)
    >>> run.flagged[:3]
    ['cat/img_0012.png', ...]
    """
    from .pipeline import default_run_dir, scan_dataset

    dataset = Path(dataset)
    out_dir = Path(out) if out else default_run_dir(dataset)
    s = _settings(model=model, layer=layer, weights=None if weights is None else os.fspath(weights),
                  labels=None if labels is None else os.fspath(labels), out=os.fspath(out_dir), **settings)
    scan_dataset(dataset, s)
    return ScanRun(out_dir)


def _local_files(filepaths: Sequence[str]) -> tuple[Path, list[str]]:
    """The folder the samples' files share, and each file relative to it (posix)."""
    if not filepaths:
        raise DoraError("the FiftyOne dataset has no samples to scan")
    for fp in filepaths:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", fp) or not os.path.isabs(fp):
            raise DoraError(f"compute_artifacts scans local image files; the sample {fp!r} is not one")
    root = os.path.commonpath([os.path.dirname(fp) for fp in filepaths])
    if os.path.dirname(root) == root:
        raise DoraError(f"the samples' files share no folder (their common root is {root}); "
                        "scan a view whose files lie under one folder")
    return Path(root), [Path(os.path.relpath(fp, root)).as_posix() for fp in filepaths]


def _write_labels(values: Sequence[Any], relpaths: Sequence[str], field: str, path: Path) -> Path:
    """A labels CSV (filepath,artifact) from a field of bools or 0/1 (None: no label)."""
    labels: dict[str, int] = {}
    for rel, v in zip(relpaths, values):
        if v is None:
            continue
        if v not in (0, 1):  # True/False too
            raise DoraError(f"the field {field!r} must hold bools or 0/1 (None: unlabelled); {rel} has {v!r}")
        if labels.setdefault(rel, int(v)) != int(v):
            raise DoraError(f"two samples of {rel} have different {field!r} values")
    if not labels:
        raise DoraError(f"no sample has a value in the field {field!r}")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "artifact"])
        w.writerows(labels.items())
    return path


def _write_fields(collection: "fo.SampleCollection", run: ScanRun, ids: Sequence[str], relpaths: Sequence[str]) -> None:
    """The run's scores on the user's samples: fields, the flagged tag; None where the scan skipped a file."""
    import fiftyone as fo

    from .review import FLAGGED_TAG, finding_field, finding_tag

    scores = run.scores
    row_of = {rel: i for i, rel in enumerate(scores.filepaths)}
    rows = [row_of.get(rel) for rel in relpaths]

    def put(field: str, values: list) -> None:
        collection.set_values(field, {sid: None if r is None else values[r] for sid, r in zip(ids, rows)},
                              key_field="id")

    put("dora_score", scores.score.tolist())
    put("dora_flagged", scores.flagged.tolist())
    for n, values in scores.neurons.items():
        put(f"dora_neuron_{n}", values.tolist())
    for k, values in scores.findings.items():
        put(finding_field(k), values.tolist())
    stale = {f for f in collection.get_field_schema() if re.fullmatch(r"dora_(neuron|finding)_\d+", f)} \
        - {f"dora_neuron_{n}" for n in scores.neurons} - {finding_field(k) for k in scores.findings}
    for f in sorted(stale):  # an earlier call's infected neurons and findings
        if isinstance(collection, fo.Dataset):
            collection.delete_sample_field(f)
        else:
            collection.clear_sample_field(f)
    old_tags = [t for t in collection.count_sample_tags() if re.fullmatch(r"dora:finding-\d+", t)]
    collection.untag_samples([FLAGGED_TAG] + old_tags)
    for tag, flags in [(FLAGGED_TAG, scores.flagged)] + [(finding_tag(k), f) for k, f in scores.finding_flags.items()]:
        chosen = [sid for sid, r in zip(ids, rows) if r is not None and flags[r]]
        if chosen:
            collection.select(chosen).tag_samples(tag)


def compute_artifacts(
    dataset: "fo.SampleCollection",
    model: "str | nn.Module",
    layer: str | None = None,
    *,
    image_size: int | None = None,
    labels_field: str | None = None,
    out: str | os.PathLike | None = None,
    **settings: Any,
) -> ScanRun:
    """Scan the images of a FiftyOne dataset (or view) and write dora-clean's results onto its samples.

    In the style of FiftyOne Brain's ``compute_*`` methods: the samples' files
    (local, under one common folder) are scanned with ``model`` (a spec as
    ``--model``, or an ``nn.Module``) at ``layer``, and each sample gets
    ``dora_score``, ``dora_flagged`` (bool), ``dora_neuron_<i>`` per infected
    neuron, ``dora_finding_<K>`` per finding, the tag ``dora:flagged`` when
    flagged and ``dora:finding-K`` when finding K flags it (None where the scan
    could not read the file). Nothing else of the dataset changes, and no
    review dataset is made (``run.to_fiftyone()`` makes one). ``labels_field``
    names a field of bools or 0/1 that says which images hold the artifact
    (for the AUCs). ``settings`` are fields of
    :class:`dora_clean.pipeline.ScanSettings`. The run directory (``out``,
    default ``dora-runs/<common folder name>``) is returned as a
    :class:`ScanRun`.

    >>> import fiftyone.zoo as foz
    >>> import torchvision
    >>> import dora_clean as dc
    >>> ds = foz.load_zoo_dataset("quickstart")
    >>> model = torchvision.models.resnet18(weights="DEFAULT")
    >>> run = dc.compute_artifacts(ds, model, "layer3", image_size=224)
    >>> ds.match_tags("dora:flagged").sort_by("dora_score", reverse=True)
    """
    for name in ("fiftyone", "files", "labels"):
        if name in settings:
            raise TypeError(f"compute_artifacts sets {name!r} itself"
                            + ("; use labels_field" if name == "labels" else ""))
    if getattr(dataset, "media_type", "image") != "image":
        raise DoraError(f"compute_artifacts scans images; this dataset holds {dataset.media_type}")
    ids, filepaths = dataset.values(["id", "filepath"])
    root, relpaths = _local_files(filepaths)
    with tempfile.TemporaryDirectory(prefix="dora-clean-labels-") as tmp:
        labels = None
        if labels_field is not None:
            if not dataset.has_sample_field(labels_field):
                raise DoraError(f"the dataset has no field {labels_field!r}")
            labels = _write_labels(dataset.values(labels_field), relpaths, labels_field, Path(tmp) / "labels.csv")
        run = scan(root, model, layer=layer, labels=labels, out=out, image_size=image_size, fiftyone=False,
                   files=relpaths, **settings)
    _write_fields(dataset, run, ids, relpaths)
    return run
