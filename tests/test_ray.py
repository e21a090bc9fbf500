"""The scan and the s-AMS on Ray (``--ray``): a real local Ray runtime, the local scan's result.

No mock of Ray: the slow tests start a Ray runtime on this machine (2 CPUs, no
dashboard), scan a small planted dataset with a bad file through it, and
compare the run directory with the local scan's.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from dora_clean.analysis.sams import SamsConfig
from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
from dora_clean.errors import DoraError
from dora_clean.pipeline import ScanSettings, scan_dataset

FAST_SAMS = SamsConfig(n_signals=2, steps=48, size=64)  # as tests/test_run.py


def test_without_ray_one_line_says_how_to_install_it(monkeypatch):
    from dora_clean.scanning.distributed import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(DoraError) as e:
        connect("local")
    assert 'pip install "dora-clean[ray]"' in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_address_is_refused():
    pytest.importorskip("ray")
    from dora_clean.scanning.distributed import connect

    for bad in ("", "localhost:6379", "ray://"):
        with pytest.raises(DoraError, match="local, auto or ray://HOST:PORT"):
            connect(bad)


def test_neuron_chunks_give_every_worker_a_task():
    from dora_clean.analysis.distributed import neuron_chunks

    config = SamsConfig(n_signals=4, batch_size=256)  # the local chunk: 64 neurons
    assert [len(c) for c in neuron_chunks(range(200), config, workers=2)] == [64, 64, 64, 8]
    assert [len(c) for c in neuron_chunks(range(64), config, workers=4)] == [16, 16, 16, 16]
    assert sum(neuron_chunks(range(10), config, workers=100), []) == list(range(10))


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-planted") / "data"
    write_scan_set(root, ScanSetSpec(80, artifact_fraction=0.25, seed=5))
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_the_ray_scan_gives_the_local_result(planted, ray_runtime, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dora_clean.cli import main

    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path / "cache-local"))
    local = tmp_path / "local"
    scan_dataset(planted, ScanSettings(labels=str(planted / "labels.csv"), out=str(local), sams=FAST_SAMS,
                                       fiftyone=False, workers=0, progress=False))

    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path / "cache-ray"))  # nothing of the local run to reuse
    on_ray = tmp_path / "ray"
    r = CliRunner().invoke(main, ["scan", str(planted), "--ray", "local", "--labels", str(planted / "labels.csv"),
                                  "--out", str(on_ray), "--signals", "2", "--steps", "48", "--sams-size", "64",
                                  "--no-fiftyone", "--quiet"], prog_name="dora-clean")
    assert r.exit_code == 0, r.output
    assert any((tmp_path / "cache-ray" / "scans").iterdir())  # the Ray scan filled its own cache

    a, b = _rows(local / "scores.csv"), _rows(on_ray / "scores.csv")
    assert a and [x["filepath"] for x in a] == [x["filepath"] for x in b]
    assert set(a[0]) == set(b[0])
    for col in a[0]:
        if col in ("filepath", "label", "flagged", "artifact"):
            assert [x[col] for x in a] == [x[col] for x in b], col
        else:
            np.testing.assert_allclose([float(x[col]) for x in b], [float(x[col]) for x in a], atol=1e-4,
                                       err_msg=col)
    assert (on_ray / "skipped.csv").read_text() == (local / "skipped.csv").read_text()
    assert "circle/broken.png" in (on_ray / "skipped.csv").read_text()
    import json

    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (local, on_ray))
    for key in ("infected_neurons", "n_images", "n_flagged", "n_skipped", "combined_neurons", "auc"):
        assert sa[key] == sb[key], key
    # the s-AMS made as Ray tasks (two tasks of 32 neurons here) are the local ones, pixel for pixel
    sams = sorted(p.name for p in (local / "sams").iterdir())
    assert sams == sorted(p.name for p in (on_ray / "sams").iterdir()) and len(sams) == 64 * 2
    assert all((local / "sams" / n).read_bytes() == (on_ray / "sams" / n).read_bytes() for n in sams)


@pytest.mark.slow
def test_an_interrupted_ray_scan_resumes_from_its_chunks(planted, ray_runtime, tmp_path, monkeypatch):
    """Killed after two chunks, a Ray scan sends only the others again; its chunk files are the local
    scan's: the local scan finishes a Ray scan's work directory, and the result is the local one."""
    from dora_clean.demo import load_demo_model
    from dora_clean.models import LayerModel
    from dora_clean.scanning import activations, distributed, list_images, scan_images
    from dora_clean.scanning.activations import ScanOptions

    model, info = load_demo_model()
    lm = LayerModel(model, info["layer"])
    entries, _, _ = list_images(planted)
    options = ScanOptions(64, info["mean"], info["std"], "cpu", batch_size=8, chunk_images=8, progress=False)
    n_chunks = -(-len(entries) // 8)
    work = tmp_path / "work"

    written = []
    real_write = distributed._write_ray_chunk

    def write_then_die(job, c, parts, map_hw, stop_after):
        real_write(job, c, parts, map_hw)
        written.append(c)
        if len(written) == stop_after:
            raise RuntimeError("killed")

    monkeypatch.setattr(distributed, "_write_ray_chunk", lambda *a: write_then_die(*a, stop_after=2))
    with pytest.raises(DoraError, match="run again to resume"):
        distributed.scan_images_ray(lm, planted, entries, work, options, [3], address="local")
    assert len(list(work.glob("chunk_*.npz"))) == 2

    monkeypatch.setattr(distributed, "_write_ray_chunk", lambda *a: write_then_die(*a, stop_after=4))
    with pytest.raises(DoraError):
        distributed.scan_images_ray(lm, planted, entries, work, options, [3], address="local")
    assert len(set(written)) == 4 and len(list(work.glob("chunk_*.npz"))) == 4  # the first two not again

    scanned = []
    real_chunks = activations._scan_chunks
    monkeypatch.setattr(activations, "_scan_chunks", lambda job, todo: (scanned.extend(todo),
                                                                        real_chunks(job, todo)))
    resumed = scan_images(lm, planted, entries, work, options, [3])  # the local scan finishes it
    assert sorted(scanned) == sorted(set(range(n_chunks)) - set(written))
    reference = scan_images(lm, planted, entries, tmp_path / "reference", options, [3])
    assert [e.relpath for e in resumed.entries] == [e.relpath for e in reference.entries]
    assert [(s.relpath, s.reason) for s in resumed.skipped] == [(s.relpath, s.reason) for s in reference.skipped]
    assert [s.relpath for s in resumed.skipped] == ["circle/broken.png"]
    np.testing.assert_allclose(resumed.mean_act, reference.mean_act, atol=1e-5)
    np.testing.assert_allclose(resumed.max_act, reference.max_act, atol=1e-5)
    np.testing.assert_allclose(np.asarray(resumed.maps, np.float32), np.asarray(reference.maps, np.float32),
                               atol=1e-2)


@pytest.mark.slow
def test_a_ray_scan_without_maps_and_with_another_batch_size(planted, ray_runtime, tmp_path):
    """No infected neurons (no maps to keep) and batches that do not divide the chunks: the local result."""
    from dora_clean.demo import load_demo_model
    from dora_clean.models import LayerModel
    from dora_clean.scanning import list_images, scan_images
    from dora_clean.scanning.activations import ScanOptions
    from dora_clean.scanning.distributed import scan_images_ray

    model, info = load_demo_model()
    lm = LayerModel(model, info["layer"])
    entries, _, _ = list_images(planted)
    entries = entries[:31]
    assert "circle/broken.png" in [e.relpath for e in entries]
    options = ScanOptions(64, info["mean"], info["std"], "cpu", batch_size=7, chunk_images=14, progress=False)
    on_ray = scan_images_ray(lm, planted, entries, tmp_path / "ray", options, (), address="local")
    local = scan_images(lm, planted, entries, tmp_path / "local", options, ())
    assert [e.relpath for e in on_ray.entries] == [e.relpath for e in local.entries]
    assert [s.relpath for s in on_ray.skipped] == ["circle/broken.png"]
    assert on_ray.maps.shape == local.maps.shape and on_ray.maps.shape[1] == 0
    np.testing.assert_allclose(on_ray.mean_act, local.mean_act, atol=1e-5)
    np.testing.assert_allclose(on_ray.max_act, local.max_act, atol=1e-5)
