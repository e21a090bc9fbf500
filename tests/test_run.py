"""The whole scan on the bundled model and a small planted dataset: the run directory contract."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dora_clean.errors import DoraError
from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
from dora_clean.pipeline import ScanSettings, scan_dataset
from dora_clean.scoring.thresholds import structure
from dora_clean.scoring import class_lambda, robust_z
from dora_clean.analysis.sams import SamsConfig

pytestmark = pytest.mark.slow  # every test here scans a dataset

FAST_SAMS = SamsConfig(n_signals=2, steps=48, size=64)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted") / "data"
    write_scan_set(root, ScanSetSpec(160, artifact_fraction=0.25, seed=3))
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory):
    before = tree_hashes(planted)
    out = tmp_path_factory.mktemp("runs") / "run"
    settings = ScanSettings(labels=str(planted / "labels.csv"), out=str(out), sams=FAST_SAMS, fiftyone=False,
                            workers=0, progress=False)
    summary = scan_dataset(planted, settings)
    assert tree_hashes(planted) == before  # the dataset is read, never changed
    return out, summary


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_contract(run):
    out, summary = run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    for key in ("model", "layer", "n_neurons", "infected_neurons", "n_images", "n_flagged", "auc",
                "best_infected_auc", "fiftyone_dataset", "timings"):
        assert key in summary, key
    assert summary["layer"] == "layer3" and summary["n_neurons"] == 64
    assert summary["representation"] == "standardised" and summary["outlier_method"] == "knn+group"
    assert summary["layout"] == "classes" and summary["class_folders"] is True  # the veto was on
    assert all(v >= 0.5 for v in summary["class_content"].values())
    rows = read_csv(out / "scores.csv")  # the combined score's lambda is that of the flagged column
    flagged = np.array([r["flagged"] == "1" for r in rows])
    assert summary["class_lambda"] == round(class_lambda(flagged, [r["label"] for r in rows]), 4)
    assert summary["n_images"] == 160 and summary["n_skipped"] == 1
    assert 1 <= len(summary["infected_neurons"]) <= 3
    assert summary["fiftyone_dataset"] is None
    assert set(summary["auc"]) == {str(i) for i in range(64)} | {"combined"}
    orient = summary["infected_orientation"]
    assert set(orient) == {str(n) for n in summary["infected_neurons"]} and set(orient.values()) <= {1, -1}
    assert summary["best_infected_auc"] == max(
        summary["auc"][n] if o > 0 else 1 - summary["auc"][n] for n, o in orient.items()
    )
    assert {"s-AMS and infected neurons", "scanning images"} <= set(summary["timings"])


def test_scores_neurons_and_files(run, planted):
    out, summary = run
    inf = summary["infected_neurons"]
    rows = read_csv(out / "scores.csv")
    ids = [f["id"] for f in summary["findings"]]
    assert ids == list(range(1, len(ids) + 1))
    assert list(rows[0]) == (["filepath", "label", "score"] + [f"neuron_{n}" for n in inf] + ["flagged"]
                             + [c for k in ids for c in (f"finding_{k}", f"flagged_{k}")] + ["artifact"])
    assert all(r["score"] == r["finding_1"] for r in rows)  # the old score is the first finding's
    for f in summary["findings"]:
        assert sum(int(r[f"flagged_{f['id']}"]) for r in rows) == f["n_flagged"]
        assert f["label"] == "artifact" and set(f["auc"]) == {"artifact"}
        score = np.array([float(r[f"finding_{f['id']}"]) for r in rows])  # its structure, from the written scores
        assert abs(structure(score, f["threshold"]) - f["structure"]) < 1e-3
    assert summary["structure"] == summary["findings"][0]["structure"]
    assert summary["contest"] in ("separation", "structure")  # what it means: test_scoring's bell-curve test
    confident = [f["id"] for f in summary["findings"] if f["confident"]] or [1]
    assert all(r["flagged"] == str(max(int(r[f"flagged_{k}"]) for k in confident)) for r in rows)
    assert len(rows) == 160
    assert [r["filepath"] for r in rows] == sorted(r["filepath"] for r in rows)
    assert all(r["label"] == r["filepath"].split("/")[0] for r in rows)
    labels = {r["filepath"]: r["artifact"] for r in read_csv(planted / "labels.csv")}
    assert all(labels[r["filepath"]] == r["artifact"] for r in rows)
    assert sum(int(r["flagged"]) for r in rows) == summary["n_flagged"]
    neurons = read_csv(out / "neurons.csv")
    assert list(neurons[0]) == ["neuron", "outlier_score", "infected", "dead", "atlas_x", "atlas_y", "auc"]
    assert [int(r["neuron"]) for r in neurons if r["infected"] == "1"] == sorted(inf)
    for r in neurons:
        assert abs(float(r["auc"]) - summary["auc"][r["neuron"]]) < 1e-5
    assert read_csv(out / "skipped.csv") == [{"filepath": "circle/broken.png", "reason": read_csv(out / "skipped.csv")[0]["reason"]}]
    heat = np.load(out / "heatmaps.npy")
    assert heat.shape == (160, 8, 8)
    assert len(list((out / "sams").glob("*.png"))) == 64 * 2
    for name in ("atlas.png", "infected_sams.png", "roc.png", "flagged.png", "report.html"):
        assert (out / name).stat().st_size > 1000, name
    html = (out / "report.html").read_text()
    assert all(p in html for p in ("atlas.png", "roc.png", "flagged.png"))
    assert f"{len(summary['combined_neurons'])} neurons, seed {summary['combined_seed']}" in html
    assert f"separation {summary['separation']}, structure {summary['structure']}" in html
    assert ("the seeds ranked by structure" in html) == (summary["contest"] == "structure")
    assert all(seed in html for seed in summary["class_content"])


def test_auc_matches_sklearn_on_the_written_scores(run):
    from sklearn.metrics import roc_auc_score

    out, summary = run
    rows = read_csv(out / "scores.csv")
    y = [int(r["artifact"]) for r in rows]
    combined = roc_auc_score(y, [float(r["score"]) for r in rows])
    assert abs(combined - summary["auc"]["combined"]) < 1e-4
    used = summary["combined_neurons"]
    assert set(summary["combined_orientation"]) == {str(n) for n in used} and set(used) <= set(range(64))
    assert set(used) & set(summary["infected_neurons"])  # the infected neurons that agree stay in
    for n in summary["infected_neurons"]:
        assert abs(roc_auc_score(y, [float(r[f"neuron_{n}"]) for r in rows]) - summary["auc"][str(n)]) < 1e-4


def test_without_recruits_the_combined_score_is_the_mean_of_the_infected_neurons_that_agree(run, planted, tmp_path):
    settings = ScanSettings(labels=str(planted / "labels.csv"), out=str(tmp_path / "own"), sams=FAST_SAMS,
                            fiftyone=False, workers=0, progress=False, recruit=False)
    summary = scan_dataset(planted, settings)
    used = summary["combined_neurons"]
    assert used and set(used) <= set(summary["infected_neurons"])
    rows = read_csv(tmp_path / "own" / "scores.csv")
    per = np.array([[float(r[f"neuron_{n}"]) for n in used] for r in rows])
    if summary["class_centred"]:  # scored again on activations centred within the class folders
        labels = np.array([r["label"] for r in rows])
        for c in set(labels):
            per[labels == c] -= np.median(per[labels == c], axis=0)
    orient = np.array([summary["combined_orientation"][str(n)] for n in used])
    assert orient.tolist() == [summary["infected_orientation"][str(n)] for n in used]
    assert np.allclose([float(r["score"]) for r in rows], (robust_z(per) * orient).mean(axis=1), atol=1e-4)


def test_second_run_reuses_the_caches(run, planted, tmp_path, monkeypatch):
    import dora_clean.analysis.sams as sams_module
    import dora_clean.scanning.activations as scan_module

    out, first = run
    work: list[str] = []  # what the second run computes again (nothing: both caches hold it)
    for module, name in ((sams_module, "optimise"), (scan_module, "_scan_chunks")):
        real = getattr(module, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            work.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    settings = ScanSettings(labels=str(planted / "labels.csv"), out=str(tmp_path / "again"), sams=FAST_SAMS,
                            fiftyone=False, workers=0, progress=False)
    again = scan_dataset(planted, settings)
    assert work == []
    assert again["infected_neurons"] == first["infected_neurons"]
    assert (tmp_path / "again" / "scores.csv").read_text() == (out / "scores.csv").read_text()


def test_flag_overrides(run, planted, tmp_path):
    settings = ScanSettings(out=str(tmp_path / "top"), sams=FAST_SAMS, fiftyone=False, workers=0, progress=False,
                            flag_top=7)
    s = scan_dataset(planted, settings)
    assert s["n_flagged"] == 7 and "auc" not in s
    settings.out, settings.flag_top, settings.threshold = str(tmp_path / "thr"), None, -1e9
    assert scan_dataset(planted, settings)["n_flagged"] == 160


def test_bad_labels_and_outputs_fail_early_and_clearly(planted, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("filepath,artifact\ncircle/circle_00000.png,maybe\n")
    with pytest.raises(DoraError, match="must be 0 or 1.*line 2"):
        scan_dataset(planted, ScanSettings(labels=str(bad), out=str(tmp_path / "o"), progress=False))
    bad.write_text("path,label\n")
    with pytest.raises(DoraError, match="needs the columns filepath,artifact"):
        scan_dataset(planted, ScanSettings(labels=str(bad), out=str(tmp_path / "o"), progress=False))
    bad.write_text("filepath,artifact\nnope/x.png,1\n")
    with pytest.raises(DoraError, match="no label in .* matches an image"):
        scan_dataset(planted, ScanSettings(labels=str(bad), out=str(tmp_path / "o"), progress=False))
    with pytest.raises(DoraError, match="inside the dataset"):
        scan_dataset(planted, ScanSettings(out=str(planted / "run"), progress=False))
    assert not (planted / "run").exists()
