"""``dora-clean apply``: a scan's detector.json scores new images without the s-AMS.

Most tests apply a detector made here for a tiny model (no scan: each runs in about a second); the
slow ones scan a tiny dataset first and check that apply flags exactly what the scan flagged.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
from dora_clean.detector import DETECTOR_FORMAT, apply_detector, load_detector
from dora_clean.errors import DoraError
from dora_clean.models import load_model, weights_hash
from dora_clean.rundir import RunDir

TINY = '''
import torch
from torch import nn


def make():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 16, 3, stride=2, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
'''
SIZE = 32
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BROKEN = b"\x89PNG\r\n\x1a\n garbage"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """The spec of a tiny model (16 neurons in layer "3"), the same weights at every load."""
    path = tmp_path_factory.mktemp("model") / "tiny.py"
    path.write_text(TINY)
    return f"{path}:make"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_scan_set(tmp_path_factory.mktemp("scanned") / "data", ScanSetSpec(40, 0.25, size=SIZE, seed=5))


@pytest.fixture(scope="module")
def new_data(tmp_path_factory) -> Path:
    """Images that arrive after the scan, one of them corrupt."""
    root = write_scan_set(tmp_path_factory.mktemp("new") / "incoming", ScanSetSpec(12, 0.25, size=SIZE, seed=9))
    folder = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (folder / "broken.png").write_bytes(BROKEN)
    return root


def made_detector(spec: str, findings: list[dict], **extra) -> dict:
    """A detector.json as a scan writes it, for the tiny model's layer "3"."""
    return {"format": DETECTOR_FORMAT, "version": 1, "model": spec,
            "weights_sha256": weights_hash(load_model(spec).model), "layer": "3", "pooling": "mean",
            "prefix_tokens": None, "image_size": SIZE, "mean": MEAN, "std": STD, "findings": findings, **extra}


def finding(k: int, neurons, directions, centre, spread, threshold: float, confident: bool) -> dict:
    return {"id": k, "neurons": neurons, "directions": directions, "centre": centre, "spread": spread,
            "threshold": threshold, "confident": confident, "label": None}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def apply(detector, dataset, out, **kwargs) -> dict:
    return apply_detector(detector, dataset, out=out, workers=0, progress=False, **kwargs)


# -- the detector file ------------------------------------------------------------------------------------------
def test_load_detector_reads_a_run_directory_or_the_file_and_refuses_anything_else(tiny, tmp_path):
    det = made_detector(tiny, [finding(1, [3], [1], [0.0], [1.0], 1.0, False)])
    run = tmp_path / "run"
    RunDir(run).path.mkdir()
    RunDir(run).write_detector(det)
    assert load_detector(run)["findings"] == det["findings"]
    assert load_detector(run / "detector.json")["source"] == str((run / "detector.json").resolve())

    def refused(path, message):
        with pytest.raises(DoraError, match=message):
            load_detector(path)

    refused(tmp_path / "nowhere", "does not exist: give a run directory")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "neither a dora-clean run directory nor a detector.json")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text("{}")
    refused(tmp_path / "old", "has no detector.json: scan again")
    bad = tmp_path / "bad.json"
    for content, message in [
        ("not json", "cannot read the detector"),
        (json.dumps(dict(det, format="something else")), "is not a dora-clean detector"),
        (json.dumps(dict(det, version=3)), "detector of version 3; this dora-clean reads versions 1, 2: update"),
        (json.dumps({k: v for k, v in det.items() if k != "layer"}), "lacks layer"),
        (json.dumps(dict(det, findings=[])), "has no findings"),
        (json.dumps(dict(det, findings=[finding(1, [3, 4], [1], [0.0], [1.0], 1.0, False)])), "different lengths"),
    ]:
        bad.write_text(content)
        refused(bad, message)


# -- new images -------------------------------------------------------------------------------------------------
def test_apply_scores_new_images_with_each_finding(tiny, new_data, tmp_path):
    # finding 1 (not confident) flags nothing, finding 2 (confident) everything, finding 3 (not confident) is
    # finding 1's neuron seen the other way round: flagged is the union of the confident findings' flags
    det = made_detector(tiny, [finding(1, [3], [1], [0.0], [1.0], 1e9, False),
                               finding(2, [5, 7], [1, -1], [0.1, 0.2], [0.5, 2.0], -1e9, True),
                               finding(3, [3], [-1], [1.0], [2.0], -1e9, False)])
    out = tmp_path / "applied"
    summary = apply(det, new_data, out)
    table = rows(out / "scores.csv")
    assert list(table[0])[:4] == ["filepath", "label", "score", "flagged"]
    assert [c for c in table[0] if re.fullmatch(r"(finding|flagged)_\d+", c)] == [
        "finding_1", "flagged_1", "finding_2", "flagged_2", "finding_3", "flagged_3"]
    assert len(table) == 12 and summary["n_images"] == 12 and "broken.png" not in " ".join(r["filepath"] for r in table)
    assert all(r["label"] and r["filepath"].startswith(r["label"] + "/") for r in table)
    f1 = np.array([float(r["finding_1"]) for r in table])
    assert np.allclose([float(r["score"]) for r in table], f1)  # score: finding 1's
    assert np.allclose([float(r["finding_3"]) for r in table], -(f1 - 1.0) / 2.0, atol=2e-6)
    assert {r["flagged_1"] for r in table} == {"0"} and {r["flagged_2"] for r in table} == {"1"}
    assert {r["flagged"] for r in table} == {"1"}
    assert summary["n_flagged"] == 12 and summary["artifact_found"] and summary["n_confident"] == 12
    assert [(f["id"], f["n_flagged"], f["confident"]) for f in summary["findings"]] == [
        (1, 0, False), (2, 12, True), (3, 12, False)]
    assert summary["dataset"] == str(new_data.resolve()) and summary["kind"] == "apply"
    assert json.loads((out / "summary.json").read_text()) == summary
    scores = RunDir(out).read_scores()  # the run directory's own reader
    assert scores.finding_ids == [1, 2, 3] and scores.flags_of(2).all()

    # without a confident finding: finding 1's flags (the first applied finding's), as a scan does
    det["findings"][1]["confident"] = False
    summary = apply(det, new_data, tmp_path / "none-confident")
    assert summary["n_flagged"] == 0 and not summary["artifact_found"] and summary["n_confident"] == 0
    # --findings: only some; the first of them gives score and (none confident) flagged
    summary = apply(det, new_data, tmp_path / "only-3", findings=[3])
    assert [f["id"] for f in summary["findings"]] == [3] and summary["n_flagged"] == 12
    table = rows(tmp_path / "only-3" / "scores.csv")
    assert "finding_1" not in table[0] and all(r["score"] == r["finding_3"] for r in table)
    with pytest.raises(DoraError, match=r"the detector has no finding 4 \(it has: 1, 2, 3\)"):
        apply(det, new_data, tmp_path / "x", findings=[1, 4])


def test_a_finding_scored_within_the_class_folders_is_centred_on_each_images_class(tiny, new_data, tmp_path):
    plain = made_detector(tiny, [finding(1, [3, 5], [1, -1], [0.0, 0.0], [1.0, 2.0], 0.0, False)])
    apply(plain, new_data, tmp_path / "plain")
    table_plain = rows(tmp_path / "plain" / "scores.csv")
    base, labels = [float(r["finding_1"]) for r in table_plain], [r["label"] for r in table_plain]
    folders = sorted(set(labels))
    known = folders[:-1]  # the last folder is not one of the scan's classes
    centred = made_detector(tiny, [dict(finding(1, [3, 5], [1, -1], [0.0, 0.0], [1.0, 2.0], 0.0, False),
                                        class_centres={c: [0.1 * k, -0.2 * k] for k, c in enumerate(known)})],
                            version=2)
    told = []
    apply_detector(centred, new_data, out=tmp_path / "centred", workers=0, progress=False, log=told.append)
    got = [float(r["finding_1"]) for r in rows(tmp_path / "centred" / "scores.csv")]
    table = {c: [0.1 * k, -0.2 * k] for k, c in enumerate(known)}
    median = np.median(np.array(list(table.values())), axis=0)
    for b, g, label in zip(base, got, labels):
        c = table.get(label, median)  # an image outside the scan's classes: the median of their centres
        assert g == pytest.approx(b - (c[0] - c[1] / 2.0) / 2, abs=1e-5)  # directions 1, -1; spreads 1, 2
    outside = sum(label not in table for label in labels)
    assert outside and sum(f"warning: {outside} images lie outside the scan's class folders" in t for t in told) == 1
    told.clear()  # two centred findings: one warning, not one a finding
    apply_detector(dict(centred, findings=[centred["findings"][0], dict(centred["findings"][0], id=2)]), new_data,
                   out=tmp_path / "two", workers=0, progress=False, log=told.append)
    assert sum("images lie outside the scan's class folders" in t for t in told) == 1
    bad = dict(centred, findings=[dict(centred["findings"][0], class_centres={"a": [0.0]})])
    with pytest.raises(DoraError, match="different lengths"):
        apply(bad, new_data, tmp_path / "bad")


def test_a_corrupt_image_is_skipped_and_listed(tiny, new_data, tmp_path):
    det = made_detector(tiny, [finding(1, [0], [1], [0.0], [1.0], 0.0, True)])
    summary = apply(det, new_data, tmp_path / "out")
    skipped = rows(tmp_path / "out" / "skipped.csv")
    assert len(skipped) == 1 and skipped[0]["filepath"].endswith("/broken.png") and skipped[0]["reason"]
    assert summary["n_skipped"] == 1 and summary["n_images"] == 12


def test_the_output_goes_beside_the_dataset_never_into_it(tiny, new_data, tmp_path, monkeypatch):
    det = made_detector(tiny, [finding(1, [0], [1], [0.0], [1.0], 0.0, True)])
    with pytest.raises(DoraError, match="lies inside the dataset"):
        apply(det, new_data, new_data / "scores")
    monkeypatch.chdir(tmp_path)
    apply(det, new_data, None)
    assert (tmp_path / "dora-runs" / "incoming-apply" / "scores.csv").is_file()
    apply(det, new_data, None)  # again into its own folder: fine
    run = tmp_path / "run"  # a scan's run directory: never written over
    RunDir(run).path.mkdir()
    RunDir(run).write_detector(det)
    with pytest.raises(DoraError, match="holds a scan's run directory"):
        apply(run, new_data, run)
    assert not (run / "scores.csv").exists()


# -- the model --------------------------------------------------------------------------------------------------
def test_a_model_with_other_weights_is_refused_naming_the_fingerprint(tiny, new_data, tmp_path):
    det = made_detector(tiny, [finding(1, [0], [1], [0.0], [1.0], 0.0, True)])
    sha = det["weights_sha256"]
    changed = load_model(tiny).model
    with torch.no_grad():
        changed[0].weight[0, 0, 0, 0] += 0.01
    with pytest.raises(DoraError, match=f"weights differ from those the detector was made with \\(sha {sha}.*"
                                        r"--model/--weights"):
        apply(det, new_data, tmp_path / "a", model=changed)
    weights = tmp_path / "changed.pth"
    torch.save(changed.state_dict(), weights)
    with pytest.raises(DoraError, match=f"sha {sha}"):  # the detector's spec with another weights file
        apply(det, new_data, tmp_path / "b", weights=weights)
    with pytest.raises(DoraError, match=f"sha {sha}"):  # another model altogether
        apply(dict(det, model="demo"), new_data, tmp_path / "c")
    assert not (tmp_path / "a" / "scores.csv").exists()

    # the scan's model given as a module (its file moved): used, and given back as it was
    same = load_model(tiny).model.train()
    same[0].weight.requires_grad_(True)
    moved = dict(det, model=str(tmp_path / "moved.py") + ":make")
    with pytest.raises(DoraError, match="cannot load the detector's model .*moved.py:make.*--model"):
        apply(moved, new_data, tmp_path / "d")
    assert apply(moved, new_data, tmp_path / "e", model=same)["n_images"] == 12
    assert same.training and same[0].weight.requires_grad


# -- the command ------------------------------------------------------------------------------------------------
def test_the_apply_command(tiny, new_data, tmp_path):
    from click.testing import CliRunner

    from dora_clean.cli import main

    det = made_detector(tiny, [finding(1, [0], [1], [0.0], [1.0], 0.0, True),
                               finding(2, [1], [1], [0.0], [1.0], 1e9, False)])
    path = tmp_path / "detector.json"
    path.write_text(json.dumps(det))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["apply", str(path), str(new_data), "--out", str(out), "--workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert re.search(rf"^\s+1\s+{summary['findings'][0]['n_flagged']}\s+yes$", r.stdout, re.M), r.stdout
    assert re.search(r"^\s+2\s+0\s+no$", r.stdout, re.M), r.stdout
    assert "1 skipped (see skipped.csv)" in r.stdout and f"results: {out}" in r.stdout
    r = CliRunner().invoke(main, ["apply", str(path), str(new_data), "--out", str(tmp_path / "o2"), "--workers", "0",
                                  "-q", "--findings", "2"])
    assert r.exit_code == 0 and "no confident finding: finding 2's flags" in r.stdout, r.output

    for args, message in [
        ([str(tmp_path / "missing"), str(new_data)], "does not exist: give a run directory"),
        ([str(path), str(tmp_path / "nodata")], "dataset folder .* does not exist"),
        ([str(path), str(new_data), "--findings", "3"], "the detector has no finding 3"),
        ([str(path), str(new_data), "--findings", "one"], "give finding ids like 1,3"),
        ([str(path), str(new_data), "--model", "demo"], "weights differ from those the detector was made with"),
    ]:
        r = CliRunner().invoke(main, ["apply", *args, "--out", str(tmp_path / "bad"), "-q"])
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.output)
        assert re.search(message, lines[0]), lines[0]
    assert "Usage: dora-clean apply" in CliRunner().invoke(main, ["apply", "--help"], prog_name="dora-clean").output


# -- on a real scan ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scanned(tiny, data, tmp_path_factory) -> Path:
    from dora_clean.analysis.sams import SamsConfig
    from dora_clean.pipeline import ScanSettings, scan_dataset

    out = tmp_path_factory.mktemp("runs") / "run"
    scan_dataset(data, ScanSettings(model=tiny, layer="3", image_size=SIZE, out=str(out), workers=0,
                                    sams=SamsConfig(n_signals=2, steps=16, size=SIZE), fiftyone=False, progress=False))
    return out


def _same_flags(run: Path, applied: Path) -> None:
    scan, again = RunDir(run).read_scores(), RunDir(applied).read_scores()
    assert again.filepaths == scan.filepaths and again.labels == scan.labels
    assert scan.finding_ids and again.finding_ids == scan.finding_ids
    for k in scan.finding_ids:
        np.testing.assert_array_equal(again.finding_flags[k], scan.finding_flags[k])
        np.testing.assert_allclose(again.findings[k], scan.findings[k], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(again.flagged, scan.flagged)
    np.testing.assert_allclose(again.score, scan.score, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_on_the_scanned_dataset_apply_flags_exactly_what_the_scan_flagged(scanned, data, tmp_path, monkeypatch):
    scan_summary = json.loads((scanned / "summary.json").read_text())
    summary = apply(scanned, data, tmp_path / "cached")  # the scan's activations, from the cache
    _same_flags(scanned, tmp_path / "cached")
    assert summary["n_flagged"] == scan_summary["n_flagged"]
    assert [(f["id"], f["n_flagged"], f["confident"]) for f in summary["findings"]] == [
        (f["id"], f["n_flagged"], f["confident"]) for f in scan_summary["findings"]]
    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path / "empty-cache"))  # on another machine: computed afresh
    apply(scanned / "detector.json", data, tmp_path / "fresh")
    _same_flags(scanned, tmp_path / "fresh")


@pytest.mark.slow
def test_a_run_directory_applied_to_new_images_through_the_command(scanned, new_data, tmp_path):
    from click.testing import CliRunner

    from dora_clean.cli import main

    out = tmp_path / "new"
    r = CliRunner().invoke(main, ["apply", str(scanned), str(new_data), "--out", str(out), "--workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    scores = RunDir(out).read_scores()
    assert len(scores.filepaths) == 12 and scores.finding_ids == RunDir(scanned).read_scores().finding_ids
    assert all(np.isfinite(v).all() for v in scores.findings.values())
    assert f"results: {out}" in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["max", "auto"])
def test_a_scan_by_peak_or_by_choice_records_its_reading_and_apply_reads_the_same(tiny, data, tmp_path, pooling):
    from dora_clean.analysis.sams import SamsConfig
    from dora_clean.pipeline import ScanSettings, scan_dataset
    from dora_clean.scoring.findings import PEAK_REASON

    run = tmp_path / "run"
    scan_dataset(data, ScanSettings(model=tiny, layer="3", image_size=SIZE, out=str(run), workers=0, pooling=pooling,
                                    sams=SamsConfig(n_signals=2, steps=16, size=SIZE), fiftyone=False, progress=False))
    summary = json.loads((run / "summary.json").read_text())
    detector = json.loads((run / "detector.json").read_text())
    assert summary["pooling"] == detector["pooling"] and summary["pooling"] in ({"max"} if pooling == "max"
                                                                               else {"mean", "max"})
    if summary["pooling"] == "max":  # what the peak flags is left for review, and the summary says why
        assert not summary["artifact_found"] and summary["n_confident"] == 0
        assert all(PEAK_REASON in f["confidence"]["reasons"] for f in summary["findings"])
    apply(run, data, tmp_path / "applied")
    _same_flags(run, tmp_path / "applied")
