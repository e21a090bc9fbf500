"""The streaming scan: results in order, bad files listed, resume after an interruption."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dora_clean.scanning.activations as scan_mod
from dora_clean.scanning import list_images
from dora_clean.models import LayerModel, freeze
from dora_clean.scanning import scan_images
from dora_clean.scanning.activations import ScanOptions


def net() -> nn.Module:
    torch.manual_seed(0)
    return freeze(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2), nn.ReLU()))


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(45):
            arr = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            if c == "b":
                arr[:, :, 0] = 255  # class b is red: channel means differ
            Image.fromarray(arr).save(root / c / f"{i:03d}.png")
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "b" / "text.jpg").write_text("not an image")
    good = root / "a" / "000.png"
    (root / "a" / "truncated.png").write_bytes(good.read_bytes()[:200])
    return root


def direct(model, root, entries, size=16):
    """The reference: each image alone through the model."""
    from dora_clean.scanning import load_image

    lm = LayerModel(model, "3")
    rows = []
    for e in entries:
        x = load_image(root / e.relpath, size).float()[None]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
        rows.append(lm((x - mean) / std)[0])
    return torch.stack(rows)


@pytest.mark.slow
def test_scan_matches_per_image_forward_and_lists_bad_files(dataset, tmp_path):
    model = net()
    entries, skipped, layout = list_images(dataset)
    assert layout == "classes"
    res = scan_images(LayerModel(model, "3"), dataset, entries, tmp_path / "work",
                      ScanOptions(16, batch_size=8, workers=2, chunk_images=16, progress=False), map_neurons=[2, 4])
    bad = {s.relpath: s.reason for s in skipped + res.skipped}
    assert set(bad) == {"a/zero.png", "b/text.jpg", "a/truncated.png"}
    assert "zero" in bad["a/zero.png"] and "not an image" in bad["b/text.jpg"]
    assert [e.relpath for e in res.entries] == sorted(p for p in (e.relpath for e in entries) if p not in bad)
    assert len(res.entries) == 90
    want = direct(model, dataset, res.entries)
    np.testing.assert_allclose(res.mean_act, want.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.max_act, want.amax(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.maps.astype(np.float32), want[:, [2, 4]].numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.slow
def test_interrupted_scan_resumes_to_the_same_result(dataset, tmp_path, monkeypatch):
    model = net()
    entries, _, _ = list_images(dataset)
    args = dict(options=ScanOptions(16, batch_size=8, workers=0, chunk_images=16, progress=False), map_neurons=[1])
    ref = scan_images(LayerModel(model, "3"), dataset, entries, tmp_path / "ref", **args)

    real_write = scan_mod._write_chunk
    written = []

    def dying_write(*args):
        if len(written) == 2:
            raise KeyboardInterrupt  # killed after two chunks
        real_write(*args)
        written.append(args[1])

    monkeypatch.setattr(scan_mod, "_write_chunk", dying_write)
    with pytest.raises(KeyboardInterrupt):
        scan_images(LayerModel(model, "3"), dataset, entries, tmp_path / "resumed", **args)
    assert len(list((tmp_path / "resumed").glob("chunk_*.npz"))) == 2
    monkeypatch.setattr(scan_mod, "_write_chunk", real_write)

    scanned = []
    real_scan = scan_mod._scan_chunks
    monkeypatch.setattr(scan_mod, "_scan_chunks", lambda job, todo: (scanned.append(todo), real_scan(job, todo)))
    other_batch = dict(args, options=dataclasses.replace(args["options"], batch_size=5))  # resumed with another
    res = scan_images(LayerModel(model, "3"), dataset, entries, tmp_path / "resumed", **other_batch)
    assert scanned == [[2, 3, 4, 5]]  # the two finished chunks were not scanned again
    assert [e.relpath for e in res.entries] == [e.relpath for e in ref.entries]
    # each image where it was (another batch size changes a float's last bits, nothing more)
    np.testing.assert_allclose(res.mean_act, ref.mean_act, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.maps, np.float32), np.asarray(ref.maps, np.float32), rtol=2e-3, atol=1e-3)
    assert [(s.relpath, s.reason) for s in res.skipped] == [(s.relpath, s.reason) for s in ref.skipped]
    # a third call reuses the merged result without scanning
    scanned.clear()
    scan_images(LayerModel(model, "3"), dataset, entries, tmp_path / "resumed", **args)
    assert scanned == []


@pytest.mark.slow
def test_maps_of_other_neurons_do_not_rescan_the_activations(dataset, tmp_path, monkeypatch):
    """The activations of every neuron are cached by model, layer, files and preprocessing; asked for the
    maps of other neurons (another infected set), the scan computes those maps only, and gives what a
    fresh scan gives."""
    model = net()
    entries, _, _ = list_images(dataset)
    options = ScanOptions(16, batch_size=8, workers=0, chunk_images=16, progress=False)
    lm = LayerModel(model, "3")
    scan_images(lm, dataset, entries, tmp_path / "work", options, map_neurons=[2, 4])
    fresh = scan_images(lm, dataset, entries, tmp_path / "fresh", options, map_neurons=[5, 1])
    calls = {"scan": 0, "maps": 0}
    for name, kind in (("_scan_chunks", "scan"), ("_map_chunks", "maps")):
        real = getattr(scan_mod, name, None)

        def counting(job, todo, _real=real, _kind=kind):
            calls[_kind] += bool(todo)
            return _real(job, todo)

        monkeypatch.setattr(scan_mod, name, counting, raising=False)
    again = scan_images(lm, dataset, entries, tmp_path / "work", options, map_neurons=[5, 1])
    assert [e.relpath for e in again.entries] == [e.relpath for e in fresh.entries]
    assert [(k.relpath, k.reason) for k in again.skipped] == [(k.relpath, k.reason) for k in fresh.skipped]
    np.testing.assert_array_equal(again.mean_act, fresh.mean_act)
    np.testing.assert_array_equal(again.max_act, fresh.max_act)
    assert again.map_neurons == [5, 1] and again.maps.shape == fresh.maps.shape == (90, 2, 3, 3)
    np.testing.assert_array_equal(again.maps, fresh.maps)
    assert calls == {"scan": 0, "maps": 1}  # the activations were not computed again; the maps once
    # both sets of maps stay cached, and a scan without maps needs neither
    for neurons, want in (([2, 4], None), ([5, 1], fresh.maps), ([], None)):
        res = scan_images(lm, dataset, entries, tmp_path / "work", options, map_neurons=neurons)
        assert res.maps.shape == (90, len(neurons), 3, 3)
        if want is not None:
            np.testing.assert_array_equal(res.maps, want)
    assert calls == {"scan": 0, "maps": 1}


@pytest.mark.slow
def test_maps_recorded_by_an_interrupted_scan_for_other_neurons_are_not_mixed(dataset, tmp_path, monkeypatch):
    """Killed while scanning for one set of maps, resumed for another: the maps are all of the new set."""
    model = net()
    entries, _, _ = list_images(dataset)
    options = ScanOptions(16, batch_size=8, workers=0, chunk_images=16, progress=False)
    lm = LayerModel(model, "3")
    ref = scan_images(lm, dataset, entries, tmp_path / "ref", options, map_neurons=[3])
    real_write = scan_mod._write_chunk
    written = []

    def dying_write(*args):
        if len(written) == 2:
            raise KeyboardInterrupt
        real_write(*args)
        written.append(args[1])

    monkeypatch.setattr(scan_mod, "_write_chunk", dying_write)
    with pytest.raises(KeyboardInterrupt):
        scan_images(lm, dataset, entries, tmp_path / "work", options, map_neurons=[0])
    monkeypatch.setattr(scan_mod, "_write_chunk", real_write)
    res = scan_images(lm, dataset, entries, tmp_path / "work", options, map_neurons=[3])
    np.testing.assert_array_equal(res.mean_act, ref.mean_act)
    np.testing.assert_array_equal(res.maps, ref.maps)


def _damaged_huffman_jpeg(data: bytes) -> bytes:
    """A complete JPEG whose Huffman table is garbage: libjpeg refuses it mid-decode."""
    at = data.index(b"\xff\xc4") + 5  # inside the first DHT segment
    return data[:at] + b"\xff" * 16 + data[at + 16 :]


@pytest.mark.slow
def test_jpegs_decoded_as_a_batch_on_the_device_give_the_same_scan(tmp_path):
    """The GPU-decode path (run here on the CPU): same result, a failing JPEG is decoded alone and listed."""
    import io

    root = tmp_path / "jpegs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (18 + i, 20, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        (root / f"{i:02d}.jpg").write_bytes(buf.getvalue())
    Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(root / "big.jpg")  # Pillow's draft
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "p.png")
    (root / "damaged.jpg").write_bytes(_damaged_huffman_jpeg((root / "03.jpg").read_bytes()))
    entries, _, _ = list_images(root)
    lm = LayerModel(net(), "3")
    runs = {
        gpu: scan_images(lm, root, entries, tmp_path / f"work-{gpu}",
                         ScanOptions(16, batch_size=8, workers=0, progress=False, gpu_decode=gpu), map_neurons=[1])
        for gpu in (False, True)
    }
    a, b = runs[False], runs[True]
    assert [s.relpath for s in a.skipped] == [s.relpath for s in b.skipped] == ["damaged.jpg"]
    assert [e.relpath for e in a.entries] == [e.relpath for e in b.entries] and len(a.entries) == 22
    np.testing.assert_array_equal(a.mean_act, b.mean_act)
    np.testing.assert_array_equal(a.maps, b.maps)
