"""The review dataset: one FiftyOne sample per scanned image, with the scores, flags, tags and heatmaps."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DoraError
from ..rundir import RunDir, sample_filepaths
from .database import import_fiftyone

if TYPE_CHECKING:
    import fiftyone as fo

__all__ = ["FLAGGED_TAG", "FLAGGED_VIEW", "KEEP_TAG", "REMOVE_TAG", "default_name", "finding_field", "finding_tag",
           "finding_view", "run_findings", "to_fiftyone"]


FLAGGED_TAG = "dora:flagged"


REMOVE_TAG = "remove"


KEEP_TAG = "keep"


FLAGGED_VIEW = "flagged"


def finding_field(finding: int) -> str:
    """The review dataset's score field of a finding: ``dora_finding_K``."""
    return f"dora_finding_{finding}"


def finding_tag(finding: int) -> str:
    """The tag on the images a finding flags: ``dora:finding-K``."""
    return f"dora:finding-{finding}"


def finding_view(finding: int) -> str:
    """The saved view of a finding's flagged images: ``finding-K``."""
    return f"finding-{finding}"


_FINDING_FIELD = re.compile(r"dora_finding_\d+")
_FINDING_TAG = re.compile(r"dora:finding-\d+")
_FINDING_VIEW = re.compile(r"finding-\d+")


def run_findings(summary: dict) -> list[dict]:
    """summary.json's findings, ranked: ``id``, ``neurons`` ({"neuron": direction}), ``confident`` (and ``label``
    where known). A run written before findings has one: id 1, its combined neurons, ``artifact_found``."""
    if "findings" in summary:
        out = []
        for f in summary["findings"] or []:
            entry = {"id": int(f["id"]), "neurons": {str(n): int(d) for n, d in (f.get("neurons") or {}).items()},
                     "confident": bool(f.get("confident"))}
            if f.get("label") is not None:
                entry["label"] = f["label"]
            out.append(entry)
        return out
    neurons = (summary.get("combined_orientation") or summary.get("infected_orientation")
               or {str(n): 1 for n in summary.get("infected_neurons") or []})
    return [{"id": 1, "neurons": {str(n): int(d) for n, d in neurons.items()},
             "confident": bool(summary.get("artifact_found"))}]


def _describe(finding: dict | None, k: int, n: int) -> str:
    """A finding's saved view's description: its neurons, whether it is confident."""
    if finding is None:
        return f"flagged by dora-clean's finding {k} ({n} images), highest score first"
    neurons = ", ".join(f"{'-' if d < 0 else '+'}{m}" for m, d in finding["neurons"].items()) or "none"
    trust = "confident: the default export removes them" if finding["confident"] else \
        "not confident: left for review"
    label = f", detects {finding['label']!r}" if finding.get("label") else ""
    return (f"flagged by dora-clean's finding {k} ({n} images; neurons {neurons}; {trust}{label}), "
            "highest score first")


def default_name(run_dir: str | os.PathLike, kind: str = "dora-clean") -> str:
    """A dataset name that is stable for one run directory."""
    path = Path(run_dir).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{kind}-{path.name}-{digest}"


def _open_dataset(fo, name: str, run_dir: Path) -> "fo.Dataset":
    """Load the dataset ``name`` if dora-clean made it, else create it (persistent)."""
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if "dora_clean_run" not in ds.info:
            raise DoraError(f"the FiftyOne dataset {name!r} exists and was not made by "
                            "dora-clean; choose another name")
    else:
        ds = fo.Dataset(name, persistent=True)
    ds.persistent = True
    ds.info["dora_clean_run"] = str(run_dir)
    ds.save()
    return ds


def _sync_samples(fo, ds: "fo.Dataset", filepaths: list[str], columns: dict[str, list], progress: bool) -> set[str]:
    """Make ``ds`` hold exactly one sample per filepath, keeping the samples it has; returns their ids.

    A new sample is added with its fields (``columns``: field -> values in
    ``filepaths`` order; None leaves a field out) by FiftyOne's batched bulk
    insert, so a first import writes every sample once; the caller updates
    the kept ones field by field (``set_values``).
    """
    have = ds.values(["filepath", "id"]) if len(ds) else ([], [])
    want = set(filepaths)
    stale = [i for fp, i in zip(*have) if fp not in want]
    if stale:
        ds.delete_samples(stale)
    seen = set(have[0])
    missing = [r for r, fp in enumerate(filepaths) if fp not in seen]
    if missing:  # made as FiftyOne inserts them, batch by batch: memory does not grow with the dataset
        new = (fo.Sample(filepath=filepaths[r], **{f: _value(fo, f, v[r]) for f, v in columns.items()
                                                  if v[r] is not None}) for r in missing)
        ds.add_samples(new, progress=progress, num_samples=len(missing))
    return {i for fp, i in zip(*have) if fp in want}


def _value(fo, field: str, value):
    """A field's value as FiftyOne stores it: a class folder's name as a Classification."""
    if field == "ground_truth":
        return fo.Classification(label=value) if value else None
    return value


def _heatmap_range(maps: np.ndarray) -> list[float]:
    lo = min(0.0, float(maps.min())) if maps.size else 0.0
    hi = float(maps.max()) if maps.size else 1.0
    return [lo, hi if hi > lo else lo + 1.0]


def to_fiftyone(run_dir: str | os.PathLike, name: str | None = None,
                progress: bool = True) -> "fo.Dataset":
    """Create (or update) the run's persistent FiftyOne dataset; returns it.

    One sample per scores.csv row, with ``ground_truth`` (class folder, where
    the layout has classes), ``dora_score``, ``dora_neuron_<i>`` per infected
    neuron, ``dora_flagged`` and the ``dora:flagged`` tag, ``artifact`` (where
    labels were given) and ``dora_heatmap`` on the flagged images; and the
    saved view "flagged", most suspicious first. Per finding K (one, id 1, for
    a run written before findings): the score ``dora_finding_K``, the tag
    ``dora:finding-K`` on its flagged images and the saved view ``finding-K``
    (those, highest score first; its description names the neurons and says
    whether the finding is confident); ``ds.info["findings"]`` lists them. On a
    re-run the scores are replaced, the fields, tags and views of findings that
    are gone are removed, and every other tag (the user's ``remove``/``keep``)
    is kept. The name (default: derived from the run directory) goes into
    summary.json.
    """
    run = RunDir(Path(run_dir).resolve())
    run_dir = run.path
    summary = run.read_summary()
    scores = run.read_scores()
    root = run.dataset_root(summary)
    fo = import_fiftyone(run_dir)
    from fiftyone import ViewField as F

    name = name or summary.get("fiftyone_dataset") or default_name(run_dir)
    filepaths = sample_filepaths(root, scores.filepaths)
    row_of = {fp: i for i, fp in enumerate(filepaths)}
    if len(row_of) != len(filepaths):
        raise DoraError(f"{run.scores_path} lists a file twice")

    ds = _open_dataset(fo, name, run_dir)
    columns: dict[str, list] = {}  # field -> values in scores.csv order
    if summary.get("layout", "classes") == "classes":
        columns["ground_truth"] = [lab or None for lab in scores.labels]
    columns["dora_score"] = scores.score.tolist()
    for n, values in scores.neurons.items():
        columns[f"dora_neuron_{n}"] = values.tolist()
    columns["dora_flagged"] = scores.flagged.tolist()
    # the findings: those of scores.csv; a run written before findings has one, ``score`` and ``flagged``
    finding_ids = sorted(scores.finding_flags) or ([] if summary.get("findings") == [] else [1])
    for k in finding_ids:
        columns[finding_field(k)] = scores.findings.get(k, scores.score).tolist()
    if scores.artifact is not None:
        columns["artifact"] = scores.artifact.tolist()
    schema = ds.get_field_schema()
    old = {f for f in schema if re.fullmatch(r"dora_neuron_\d+", f)}
    old_findings = {f for f in schema if _FINDING_FIELD.fullmatch(f)}
    kept = _sync_samples(fo, ds, filepaths, columns, progress)  # new samples come with their fields
    ds_filepaths, ids = ds.values(["filepath", "id"])
    order = np.array([row_of[fp] for fp in ds_filepaths], dtype=int)
    for field, values in columns.items():  # the samples kept from an earlier import: their new values
        update = {i: _value(fo, field, values[r]) for i, r in zip(ids, order) if i in kept}
        if update:
            ds.set_values(field, update, key_field="id", validate=False)
    for f in old - {f"dora_neuron_{n}" for n in scores.neurons}:
        ds.delete_sample_field(f)
    for f in old_findings - {finding_field(k) for k in finding_ids}:
        ds.delete_sample_field(f)
    if scores.artifact is None and ds.has_sample_field("artifact"):
        ds.delete_sample_field("artifact")

    ds.untag_samples(FLAGGED_TAG)
    ds.match(F("dora_flagged") == True).tag_samples(FLAGGED_TAG)  # noqa: E712
    old_tags = [t for t in ds.count_sample_tags() if _FINDING_TAG.fullmatch(t)]
    if old_tags:
        ds.untag_samples(old_tags)
    ids_arr = np.array(ids, dtype=object)
    n_flagged = {}
    for k in finding_ids:  # the ids of the samples it flags, as scores.csv says
        rows_k = scores.flags_of(k)[order]
        n_flagged[k] = int(rows_k.sum())
        if n_flagged[k]:
            ds.select(ids_arr[rows_k].tolist()).tag_samples(finding_tag(k))

    if ds.has_sample_field("dora_heatmap"):
        ds.clear_sample_field("dora_heatmap")
    maps = run.read_heatmaps()
    if maps is not None:
        if maps.shape[0] != len(filepaths):
            raise DoraError(f"{run.heatmaps_path} has {maps.shape[0]} rows, scores.csv {len(filepaths)}")
        rows = np.flatnonzero(scores.flagged)
        # The maps stay at the layer's resolution (e.g. 8x8: 256 bytes each); the App
        # stretches them over the image. One value range for all, so they compare.
        flagged_maps = np.asarray(maps[rows], dtype=np.float32)
        value_range = _heatmap_range(flagged_maps)
        id_of = {fp: i for fp, i in zip(ds_filepaths, ids)}
        if len(rows):
            ds.set_values(
                "dora_heatmap",
                {id_of[filepaths[r]]: fo.Heatmap(map=m, range=value_range)
                 for r, m in zip(rows, flagged_maps)},
                key_field="id",
            )

    view = ds.match(F("dora_flagged") == True).sort_by("dora_score", reverse=True)  # noqa: E712
    ds.save_view(FLAGGED_VIEW, view, overwrite=True,
                 description="flagged by dora-clean, most suspicious first")
    findings = {f["id"]: f for f in run_findings(summary)}
    for k in finding_ids:
        view = ds.match_tags(finding_tag(k)).sort_by(finding_field(k), reverse=True)
        ds.save_view(finding_view(k), view, overwrite=True, description=_describe(findings.get(k), k, n_flagged[k]))
    for v in ds.list_saved_views():
        if _FINDING_VIEW.fullmatch(v) and int(v.split("-")[1]) not in finding_ids:
            ds.delete_saved_view(v)
    if ds.app_config.active_fields is None:  # what the App shows at first; the user may change it
        ds.app_config.active_fields = fo.ActiveFields(
            paths=["tags", "ground_truth", "dora_heatmap"])
    ds.info.update({
        "dora_clean_run": str(run_dir),
        "model": summary.get("model"),
        "layer": summary.get("layer"),
        "infected_neurons": summary.get("infected_neurons"),
        "heatmap_neuron": summary.get("heatmap_neuron"),
        "findings": [f for k, f in findings.items() if k in finding_ids]  # ranked, as summary.json
        + [{"id": k, "neurons": {}, "confident": False} for k in finding_ids if k not in findings],
    })
    ds.save()
    run.update_summary(fiftyone_dataset=name)
    return ds
