"""`dora-clean demo` end to end, as a new user runs it: the console script, the real FiftyOne
database, then `dora-clean export` of what it flagged."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("dora-clean") or str(Path(sys.executable).with_name("dora-clean"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=dict(os.environ), timeout=900)


@pytest.mark.slow
def test_the_demo_finds_the_planted_watermark_and_its_flags_export(tmp_path):
    work = tmp_path / "demo"
    r = cli("demo", "--workdir", str(work), "--quiet")
    assert r.returncode == 0, r.stderr
    run = work / "run"
    summary = json.loads((run / "summary.json").read_text())
    # what the demo prints is what it wrote
    assert f"infected neurons: {', '.join(map(str, summary['infected_neurons']))}" in r.stdout
    assert f"{summary['n_images']} scanned, {summary['n_flagged']} flagged" in r.stdout
    assert f"FiftyOne dataset: {summary['fiftyone_dataset']}" in r.stdout
    assert f"findings ({len(summary['findings'])}):" in r.stdout  # the table, one row per finding
    for f in summary["findings"]:
        assert any(line.split()[:2] == [str(f["id"]), str(len(f["neurons"]))] and f"{f['n_flagged']}" in line
                   for line in r.stdout.splitlines())
    assert summary["findings"][0]["confident"] and summary["findings"][0]["label"] == "artifact"
    assert summary["n_images"] == 1000 and summary["n_skipped"] == 0
    # the watermark is found: the combined score ranks it, and the flags are the watermarked images
    assert summary["auc"]["combined"] >= 0.99
    with open(run / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    flagged = {r["filepath"] for r in rows if r["flagged"] == "1"}
    marked = {r["filepath"] for r in rows if r["artifact"] == "1"}
    assert len(marked) == 200
    assert len(flagged & marked) >= 0.95 * len(flagged) and len(flagged & marked) >= 0.95 * len(marked)
    for name in ("neurons.csv", "heatmaps.npy", "skipped.csv", "atlas.png", "report.html", "finding_1.png",
                 "detector.json"):
        assert (run / name).is_file(), name

    clean = tmp_path / "clean"
    r = cli("export", str(run), "--to", str(clean))
    assert r.returncode == 0, r.stderr
    kept = {p.relative_to(clean).as_posix() for p in clean.rglob("*.png")}
    assert kept == {r["filepath"] for r in rows} - flagged
    assert not (work / "dataset" / "labels.csv").stat().st_size == 0  # the source is still there
    assert len(list((work / "dataset").rglob("*.png"))) == 1000
