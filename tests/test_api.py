"""The public API: dc.scan and its ScanRun, and compute_artifacts on a FiftyOne dataset of one's own."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import dora_clean as dc
from dora_clean.demo import load_demo_model
from dora_clean.demo.shapes import ScanSetSpec, write_scan_set

TINY = dict(sams=dc.SamsConfig(n_signals=1, steps=4, size=32), workers=0, progress=False)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = write_scan_set(tmp_path_factory.mktemp("api") / "data", ScanSetSpec(40, artifact_fraction=0.25, seed=4))
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> dc.ScanRun:
    out = tmp_path_factory.mktemp("api-runs") / "run"
    return dc.scan(data, labels=data / "labels.csv", out=out, fiftyone=False, **TINY)


@pytest.mark.slow
def test_scan_returns_the_run(run, data):
    assert isinstance(run, dc.ScanRun) and (run.path / "summary.json").is_file()
    rows = _rows(run.path / "scores.csv")
    assert run.flagged == [r["filepath"] for r in rows if r["flagged"] == "1"]
    assert 0 < len(run.flagged) < len(rows) == 40
    assert run.artifact_found == run.summary["artifact_found"] == run.summary["confidence"]["confident"]
    assert run.summary["dataset"] == str(data.resolve()) and run.summary["fiftyone_dataset"] is None
    assert run.infected_neurons == run.summary["infected_neurons"] and run.infected_neurons
    assert list(run.scores.neurons) == run.infected_neurons
    assert repr(run) == f"ScanRun({str(run.path)!r}, 40 images, {len(run.flagged)} flagged)"


@pytest.mark.slow
def test_open_an_earlier_run(run, tmp_path):
    again = dc.ScanRun.open(str(run.path))
    assert again.path == run.path and again.summary == run.summary and again.flagged == run.flagged
    with pytest.raises(dc.DoraError, match="not a dora-clean run directory"):
        dc.ScanRun.open(tmp_path)


@pytest.mark.slow
def test_export_writes_a_clean_copy(run, data, tmp_path):
    scores = run.scores

    def flagged_by(ids):
        return {p for k in ids for p, f in zip(scores.filepaths, scores.flags_of(k)) if f}

    every = flagged_by(scores.finding_ids)
    counts = run.export(tmp_path / "clean", policy="flagged")  # every finding's flags, trusted or not
    kept = sorted(p.relative_to(tmp_path / "clean").as_posix() for p in (tmp_path / "clean").rglob("*.png"))
    assert kept == sorted(set(scores.filepaths) - every)
    assert counts["kept"] == len(kept) and counts["removed_flagged"] == len(every)
    assert counts["removed_skipped"] == 1 and (tmp_path / "clean" / "removed.csv").is_file()
    assert all((tmp_path / "clean" / rel).read_bytes() == (data / rel).read_bytes() for rel in kept)
    default = run.export(tmp_path / "default", dry_run=True)  # the confident findings' flags only
    trusted = flagged_by([f["id"] for f in run.findings if f["confident"]])
    assert trusted == (set(run.flagged) if run.artifact_found else set())
    assert default["removed_flagged"] == len(trusted)
    assert default["left_for_review"] == len(every - trusted)


def test_unknown_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(TypeError, match="unknown setting.*colour"):
        dc.scan(tmp_path, colour="red")
    with pytest.raises(TypeError, match="labels_field"):
        dc.compute_artifacts(None, "demo", labels="x.csv")


@pytest.mark.slow
def test_a_module_is_scanned_and_given_back_as_it_was(run, data, tmp_path):
    model, info = load_demo_model()
    model.train()
    first = next(model.parameters())
    first.requires_grad_(True)
    mine = dc.scan(data, model, layer=info["layer"], image_size=info["image_size"], out=tmp_path / "mine",
                   fiftyone=False, **TINY)
    assert model.training and all(m.training for m in model.modules()) and first.requires_grad
    assert mine.summary["model"].endswith(type(model).__qualname__)
    assert mine.infected_neurons == run.infected_neurons  # the same weights: the same neurons
    assert mine.flagged == run.flagged


# -- compute_artifacts on the user's own FiftyOne dataset -----------------------------------------------------------


@pytest.fixture
def user_dataset(data):
    fo = pytest.importorskip("fiftyone")
    artifact = {r["filepath"]: r["artifact"] == "1" for r in _rows(data / "labels.csv")}
    samples = []
    for i, path in enumerate(sorted(data.rglob("*.png"))):
        rel = path.relative_to(data).as_posix()
        samples.append(fo.Sample(filepath=str(path), my_note=f"note {i}", tags=["mine"] if i % 3 == 0 else [],
                                 has_watermark=artifact.get(rel)))
    ds = fo.Dataset()
    ds.add_samples(samples, progress=False)
    ds.info["owner"] = "me"
    ds.save()
    yield ds
    ds.delete()


@pytest.mark.slow
def test_compute_artifacts_writes_onto_the_users_dataset(user_dataset, data, tmp_path):
    import fiftyone as fo

    ds = user_dataset
    before_fields = set(ds.get_field_schema())
    before = {sid: (note, set(tags)) for sid, note, tags in zip(*ds.values(["id", "my_note", "tags"]))}
    datasets = fo.list_datasets()

    run = dc.compute_artifacts(ds, "demo", labels_field="has_watermark", out=tmp_path / "ca", **TINY)

    assert isinstance(run, dc.ScanRun) and run.summary["dataset"] == str(data.resolve())
    assert "auc" in run.summary  # the labels came from the field
    infected = run.infected_neurons
    ids = [f["id"] for f in run.findings]
    added = ({"dora_score", "dora_flagged"} | {f"dora_neuron_{n}" for n in infected}
             | {f"dora_finding_{k}" for k in ids})
    assert set(ds.get_field_schema()) == before_fields | added
    assert fo.list_datasets() == datasets  # no review copy
    assert ds.info == {"owner": "me"}

    scores = run.scores
    row = {rel: i for i, rel in enumerate(scores.filepaths)}
    flagged = set(run.flagged)
    n_seen = 0
    for sample in ds:
        rel = Path(sample.filepath).relative_to(data).as_posix()
        note, tags = before[sample.id]
        assert sample.my_note == note and tags <= set(sample.tags)  # the user's fields and tags stay
        if rel == "circle/broken.png":  # the scan could not read it
            assert sample.dora_score is None and sample.dora_flagged is None and "dora:flagged" not in sample.tags
            continue
        n_seen += 1
        i = row[rel]
        assert sample.dora_score == pytest.approx(scores.score[i], abs=1e-6)
        assert sample.dora_flagged is bool(scores.flagged[i]) is (rel in flagged)
        assert ("dora:flagged" in sample.tags) is (rel in flagged)
        for n in infected:
            assert sample[f"dora_neuron_{n}"] == pytest.approx(scores.neurons[n][i], abs=1e-6)
        for k in ids:
            assert sample[f"dora_finding_{k}"] == pytest.approx(scores.findings[k][i], abs=1e-6)
            assert (f"dora:finding-{k}" in sample.tags) is bool(scores.finding_flags[k][i])
        assert set(sample.tags) - tags <= {"dora:flagged"} | {f"dora:finding-{k}" for k in ids}
    assert n_seen == 40 and len(ds.match_tags("dora:flagged")) == len(flagged) > 0


@pytest.mark.slow
def test_compute_artifacts_on_a_view_scans_only_its_files(user_dataset, tmp_path):
    ds = user_dataset
    view = ds.match_tags("mine")
    run = dc.compute_artifacts(view, "demo", out=tmp_path / "view", class_folders=False, **TINY)
    in_view = set(view.values("id"))
    assert run.summary["n_images"] + run.summary["n_skipped"] == len(view)
    assert all(sid in in_view for sid in ds.exists("dora_score").values("id"))
    assert set(ds.match_tags("dora:flagged").values("id")) <= in_view


@pytest.mark.slow
def test_compute_artifacts_needs_files_under_one_folder(tmp_path):
    fo = pytest.importorskip("fiftyone")
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath="/srv/a/x.png"), fo.Sample(filepath="/home/b/y.png")], progress=False)
        with pytest.raises(dc.DoraError, match="share no folder.*common root is /"):
            dc.compute_artifacts(ds, "demo")
        assert not ds.has_sample_field("dora_score")
    finally:
        ds.delete()


class _CloudSamples:
    """A sample collection whose files are in the cloud (FiftyOne Teams writes such paths)."""

    media_type = "image"

    def values(self, fields):
        return [["a", "b"], ["/data/x.png", "s3://bucket/y.png"]]


def test_compute_artifacts_needs_local_files():
    with pytest.raises(dc.DoraError, match="scans local image files; the sample 's3://bucket/y.png'"):
        dc.compute_artifacts(_CloudSamples(), "demo")


def test_listing_restricted_to_given_files(tmp_path):
    from dora_clean.scanning import list_images

    for rel in ("a/x.png", "a/y.png", "b/z.png", "top.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"png")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    entries, skipped, layout = list_images(tmp_path, only=["b/z.png", "a/x.png", "a/empty.png", "gone.png",
                                                           "notes.txt", "a/x.png"])
    assert [(e.relpath, e.label) for e in entries] == [("a/x.png", "a"), ("b/z.png", "b")] and layout == "classes"
    assert [(s.relpath, s.reason) for s in skipped] == [
        ("a/empty.png", "zero-byte file"), ("gone.png", "file not found"), ("notes.txt", "not an image file (extension)")]
    assert list_images(tmp_path, only=["top.png"])[2] == "flat"
    for bad in ("../x.png", "/abs.png", "a/./x.png"):
        with pytest.raises(dc.DoraError, match="not a path relative to the dataset folder"):
            list_images(tmp_path, only=[bad])


@pytest.mark.slow
def test_findings_and_apply(run, data, tmp_path):
    scores = run.scores
    assert [f["id"] for f in run.findings] == scores.finding_ids
    applied = run.apply(data, out=tmp_path / "applied", progress=False)  # the demo model, by its spec
    again = dc.ScanRun(tmp_path / "applied").scores
    assert again.filepaths == scores.filepaths and np.array_equal(again.flagged, scores.flagged)
    assert applied["n_flagged"] == len(run.flagged)
