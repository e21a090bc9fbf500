"""The atlas dataset: every neuron's s-AMS in FiftyOne, placed by the representation atlas."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DoraError
from ..rundir import RunDir
from .database import import_fiftyone
from .dataset import default_name, run_findings

if TYPE_CHECKING:
    import fiftyone as fo

__all__ = ["ATLAS_BRAIN_KEY", "atlas_to_fiftyone"]


ATLAS_BRAIN_KEY = "atlas"


def atlas_to_fiftyone(run_dir: str | os.PathLike, name: str | None = None) -> "fo.Dataset":
    """A persistent dataset of the s-AMS images with the representation atlas.

    Fields ``neuron``, ``outlier_score``, ``infected``, ``dead`` (and ``auc``
    where present), ``findings`` (the ids of the findings whose neurons include
    the neuron, ranked as in summary.json) and ``finding`` (the first of them,
    or None); tags ``infected`` and ``finding-K``. Each image gets its neuron's
    atlas point in the brain run "atlas" (``fob.compute_visualization`` with
    the given points). The dataset is rebuilt on a re-run; its name goes into
    summary.json.
    """
    run = RunDir(Path(run_dir).resolve())
    run_dir = run.path
    summary = run.read_summary()
    rows = run.read_neurons()
    neurons = {r.neuron: r for r in rows}
    with_auc = any(r.auc is not None for r in rows)
    sams = [s for s in run.sams_images() if s.neuron in neurons]
    if not sams:
        raise DoraError(f"{run.sams_dir} holds no s-AMS images (NEURON_SAMPLE.png)")

    fo = import_fiftyone(run_dir)
    import fiftyone.brain as fob

    name = name or summary.get("atlas_dataset") or default_name(run_dir, "dora-clean-atlas")
    if fo.dataset_exists(name):
        old = fo.load_dataset(name)
        if "dora_clean_run" not in old.info:
            raise DoraError(f"the FiftyOne dataset {name!r} exists and was not made by "
                            "dora-clean; choose another name")
        old.delete()
    ds = fo.Dataset(name, persistent=True)
    ds.info["dora_clean_run"] = str(run_dir)
    findings = run_findings(summary)
    ds.info["findings"] = findings
    in_findings: dict[int, list[int]] = {}  # neuron -> the findings whose neurons include it, ranked
    for f in findings:
        for m in f["neurons"]:
            in_findings.setdefault(int(m), []).append(f["id"])
    ds.add_sample_field("findings", fo.ListField, subfield=fo.IntField)
    ds.add_sample_field("finding", fo.IntField)

    samples = []
    for n, s, path in sams:
        row = neurons[n]
        fields = {
            "neuron": n,
            "sample_index": s,
            "outlier_score": row.outlier_score,
            "infected": row.infected,
            "dead": row.dead,
        }
        if with_auc:
            fields["auc"] = row.auc
        ids = in_findings.get(n, [])
        fields["findings"] = list(ids)
        fields["finding"] = ids[0] if ids else None
        tags = (["infected"] if row.infected else []) + [f"finding-{k}" for k in ids]
        samples.append(fo.Sample(filepath=str(path), tags=tags, **fields))
    ds.add_samples(samples, progress=False)
    ds.save()

    # add_samples keeps the order, and the points follow the sample order
    points = np.array([[neurons[n].atlas_x, neurons[n].atlas_y] for n, _, _ in sams])
    fob.compute_visualization(ds, points=points, brain_key=ATLAS_BRAIN_KEY)
    run.update_summary(atlas_dataset=name)
    return ds
