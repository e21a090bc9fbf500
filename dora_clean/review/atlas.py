"""The atlas dataset: every neuron's s-AMS in FiftyOne, placed by the representation atlas."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DoraError
from ..rundir import read_summary, update_summary
from .database import import_fiftyone
from .dataset import default_name

if TYPE_CHECKING:
    import fiftyone as fo

__all__ = ["ATLAS_BRAIN_KEY", "atlas_to_fiftyone"]


ATLAS_BRAIN_KEY = "atlas"


def atlas_to_fiftyone(run_dir: str | os.PathLike, name: str | None = None) -> "fo.Dataset":
    """A persistent dataset of the s-AMS images with the representation atlas.

    Fields ``neuron``, ``outlier_score``, ``infected``, ``dead`` (and ``auc``
    where present); each image gets its neuron's atlas point in the brain run
    "atlas" (``fob.compute_visualization`` with the given points). The dataset
    is rebuilt on a re-run; its name goes into summary.json.
    """
    run_dir = Path(run_dir).resolve()
    summary = read_summary(run_dir)
    try:
        with open(run_dir / "neurons.csv", newline="") as f:
            neurons = {int(r["neuron"]): r for r in csv.DictReader(f)}
    except FileNotFoundError:
        raise DoraError(f"{run_dir} has no neurons.csv: run `dora-clean scan` first") from None
    sams = []
    for path in (run_dir / "sams").glob("*.png"):
        m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
        if m and int(m.group(1)) in neurons:
            sams.append((int(m.group(1)), int(m.group(2)), str(path)))
    sams.sort()
    if not sams:
        raise DoraError(f"{run_dir / 'sams'} holds no s-AMS images (NEURON_SAMPLE.png)")

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

    def number(row: dict, key: str) -> float | None:
        return float(row[key]) if row.get(key) not in (None, "") else None

    samples = []
    for n, s, path in sams:
        row = neurons[n]
        fields = {
            "neuron": n,
            "sample_index": s,
            "outlier_score": number(row, "outlier_score"),
            "infected": row.get("infected") == "1",
            "dead": row.get("dead") == "1",
        }
        if "auc" in row:
            fields["auc"] = number(row, "auc")
        tags = ["infected"] if fields["infected"] else []
        samples.append(fo.Sample(filepath=path, tags=tags, **fields))
    ds.add_samples(samples, progress=False)
    ds.save()

    # add_samples keeps the order, and the points follow the sample order
    points = np.array([[float(neurons[n]["atlas_x"]), float(neurons[n]["atlas_y"])]
                       for n, _, _ in sams])
    fob.compute_visualization(ds, points=points, brain_key=ATLAS_BRAIN_KEY)
    update_summary(run_dir, atlas_dataset=name)
    return ds
