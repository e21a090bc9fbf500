"""A small corpus of good and bad image files, for the tests of anything that reads a dataset.

``make_bad_corpus(root)`` writes it (well under a second, under 1 MB on disk)
and returns ``{relpath: expected}``, where ``expected`` is

- ``"ok"``: an image that must load;
- ``"ignored"``: a file the dataset must not contain at all (hidden, or not
  an image extension);
- otherwise a keyword that must occur in the reason it is skipped for, at
  listing time (:class:`dora_clean.scanning.Skipped`) or at loading time
  (:class:`dora_clean.scanning.BadImage`).

The relpath of the file whose name is not UTF-8 is given as
``dora_clean.scanning`` shows it: the bad byte as ``\\xff``.

Unreadable file (mode 000): when the tests run as root, permissions do not
stop reads, so that file is then expected to be ``"ok"`` (see
``UNREADABLE``); the "permission denied" path is also tested by simulating
the error.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

UNREADABLE = "cls_bad/unreadable.png"
NON_UTF8_NAME = b"cls_bad/bad_name_\xff.png"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _rgb(w: int = 48, h: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit all-black PNG of width x height: tiny on disk, huge once decoded."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def make_bad_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root`` (class sub-folders) and return ``{relpath: expected}``."""
    root = Path(root)
    expected: dict[str, str] = {}

    def write(rel: str, data: bytes, outcome: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expected[rel] = outcome

    rgb = _rgb()
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[..., :3] = np.asarray(rgb)
    rgba[:, 24:, 3] = 255  # left half transparent
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    gray16 = np.linspace(0, 65535, 48 * 32).reshape(32, 48).astype(np.uint16)
    good = {
        "cls_good/rgb.png": _encode(rgb, "PNG"),
        "cls_good/rgb_large.jpg": _encode(_rgb(640, 480, 1), "JPEG", quality=80),
        "cls_good/gray_L.png": _encode(rgb.convert("L"), "PNG"),
        "cls_good/gray_LA.png": _encode(Image.fromarray(rgba).convert("LA"), "PNG"),
        "cls_good/rgba.png": _encode(Image.fromarray(rgba), "PNG"),
        "cls_good/palette.png": _encode(palette, "PNG"),
        "cls_good/palette_transparent.png": _encode(palette, "PNG", transparency=0),
        "cls_good/cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG"),
        "cls_good/gray16.png": _encode(Image.fromarray(gray16), "PNG"),
        "cls_good/int32.tif": _encode(Image.fromarray(gray16.astype(np.int32)), "TIFF"),
        "cls_good/float.tif": _encode(Image.fromarray(gray16.astype(np.float32) / 65535), "TIFF"),
        "cls_good/bilevel.png": _encode(rgb.convert("1"), "PNG"),
        "cls_good/png_named.jpg": _encode(rgb, "PNG"),
        "cls_good/ünïcødé 画像.png": _encode(rgb, "PNG"),
        "cls_good/with spaces.png": _encode(rgb, "PNG"),
        "cls_good/one_pixel.png": _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "cls_good/UPPER.JPG": _encode(rgb, "JPEG"),
        "cls_good/image.webp": _encode(rgb, "WEBP"),
        "cls_good/image.bmp": _encode(rgb, "BMP"),
        "cls_good/image.tiff": _encode(rgb, "TIFF"),
        "cls_good/nested/deeper.jpeg": _encode(rgb, "JPEG"),
        "top_level.png": _encode(rgb, "PNG"),
    }
    for rel, data in good.items():
        write(rel, data, "ok")

    jpeg = _encode(_rgb(256, 256, 2), "JPEG", quality=90)
    png = _encode(_rgb(64, 64, 3), "PNG")
    corrupt_png = bytearray(png)
    corrupt_png[len(png) // 2 : len(png) // 2 + 64] = b"\xa5" * 64  # IDAT data and CRC wrong
    write("cls_bad/zero.jpg", b"", "zero-byte")
    write("cls_bad/truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    write("cls_bad/truncated.png", png[: len(png) // 2], "truncated")
    write("cls_bad/corrupt.png", bytes(corrupt_png), "corrupt")
    write("cls_bad/text.jpg", b"hello, this is not an image\n" * 4, "not an image")
    write("cls_bad/error_page.png", b"<!DOCTYPE html><html><body>404</body></html>", "not an image")
    write("cls_bad/bomb.png", bomb_png(20000, 20000), "decompression bomb")  # ~3x the limit
    write("cls_bad/bomb_small.png", bomb_png(10000, 10000), "decompression bomb")  # 1-2x
    write(UNREADABLE, good["cls_good/rgb.png"], "ok" if IS_ROOT else "permission denied")
    os.chmod(root / UNREADABLE, 0)

    bad = root / "cls_bad"
    os.symlink("does_not_exist.jpg", bad / "broken_link.jpg")
    expected["cls_bad/broken_link.jpg"] = "broken symlink"
    os.symlink("loop_b.jpg", bad / "loop_a.jpg")
    os.symlink("loop_a.jpg", bad / "loop_b.jpg")
    expected["cls_bad/loop_a.jpg"] = expected["cls_bad/loop_b.jpg"] = "symlink loop"
    os.symlink("../cls_good/rgb.png", bad / "link_to_good.png")
    expected["cls_bad/link_to_good.png"] = "ok"
    os.symlink("..", bad / "up")  # a folder symlink back to the dataset root
    expected["cls_bad/up"] = "symlink loop"
    os.mkfifo(bad / "fifo.jpg")  # would hang a loader that opens it blindly
    expected["cls_bad/fifo.jpg"] = "not a regular file"
    (bad / "folder.jpg").mkdir()  # a folder named like an image: no entry

    with open(os.path.join(os.fsencode(root), NON_UTF8_NAME), "wb") as f:
        f.write(good["cls_good/rgb.png"])
    expected[NON_UTF8_NAME.decode("utf-8", "backslashreplace")] = "not valid UTF-8"

    (root / "cls_empty").mkdir()
    write("cls_good/.hidden.png", good["cls_good/rgb.png"], "ignored")
    write(".thumbnails/thumb.png", good["cls_good/rgb.png"], "ignored")
    write("cls_good/notes.txt", b"not part of the dataset\n", "ignored")
    write("labels.csv", b"filepath,artifact\n", "ignored")
    return expected


def snapshot_tree(root: Path) -> dict[bytes, tuple]:
    """Everything about the files under ``root`` that a reader must not change.

    Maps each relative path (bytes) to its type, mode, size, mtime and a hash
    of its content (regular files) or its target (symlinks). Never opens a
    FIFO and never follows a symlink.
    """
    import hashlib

    root_b = os.fsencode(root)
    out: dict[bytes, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root_b):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest: bytes | None = None
            if os.path.islink(path):
                digest = os.readlink(path)
            elif os.path.isfile(path) and os.access(path, os.R_OK):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).digest()
            out[os.path.relpath(path, root_b)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out
