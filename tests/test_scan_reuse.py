"""A second run with another infected set (another outlier method) scans no image again for the activations,
and runs only the images review shows through the model again, for their heatmaps."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

import dora_clean.scanning.activations as scan_module
from dora_clean.analysis.sams import SamsConfig
from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
from dora_clean.outcome import FINDING_TOP
from dora_clean.pipeline import ScanSettings, scan_dataset

pytestmark = pytest.mark.slow  # every test here scans a dataset

FAST_SAMS = SamsConfig(n_signals=2, steps=48, size=64)


def test_another_outlier_method_computes_only_the_new_maps(tmp_path, monkeypatch, cache_dir):
    data = write_scan_set(tmp_path / "data", ScanSetSpec(60, artifact_fraction=0.25, seed=3))
    common = dict(sams=FAST_SAMS, fiftyone=False, workers=0, progress=False)
    first = scan_dataset(data, ScanSettings(out=str(tmp_path / "knn+group"), **common))
    calls = {"_scan_chunks": 0, "_map_chunks": 0}
    mapped: list[int] = []  # how many images each maps pass reads
    for name in calls:
        real = getattr(scan_module, name)

        def counting(job, todo, _real=real, _name=name):
            calls[_name] += bool(todo)
            if _name == "_map_chunks":
                mapped.append(len(job.rows))
            return _real(job, todo)

        monkeypatch.setattr(scan_module, name, counting)
    lof = ScanSettings(out=str(tmp_path / "lof"), outlier_method="lof", **common)
    second = scan_dataset(data, lof)
    assert second["infected_neurons"] != first["infected_neurons"]
    assert calls == {"_scan_chunks": 0, "_map_chunks": 1}  # the activations were reused; only the maps made
    shown = max(second["n_flagged"], min(16, second["n_images"]))
    assert mapped[0] <= shown < second["n_images"]  # ... of the flagged and shown images alone
    # the same as a run whose scan starts from nothing (the s-AMS copied over: they are not what is tested)
    fresh_cache = tmp_path / "fresh-cache"
    shutil.copytree(cache_dir / "sams", fresh_cache / "sams")
    monkeypatch.setenv("DORA_CLEAN_CACHE", str(fresh_cache))
    lof.out = str(tmp_path / "fresh")
    fresh = scan_dataset(data, lof)
    # the scan's own maps pass, and at most one more for the report's finding pages: the top images of the
    # findings whose heatmap neuron is not an infected one (the scan keeps the infected neurons' maps only)
    assert calls["_scan_chunks"] == 1 and calls["_map_chunks"] in (1, 2)
    assert all(n <= FINDING_TOP * len(fresh["findings"]) for n in mapped[2:])
    assert fresh["infected_neurons"] == second["infected_neurons"]
    for name in ("scores.csv", "neurons.csv"):
        assert (tmp_path / "fresh" / name).read_text() == (tmp_path / "lof" / name).read_text(), name
    heat, fresh_heat = np.load(tmp_path / "lof" / "heatmaps.npy"), np.load(tmp_path / "fresh" / "heatmaps.npy")
    assert heat.shape == fresh_heat.shape and heat.shape[0] == second["n_images"]
    with open(tmp_path / "lof" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    score = np.array([float(r["score"]) for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    shown_rows = np.union1d(np.flatnonzero(flagged), np.argsort(-score, kind="stable")[:min(16, flagged.sum() or 16)])
    assert mapped[0] == len(shown_rows)
    np.testing.assert_array_equal(heat[shown_rows], fresh_heat[shown_rows])  # the fresh scan's maps, where review looks
    rest = np.setdiff1d(np.arange(len(heat)), shown_rows)
    assert not heat[rest].any()  # and nothing made for the others
