"""The run directory's one reader and writer: every file round trips, the format is the scan's, byte for byte."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dora_clean.errors import DoraError
from dora_clean.rundir import (NeuronRow, RemovedRow, RunDir, Scores, read_scores, read_summary, removed_csv,
                               update_summary)
from dora_clean.scanning import Skipped


def _scores(artifact: bool = True) -> Scores:
    return Scores(
        filepaths=["cat/a.png", "cat/sub/b.png", "dog/c d,é.png"],
        labels=["cat", "cat", "dog"],
        score=np.array([0.1234567, -2.5, 3.0]),
        neurons={7: np.array([1.0, 2.0, 3.0000004]), 2: np.array([-1.0, 0.0, 0.5])},
        flagged=np.array([False, True, True]),
        artifact=np.array([False, True, False]) if artifact else None,
    )


def _neurons(auc: bool = True) -> list[NeuronRow]:
    return [NeuronRow(n, 0.5 * n, n == 2, n == 0, 0.123456 * n, -1.0 * n, 0.25 * n if auc else None)
            for n in range(4)]


def test_summary_round_trip_and_update_keeps_the_other_keys(tmp_path):
    run = RunDir(tmp_path)
    summary = {"model": "demo", "infected_neurons": [3, 1], "auc": {"3": 0.9}, "fiftyone_dataset": None}
    run.write_summary(summary)
    assert run.read_summary() == summary == read_summary(tmp_path)
    assert run.summary_path.read_text() == json.dumps(summary, indent=2) + "\n"
    new = update_summary(tmp_path, fiftyone_dataset="mine", timings={"scan": 1.5})
    assert new == {**summary, "fiftyone_dataset": "mine", "timings": {"scan": 1.5}} == run.read_summary()


def test_summary_update_is_atomic(tmp_path):
    run = RunDir(tmp_path)
    run.write_summary({"model": "demo", "layer": "layer3"})
    before = run.summary_path.read_bytes()
    with pytest.raises(TypeError):  # fails half way through writing the new file
        run.update_summary(layer="layer4", bad=object())
    assert run.summary_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left


def test_not_a_run_and_bad_files_fail_clearly(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(DoraError, match="not a dora-clean run directory"):
        run.read_summary()
    with pytest.raises(DoraError, match="has no scores.csv"):
        read_scores(tmp_path)
    with pytest.raises(DoraError, match="has no neurons.csv"):
        run.read_neurons()
    run.summary_path.write_text("{not json")
    with pytest.raises(DoraError, match="cannot read"):
        run.read_summary()
    run.scores_path.write_text("filepath,score\nx.png,1\n")
    with pytest.raises(DoraError, match="lacks the column.*flagged, label"):
        run.read_scores()
    run.scores_path.write_text("filepath,label,score,flagged\nx.png,,high,0\n")
    with pytest.raises(DoraError, match="bad value"):
        run.read_scores()
    assert run.read_skipped() == [] and run.read_removed() == [] and run.read_heatmaps() is None


@pytest.mark.parametrize("artifact", [True, False])
def test_scores_round_trip_in_the_scan_format(tmp_path, artifact):
    run = RunDir(tmp_path)
    scores = _scores(artifact)
    run.write_scores(scores)
    lines = run.scores_path.read_bytes().decode().split("\r\n")
    assert lines[0] == "filepath,label,score,neuron_7,neuron_2,flagged" + (",artifact" if artifact else "")
    assert lines[1] == "cat/a.png,cat,0.123457,1.000000,-1.000000,0" + (",0" if artifact else "")
    assert lines[3] == '"dog/c d,é.png",dog,3.000000,3.000000,0.500000,1' + (",0" if artifact else "")
    back = run.read_scores()
    assert back.filepaths == scores.filepaths and back.labels == scores.labels
    np.testing.assert_allclose(back.score, scores.score, atol=5e-7)
    assert list(back.neurons) == [7, 2]  # the column order is the infected order
    for n in scores.neurons:
        np.testing.assert_allclose(back.neurons[n], scores.neurons[n], atol=5e-7)
    assert back.flagged.tolist() == scores.flagged.tolist()
    assert (back.artifact is None) if not artifact else back.artifact.tolist() == scores.artifact.tolist()


def test_an_unlabelled_image_gets_an_empty_artifact_cell(tmp_path):
    run = RunDir(tmp_path)
    scores = _scores()
    scores.artifact = [1, None, 0]
    run.write_scores(scores)
    assert [line.rsplit(",", 1)[1] for line in run.scores_path.read_text().splitlines()[1:]] == ["1", "", "0"]
    # and reads back (a labels file that leaves images out): None for the unlabelled one
    assert run.read_scores().artifact.tolist() == [True, None, False]


@pytest.mark.parametrize("auc", [True, False])
def test_neurons_round_trip_in_the_scan_format(tmp_path, auc):
    run = RunDir(tmp_path)
    rows = _neurons(auc)
    run.write_neurons(rows)
    lines = run.neurons_path.read_text().splitlines()
    assert lines[0] == "neuron,outlier_score,infected,dead,atlas_x,atlas_y" + (",auc" if auc else "")
    assert lines[3] == "2,1.000000,1,0,0.24691,-2.00000" + (",0.500000" if auc else "")
    back = run.read_neurons()
    assert [r.neuron for r in back] == [0, 1, 2, 3]
    for r, b in zip(rows, back):
        assert (b.infected, b.dead) == (r.infected, r.dead)
        assert b.outlier_score == pytest.approx(r.outlier_score) and b.atlas_x == pytest.approx(r.atlas_x, abs=1e-5)
        assert b.auc == (pytest.approx(r.auc) if auc else None)


def test_heatmaps_skipped_removed_round_trip(tmp_path):
    run = RunDir(tmp_path)
    maps = np.random.default_rng(0).random((3, 4, 4)).astype(np.float32)
    run.write_heatmaps(maps)
    back = run.read_heatmaps()
    assert back.dtype == np.float16 and isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, maps.astype(np.float16))

    run.write_skipped([Skipped("z.png", "zero-byte file"), Skipped("a/b.png", "cannot identify image file")])
    assert run.skipped_path.read_bytes().decode() == "filepath,reason\r\na/b.png,cannot identify image file\r\nz.png,zero-byte file\r\n"
    assert run.read_skipped() == [Skipped("a/b.png", "cannot identify image file"), Skipped("z.png", "zero-byte file")]

    removed = [RemovedRow("cat/a.png", "flagged", 0.1 + 0.2, (1, 3)), RemovedRow("x.png", "skipped: broken")]
    run.write_removed(removed)
    assert run.removed_path.read_text() == removed_csv(removed) == \
        "filepath,reason,score,findings\ncat/a.png,flagged,0.30000000000000004,1 3\nx.png,skipped: broken,,\n"
    assert run.read_removed() == removed


def test_sams_are_copied_and_listed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for n in (3, 10):
        for j in range(2):
            (cache / f"{n}_{j}.png").write_bytes(b"png" * (n + j))
    run = RunDir(tmp_path / "run")
    run.create()
    run.copy_sams(cache, [10, 3], 2)
    (run.sams_dir / "notes.png").write_bytes(b"not a sample")
    got = run.sams_images()
    assert [(s.neuron, s.sample) for s in got] == [(3, 0), (3, 1), (10, 0), (10, 1)]
    assert all(s.path == run.sams_image(s.neuron, s.sample) and s.path.name == f"{s.neuron}_{s.sample}.png"
               for s in got)
    assert run.sams_image(10, 1).read_bytes() == (cache / "10_1.png").read_bytes()


def test_create_clears_what_a_killed_writer_left(tmp_path):
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(p.stdout)
    run = RunDir(tmp_path)
    (tmp_path / "sams").mkdir()
    stale = [tmp_path / f".scores.csv.pid{dead}.x.tmp", tmp_path / "sams" / f".1_0.png.pid{dead}.tmp.png"]
    for s in stale:
        s.write_text("half")
    mine = tmp_path / f".summary.json.pid{os.getpid()}.y.tmp"
    mine.write_text("being written")
    run.create()
    assert not any(s.exists() for s in stale) and mine.exists()


def test_plot_and_report_paths_are_in_the_run(tmp_path):
    run = RunDir(tmp_path)
    names = [p.name for p in (run.atlas_plot, run.sams_plot, run.roc_plot, run.flagged_plot, run.report_path)]
    assert names == ["atlas.png", "infected_sams.png", "roc.png", "flagged.png", "report.html"]
    assert {p.parent for p in (run.atlas_plot, run.report_path, run.scores_path)} == {tmp_path}


# -- a real scan's run directory, read back by RunDir ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    from dora_clean.analysis.sams import SamsConfig
    from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
    from dora_clean.pipeline import ScanSettings, scan_dataset

    data = write_scan_set(tmp_path_factory.mktemp("rundir") / "data", ScanSetSpec(40, artifact_fraction=0.25, seed=2))
    (data / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path_factory.mktemp("rundir-runs") / "run"
    settings = ScanSettings(labels=str(data / "labels.csv"), out=str(out), sams=SamsConfig(n_signals=1, steps=4, size=32),
                            fiftyone=False, workers=0, progress=False)
    return RunDir(out), scan_dataset(data, settings)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_scans_run_directory_reads_back_exactly(scanned, tmp_path):
    run, summary = scanned
    assert run.read_summary() == summary
    scores, rows = run.read_scores(), _csv(run.scores_path)
    assert scores.filepaths == [r["filepath"] for r in rows] and len(rows) == summary["n_images"] == 40
    assert list(scores.neurons) == summary["infected_neurons"]
    assert scores.flagged.sum() == summary["n_flagged"] and scores.artifact is not None
    neurons = run.read_neurons()
    assert [n.neuron for n in neurons if n.infected] == sorted(summary["infected_neurons"])
    assert all(n.auc == pytest.approx(summary["auc"][str(n.neuron)], abs=1e-6) for n in neurons)
    assert run.read_heatmaps().shape[0] == 40
    assert run.read_skipped()[0].relpath == "square/broken.png"
    assert len(run.sams_images()) == summary["n_neurons"]

    # what RunDir reads, it writes again byte for byte: one format, the scan's
    again = RunDir(tmp_path / "again")
    again.write_summary(run.read_summary())
    again.write_scores(scores)
    again.write_neurons(neurons)
    again.write_skipped(run.read_skipped())
    again.write_heatmaps(run.read_heatmaps())
    for name in ("summary.json", "scores.csv", "neurons.csv", "skipped.csv", "heatmaps.npy"):
        assert (again.path / name).read_bytes() == (run.path / name).read_bytes(), name


def test_findings_label_columns_and_the_detector_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    flags = {1: np.array([True, False, False]), 2: np.array([False, True, False])}
    scores = Scores(["a.png", "b.png", "c.png"], ["", "", ""], np.array([0.5, 0.1, -1.0]), {},
                    flags[1] | flags[2], np.array([1, 1, 0], dtype=bool),
                    findings={1: np.array([2.0, 0.1, -1.0]), 2: np.array([0.0, 3.0, -0.5])}, finding_flags=flags,
                    artifacts={"ruler": np.array([True, False, False]), "ink": np.array([False, True, False])})
    run.write_scores(scores)
    header = run.scores_path.read_text().splitlines()[0]
    assert header == "filepath,label,score,flagged,finding_1,flagged_1,finding_2,flagged_2,artifact,artifact_ruler,artifact_ink"
    back = run.read_scores()
    assert back.finding_ids == [1, 2] and np.array_equal(back.flags_of(2), flags[2])
    assert np.allclose(back.findings[2], scores.findings[2]) and list(back.artifacts) == ["ruler", "ink"]
    assert back.artifacts["ink"].tolist() == [False, True, False]
    with pytest.raises(DoraError, match="no finding 3 .*1, 2"):
        back.flags_of(3)
    old = Scores(["a.png"], [""], np.array([1.0]), {}, np.array([True]), None)  # a run from before findings
    run.write_scores(old)
    assert run.read_scores().finding_ids == [1] and run.read_scores().flags_of(1).tolist() == [True]
    with pytest.raises(DoraError, match="no detector.json"):
        run.read_detector()
    run.write_detector({"format": "dora-clean detector", "findings": []})
    assert run.read_detector()["format"] == "dora-clean detector"
