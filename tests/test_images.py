"""Listing and loading a dataset folder: every kind of bad input is skipped, never fatal."""
from __future__ import annotations

import functools
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision.transforms import v2

from badcorpus import IS_ROOT, UNREADABLE, make_bad_corpus, snapshot_tree
from dora_clean.scanning import decode as images
from dora_clean.errors import DoraError
from dora_clean.scanning.decode import BadImage, ImageFiles, collate_images, load_image
from dora_clean.scanning.files import ImageEntry, list_images

SIZE = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "data"
    expected = make_bad_corpus(root)
    before = snapshot_tree(root)
    yield root, expected
    assert snapshot_tree(root) == before, "the dataset was changed by reading it"


def _outcome(root: Path, relpath: str) -> str:
    try:
        img = load_image(root / relpath, SIZE)
    except BadImage as e:
        return e.reason
    assert img.shape == (3, SIZE, SIZE) and img.dtype == torch.uint8
    return "ok"


def _matches(expected: str, outcome: str) -> bool:
    return outcome == "ok" if expected == "ok" else expected in outcome


def test_corpus_listing_and_loading(corpus):
    root, expected = corpus
    entries, skipped, layout = list_images(root)
    assert layout == "classes"
    listed = [e.relpath for e in entries]
    assert listed == sorted(listed)
    skipped_paths = [s.relpath for s in skipped]
    assert not set(listed) & set(skipped_paths)
    # Everything written appears exactly once: ok + skipped + bad == written.
    written = {rel for rel, want in expected.items() if want != "ignored"}
    assert sorted(listed + skipped_paths) == sorted(written)

    outcomes = {s.relpath: s.reason for s in skipped}
    outcomes.update({e.relpath: _outcome(root, e.relpath) for e in entries})
    wrong = {rel: (expected[rel], got) for rel, got in outcomes.items()
             if not _matches(expected[rel], got)}
    assert not wrong
    for reason in outcomes.values():
        assert "\n" not in reason and len(reason) < 120

    labels = {e.relpath: e.label for e in entries}
    assert labels["top_level.png"] is None
    assert labels["cls_good/nested/deeper.jpeg"] == "cls_good"
    assert labels["cls_bad/link_to_good.png"] == "cls_bad"
    assert not any(rel.startswith("cls_empty") or "folder.jpg" in rel for rel in outcomes)


def test_unreadable_file(corpus):
    root, _ = corpus
    # As root, mode 000 does not stop reads: the corpus then expects "ok".
    assert _outcome(root, UNREADABLE) == ("ok" if IS_ROOT else "permission denied")


def test_permission_denied_is_a_bad_image(monkeypatch, tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(p)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images.os, "open", denied)
    with pytest.raises(BadImage, match="permission denied"):
        load_image(p, SIZE)


@pytest.mark.parametrize("workers,jpeg_bytes", [(0, False), (2, False), (0, True)])
def test_dataloader(corpus, workers, jpeg_bytes):
    root, expected = corpus
    entries, _, _ = list_images(root)
    ds = ImageFiles(root, entries, SIZE, jpeg_bytes=jpeg_bytes)
    pickle.dumps(ds)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=5, num_workers=workers,
        collate_fn=functools.partial(collate_images, size=SIZE),
    )
    seen = {}
    n_jpegs = 0
    for indices, imgs, bad, jpeg_indices, jpegs in loader:
        assert indices.dtype == torch.int64 and imgs.dtype == torch.uint8
        assert imgs.shape == (len(indices), 3, SIZE, SIZE)
        seen.update({int(i): "ok" for i in indices})
        seen.update(dict(bad))
        if jpegs:
            decoded = images.decode_jpegs(jpegs, SIZE, torch.device("cpu"))
            for i, x in zip(jpeg_indices.tolist(), decoded):
                assert torch.equal(x, load_image(root / entries[i].relpath, SIZE))
                seen[i] = "ok"
            n_jpegs += len(jpegs)
    assert (n_jpegs > 0) == jpeg_bytes
    assert sorted(seen) == list(range(len(entries)))
    for i, outcome in seen.items():
        assert _matches(expected[entries[i].relpath], outcome), (entries[i], outcome)


def test_collate_all_bad_and_mixed():
    idx, imgs, bad, jpeg_idx, jpegs = collate_images([(3, None, "zero-byte file")], size=SIZE)
    assert jpeg_idx.shape == (0,) and jpegs == []
    assert idx.dtype == torch.int64 and idx.shape == (0,)
    assert imgs.dtype == torch.uint8 and imgs.shape == (0, 3, SIZE, SIZE)
    assert bad == [(3, "zero-byte file")]
    good = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    raw = torch.zeros(10, dtype=torch.uint8)
    idx, imgs, bad, jpeg_idx, jpegs = collate_images([(0, good, None), (1, None, "x"), (2, good, None), (4, raw, None)])
    assert idx.tolist() == [0, 2] and imgs.shape == (2, 3, SIZE, SIZE) and bad == [(1, "x")]
    assert jpeg_idx.tolist() == [4] and jpegs[0] is raw


def test_missing_empty_and_not_a_folder(tmp_path):
    with pytest.raises(DoraError, match="dataset folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DoraError, match="not a folder"):
        list_images(tmp_path / "file.png")
    empty = tmp_path / "empty"
    (empty / "cls").mkdir(parents=True)
    (empty / "cls" / "readme.txt").write_text("no images here")
    (empty / ".hidden.png").write_bytes(b"x")
    with pytest.raises(DoraError, match=r"no images found in .*empty: expected \.jpg/\.png"):
        list_images(empty)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "zero.jpg").write_bytes(b"")
    with pytest.raises(DoraError, match="no readable images .* zero.jpg: zero-byte file") as e:
        list_images(only_bad)
    assert "\n" not in str(e.value)


def test_flat_layout_and_folder_symlink(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert list_images(tmp_path) == ([ImageEntry("a.jpg", None)], [], "flat")
    other = tmp_path.parent / (tmp_path.name + "_other")
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "b.png")
    os.symlink(other, tmp_path / "linked")  # a folder symlink that is not a loop is followed
    entries, skipped, layout = list_images(tmp_path)
    assert [e.relpath for e in entries] == ["a.jpg", "linked/b.png"] and layout == "classes"


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _load(tmp_path, data: bytes, name="x.png", size=4) -> np.ndarray:
    p = tmp_path / name
    p.write_bytes(data)
    return load_image(p, size).permute(1, 2, 0).numpy()


def test_conversions(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))  # transparent white
    assert (_load(tmp_path, _png(rgba)) == 0).all()  # composited on black
    half = Image.new("RGBA", (4, 4), (200, 100, 50, 255))
    assert (_load(tmp_path, _png(half)) == [200, 100, 50]).all()
    la = Image.new("LA", (4, 4), (255, 0))
    assert (_load(tmp_path, _png(la)) == 0).all()
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 250, 250, 250] + [0] * 762)
    assert (_load(tmp_path, _png(pal, transparency=1)) == 0).all()
    assert (_load(tmp_path, _png(pal)) == 250).all()
    gray16 = Image.fromarray(np.full((4, 4), 32896, np.uint16))  # 128 * 257
    assert gray16.mode.startswith("I;16")
    assert (_load(tmp_path, _png(gray16)) == 128).all()
    f = Image.fromarray(np.full((4, 4), 0.5, np.float32))
    assert (np.abs(_load(tmp_path, _tiff(f), "f.tif").astype(int) - 128) <= 1).all()
    one = Image.new("1", (4, 4), 1)
    assert (_load(tmp_path, _png(one)) == 255).all()
    cmyk = Image.new("RGB", (4, 4), (200, 30, 30)).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    got = _load(tmp_path, buf.getvalue(), "c.jpg").astype(int)
    assert (np.abs(got - [200, 30, 30]) <= 12).all()


def _tiff(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "TIFF")
    return buf.getvalue()


def test_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # stored: left red, right blue
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: red on top
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", exif=exif, quality=95)
    img = _load(tmp_path, buf.getvalue(), "r.jpg", size=8)
    assert img[0, :, 0].min() > 200 and img[0, :, 2].max() < 60  # top row red
    assert img[-1, :, 2].min() > 200 and img[-1, :, 0].max() < 60  # bottom row blue


def test_resize_matches_torchvision(tmp_path):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    ours = _load(tmp_path, _png(im), size=SIZE).astype(int)
    ref = np.asarray(v2.Resize((SIZE, SIZE))(im)).astype(int)
    assert np.abs(ours - ref).max() <= 1


def test_jpeg_draft_close_to_full_decode(tmp_path):
    y, x = np.mgrid[0:512, 0:768] / 512
    a = np.stack([np.sin(5 * x + c) * 100 + 128 + 20 * np.cos(7 * y) for c in range(3)], -1)
    im = Image.fromarray(a.astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    ours = _load(tmp_path, buf.getvalue(), "big.jpg", size=64).astype(int)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).resize((64, 64), Image.BILINEAR))
    assert np.abs(ours - ref.astype(int)).mean() < 2


def test_truncated_rejected_even_if_pillow_allows_it(corpus, monkeypatch):
    root, _ = corpus
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name in ("truncated.jpg", "truncated.png"):
        with pytest.raises(BadImage, match="truncated"):
            load_image(root / "cls_bad" / name, SIZE)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_bomb_refused_from_header(corpus, monkeypatch):
    root, _ = corpus
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our own limit still applies

    def no_decode(self):
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    for name in ("bomb.png", "bomb_small.png"):
        with pytest.raises(BadImage, match=r"decompression bomb: \d+ x \d+"):
            load_image(root / "cls_bad" / name, SIZE)


def test_bad_image_reasons_directly(tmp_path):
    with pytest.raises(BadImage, match="file not found"):
        load_image(tmp_path / "missing.png", SIZE)
    with pytest.raises(BadImage, match="not a regular file"):
        load_image(tmp_path, SIZE)
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(BadImage, match="zero-byte"):
        load_image(tmp_path / "z.png", SIZE)


# ---------------------------------------------------------------- the torchvision.io JPEG path


def _jpeg(a: np.ndarray, orientation: int = 1, **kw) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(a).save(buf, "JPEG", exif=exif, **kw)
    return buf.getvalue()


def _pillow_only(data: bytes, size: int) -> torch.Tensor:
    x = images._decode(io.BytesIO(data), size)
    return x if x.shape[1:] == (size, size) else v2.functional.resize(x, [size, size], antialias=True)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_plain_jpeg_path_gives_pillows_pixels(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    a = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)  # not square: orientation matters
    data = _jpeg(a, orientation, quality=85)
    assert images.plain_jpeg(data, SIZE)
    fast = images.decode_plain_jpeg(data, SIZE)
    assert fast is not None
    ours = _load(tmp_path, data, "x.jpg", size=SIZE)
    assert torch.equal(torch.from_numpy(ours).permute(2, 0, 1), _pillow_only(data, SIZE))


@pytest.mark.parametrize("kind", ["grey", "progressive", "subsampled"])
def test_plain_jpeg_variants_match_pillow(kind):
    a = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    data = {
        "grey": lambda: _jpeg(a[..., 0]),
        "progressive": lambda: _jpeg(a, progressive=True),
        "subsampled": lambda: _jpeg(a, subsampling=2, quality=50),
    }[kind]()
    fast = images.decode_plain_jpeg(data, SIZE)
    assert fast is not None and torch.equal(fast, _pillow_only(data, SIZE))


def test_unusual_jpegs_go_to_pillow():
    a = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).convert("CMYK").save(buf, "JPEG")
    assert not images.plain_jpeg(buf.getvalue(), SIZE)  # 4 channels
    ok = _jpeg(a)
    assert images.plain_jpeg(ok, SIZE)
    assert not images.plain_jpeg(ok[: len(ok) // 2], SIZE)  # truncated: Pillow names it
    big = _jpeg(np.zeros((200, 200, 3), np.uint8))
    assert not images.plain_jpeg(big, SIZE)  # Pillow's draft decodes it at a reduced scale
    assert not images.plain_jpeg(b"\xff\xd8\xff\xd9", SIZE)  # no frame


def test_damaged_jpegs_never_crash(tmp_path):
    """Random byte damage: every file loads or becomes a BadImage, on either path."""
    rng = np.random.default_rng(0)
    src = _jpeg(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), quality=90)
    path = tmp_path / "d.jpg"
    outcomes = set()
    for _ in range(150):
        d = bytearray(src)
        for _ in range(rng.integers(1, 8)):
            d[rng.integers(2, len(d) - 2)] = rng.integers(0, 256)
        path.write_bytes(bytes(d))
        try:
            assert load_image(path, SIZE).shape == (3, SIZE, SIZE)
            outcomes.add("ok")
        except BadImage:
            outcomes.add("bad")
    assert outcomes == {"ok", "bad"}


def test_batched_jpeg_decode_matches_load_image(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i, shape in enumerate([(24, 24), (30, 44), (40, 26)]):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), orientation=1 + 2 * i))
        paths.append(p)
    raw = [images.read_plain_jpeg(p, SIZE) for p in paths]
    assert all(r is not None for r in raw)
    batch = images.decode_jpegs(raw, SIZE, torch.device("cpu"))
    assert torch.equal(batch, torch.stack([load_image(p, SIZE) for p in paths]))
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    assert images.read_plain_jpeg(png, SIZE) is None
