"""Reliability: a corpus of bad input through the whole scan, SIGKILL at several points, two scans at once,
and the user's data unchanged by every command."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from badcorpus import IS_ROOT, make_bad_corpus, snapshot_tree
from benchmarks.planted import write_scan_set
from dora_clean.pipeline import ScanSettings, scan_dataset
from dora_clean.analysis.sams import SamsConfig

EXE = shutil.which("dora-clean") or str(Path(sys.executable).with_name("dora-clean"))
FAST_SAMS = SamsConfig(n_signals=2, steps=32, size=64)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_bad_corpus_through_the_whole_scan(tmp_path):
    data = tmp_path / "corpus"
    expected = make_bad_corpus(data)
    before = snapshot_tree(data)
    out = tmp_path / "run"
    summary = scan_dataset(data, ScanSettings(out=str(out), sams=FAST_SAMS, fiftyone=False, workers=2,
                                              progress=False))
    assert snapshot_tree(data) == before
    ok = {p for p, e in expected.items() if e == "ok"}
    bad = {p: e for p, e in expected.items() if e not in ("ok", "ignored")}
    scanned = {r["filepath"] for r in rows(out / "scores.csv")}
    skipped = {r["filepath"]: r["reason"] for r in rows(out / "skipped.csv")}
    assert scanned == ok
    assert set(skipped) == set(bad)
    for p, keyword in bad.items():
        assert keyword in skipped[p], (p, keyword, skipped[p])
    assert summary["n_images"] == len(ok) and summary["n_skipped"] == len(bad)
    print(f"bad-input corpus: {len(expected)} files, {len(ok)} scanned, {len(bad)} skipped with a reason, "
          f"{len(expected) - len(ok) - len(bad)} ignored")


@pytest.mark.slow
def test_empty_dataset_and_unwritable_output(tmp_path):
    from dora_clean.errors import DoraError

    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DoraError, match="no images found"):
        scan_dataset(tmp_path / "empty", ScanSettings(out=str(tmp_path / "o"), progress=False))
    if not IS_ROOT:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        data = write_scan_set(tmp_path / "d", "patch", 8)
        with pytest.raises(DoraError, match="cannot write to the run directory"):
            scan_dataset(data, ScanSettings(out=str(ro / "run"), progress=False))


def scan_cmd(data: Path, out: Path, *extra) -> list[str]:
    return [EXE, "scan", str(data), "--labels", str(data / "labels.csv"), "--out", str(out), "--no-fiftyone",
            "--signals", "2", "--steps", "40", "--sams-batch-size", "16", "--batch-size", "8", "--workers", "0",
            "--quiet", *extra]


def kill_when(cmd: list[str], env: dict, ready, timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.time()
    while not ready():
        if p.poll() is not None:
            raise AssertionError(f"finished before the kill point: {p.stderr.read().decode()[-500:]}")
        if time.time() - t > timeout:
            p.kill()
            raise AssertionError("kill point never reached")
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()


@pytest.mark.slow
def test_sigkill_at_several_points_resumes_to_identical_results(tmp_path):
    data = write_scan_set(tmp_path / "data", "patch", 2300, artifact_fraction=0.2, seed=4)  # two scan chunks
    before = snapshot_tree(data)
    ref_env = dict(os.environ, DORA_CLEAN_CACHE=str(tmp_path / "cache-ref"))
    subprocess.run(scan_cmd(data, tmp_path / "ref"), env=ref_env, check=True, capture_output=True)
    reference = (tmp_path / "ref" / "scores.csv").read_text()

    cache = tmp_path / "cache"
    env = dict(os.environ, DORA_CLEAN_CACHE=str(cache))
    sams_pngs = lambda: len(list(cache.glob("sams/*/*.png")))  # noqa: E731
    chunks = lambda: list(cache.glob("scans/*/chunk_*.npz"))  # noqa: E731
    kill_points = {
        "during s-AMS, after the first chunk of neurons": lambda: sams_pngs() >= 16,
        "during s-AMS, half-way": lambda: sams_pngs() >= 64,
        "during the scan, after its first chunk": lambda: len(chunks()) >= 1,
        "while writing the run directory": lambda: (tmp_path / "run" / "neurons.csv").exists(),
    }
    for name, ready in kill_points.items():
        kill_when(scan_cmd(data, tmp_path / "run"), env, ready)
    done = subprocess.run(scan_cmd(data, tmp_path / "run"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "scores.csv").read_text() == reference
    assert not list((tmp_path / "run").glob(".*.tmp*"))  # no half-written file left behind
    assert snapshot_tree(data) == before
    print(f"killed with SIGKILL at {len(kill_points)} points; the resumed run equals the uninterrupted one")


@pytest.mark.slow
def test_two_scans_of_one_dataset_at_once(tmp_path):
    data = write_scan_set(tmp_path / "data", "frame", 300, seed=6)
    env = dict(os.environ, DORA_CLEAN_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen(scan_cmd(data, tmp_path / f"run{i}"), env=env, stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()
    a, b = ((tmp_path / f"run{i}" / "scores.csv").read_text() for i in range(2))
    assert a == b and len(a.splitlines()) == 301


@pytest.mark.slow
def test_review_and_export_leave_the_dataset_unchanged(tmp_path):
    from dora_clean.export import export_clean
    from dora_clean.review import launch_review, to_fiftyone

    data = write_scan_set(tmp_path / "data", "text", 60, seed=8)
    before = snapshot_tree(data)
    out = tmp_path / "run"
    scan_dataset(data, ScanSettings(out=str(out), sams=FAST_SAMS, workers=0, progress=False,
                                    labels=str(data / "labels.csv")))
    ds = to_fiftyone(out, progress=False)
    ds.take(3, seed=0).tag_samples("remove")
    session = launch_review(out, port=_free_port(), wait=False)
    try:
        counts = export_clean(out, tmp_path / "clean")
    finally:
        session.close()
    assert counts["kept"] + counts["removed_tagged"] + counts["removed_flagged"] + counts.get("removed_skipped", 0) \
        == counts["total"] == 60
    assert snapshot_tree(data) == before


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
