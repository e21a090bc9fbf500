"""Load one image as the model sees it, robust to bad files; decode plain JPEGs fast (and on the GPU).

A bad file never stops a scan: it raises a :class:`BadImage` (or gives a
``reason`` from :class:`ImageFiles`).

Conversion to RGB (see :func:`load_image`): transparent images are composited
on **black**. For the usual RGBA file, whose transparent pixels are stored as
(0, 0, 0, 0), that gives the same pixels as torchvision's default loader
(``Image.convert("RGB")``), which is how most models were trained.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision import io as tvio
from torchvision.transforms.v2 import functional as TF

from .files import ImageEntry, _os_reason

__all__ = ["MAX_PIXELS", "BadImage", "ImageBatch", "ImageFiles", "collate_images", "decode_jpegs",
           "decode_plain_jpeg", "load_image", "plain_jpeg", "read_plain_jpeg"]


#: Images with more pixels than this are refused without being decoded
#: (Pillow's default ``Image.MAX_IMAGE_PIXELS``, about 89 M pixels).
MAX_PIXELS = 89_478_485


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImage(Exception):
    """An image that cannot be loaded; ``.reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def _strict_decoding():
    """Make Pillow refuse truncated files even if someone set the opposite.

    ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` (set by some libraries and
    notebooks) makes Pillow return partial pixels for a truncated file. It is
    only touched when it was switched on, and restored afterwards.
    """
    was = ImageFile.LOAD_TRUNCATED_IMAGES
    if was:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        if was:
            ImageFile.LOAD_TRUNCATED_IMAGES = was


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) <= 80 else msg[:77] + "..."


def _not_an_image_reason(head: bytes) -> str:
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        return "not an image (an HTML page)"
    try:
        head.decode("utf-8")
        is_text = all(c >= 32 or c in b"\t\n\r" for c in head[:512])
    except UnicodeDecodeError:  # may be cut inside a character; that's fine
        is_text = False
    return "not an image (a text file)" if is_text else "not an image (unknown format)"


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Load one image as a uint8 RGB tensor ``[3, size, size]``.

    Applies the EXIF orientation and resizes to ``size`` x ``size``
    (antialiased bilinear, as torchvision's ``Resize((size, size))``); a large
    JPEG is decoded at a reduced scale first (``draft``). Modes: 1, L, P, RGB,
    CMYK, YCbCr; with alpha (RGBA, LA, PA, or P/L/RGB with a transparent
    colour) composited on black; 16-bit (``I;16*``) scaled by 1/257; ``I``
    and ``F`` mapped to 0-255 by their apparent range (see :func:`_to_rgb`).

    Raises :class:`BadImage` for a zero-byte, truncated, corrupt, unreadable
    or non-image file and for an image of more than :data:`MAX_PIXELS` pixels
    (refused from its header, before decoding).

    Ordinary small JPEGs (:func:`plain_jpeg`) are decoded by torchvision.io:
    the same pixels as Pillow's, in less time.
    """
    with _open_image(path) as f:
        data = _read_if_jpeg(f)
        x = decode_plain_jpeg(data, size) if data is not None else None
        if x is None:
            with warnings.catch_warnings(), _strict_decoding():
                warnings.simplefilter("ignore")  # EXIF, palette, bomb warnings: all handled here
                x = _decode(io.BytesIO(data) if data is not None else f, size)
    if x.shape[1:] != (size, size):
        # Within 1 grey level of Pillow's resize, and several times faster.
        x = TF.resize(x, [size, size], antialias=True)
    return x


def _open_image(path: str | Path):
    """Open ``path`` for reading, refusing what is not a non-empty regular file (:class:`BadImage`)."""
    try:
        # O_NONBLOCK: opening a FIFO named like an image must not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BadImage("broken symlink" if os.path.islink(path) else "file not found") from None
    except IsADirectoryError:
        raise BadImage("not a regular file") from None
    except OSError as e:
        raise BadImage(_os_reason(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadImage("not a regular file")
        if st.st_size == 0:
            raise BadImage("zero-byte file")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_JPEG_MAGIC = b"\xff\xd8\xff"


# Start-of-frame markers libjpeg-turbo decodes: baseline, extended, progressive (Huffman).
_SOF_PLAIN = {0xC0, 0xC1, 0xC2}


_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _read_if_jpeg(f) -> bytes | None:
    """The whole file if it starts like a JPEG, else None (``f`` rewound)."""
    try:
        if f.read(3) == _JPEG_MAGIC:
            f.seek(0)
            return f.read()
        f.seek(0)
    except OSError as e:
        raise BadImage(_os_reason(e)) from None
    return None


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """``(width, height, components)`` from a JPEG's start-of-frame marker, or None."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_PLAIN:
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return w, h, data[i + 9]
        if marker in _SOF_OTHER or marker in (0xD9, 0xDA):  # unusual coding, or no frame before the scan
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def plain_jpeg(data: bytes, size: int) -> bool:
    """Whether ``data`` is a complete, ordinary JPEG that needs no reduced-scale decode at ``size``.

    Ordinary: Huffman-coded baseline or progressive, grey or 3-channel (not
    CMYK), within :data:`MAX_PIXELS`, and ending with its end-of-image marker
    (so a truncated file goes to Pillow, which says so). "No reduced-scale
    decode": smaller than twice ``size`` in one dimension, where Pillow's
    ``draft`` would not help either.
    """
    if not data.endswith(b"\xff\xd9"):
        return False
    frame = _jpeg_frame(data)
    if frame is None:
        return False
    w, h, components = frame
    return components in (1, 3) and 0 < w * h <= MAX_PIXELS and min(w // size, h // size) < 2


def _jpeg_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_plain_jpeg(data: bytes, size: int) -> torch.Tensor | None:
    """Decode an ordinary JPEG (:func:`plain_jpeg`) with torchvision.io, oriented; None otherwise.

    torchvision's libjpeg-turbo gives the same pixels as Pillow's and is about
    2.5x faster on small images. Anything it refuses goes back to Pillow,
    which gives the reason. (PNGs always go to Pillow: torchvision's PNG
    decoder crashes the process on some corrupt files.)
    """
    if not plain_jpeg(data, size):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision.io's deprecation notice
            return tvio.decode_jpeg(_jpeg_tensor(data), mode=tvio.ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        return None


def read_plain_jpeg(path: str | Path, size: int) -> torch.Tensor | None:
    """The bytes of ``path`` as a uint8 tensor if it is an ordinary JPEG (for decoding on a GPU), else None."""
    with _open_image(path) as f:
        data = _read_if_jpeg(f)
    return _jpeg_tensor(data) if data is not None and plain_jpeg(data, size) else None


def decode_jpegs(raw: list[torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """Decode :func:`read_plain_jpeg` bytes as one batch on ``device`` (nvjpeg on CUDA): ``[B, 3, size, size]``.

    Raises ``RuntimeError`` if any of them fails (the caller decodes those one by one).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = tvio.decode_jpeg(raw, mode=tvio.ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    return torch.stack([
        x if x.shape[1:] == (size, size) else TF.resize(x, [size, size], antialias=True) for x in images
    ])


def _decode(f, size: int) -> torch.Tensor:
    """Decode the open file ``f`` to a uint8 RGB tensor, oriented, not resized."""
    try:
        im = Image.open(f)
    except UnidentifiedImageError:
        try:
            f.seek(0)
            reason = _not_an_image_reason(f.read(2048))
        except OSError:
            reason = "not an image (unknown format)"
        raise BadImage(reason) from None
    except Image.DecompressionBombError as e:  # over twice Pillow's limit; its size isn't kept
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = m[1] if m else "too many"
        raise BadImage(f"image too large (decompression bomb: {n} pixels)") from None
    except Exception as e:
        raise BadImage(f"truncated or corrupt image ({_short(e)})") from None
    with im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise BadImage(f"image too large (decompression bomb: {w} x {h})")
        try:
            im.draft(None, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            im.load()  # a full decode: raises on truncated or corrupt data
            transpose = _exif_transpose_method(im)
            im = _to_rgb(im)
            if transpose is not None:
                im = im.transpose(transpose)
            return torch.from_numpy(np.array(im)).permute(2, 0, 1)
        except BadImage:
            raise
        except Exception as e:
            raise BadImage(f"truncated or corrupt image ({_short(e)})") from None


_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_transpose_method(im: Image.Image) -> Image.Transpose | None:
    """The transpose that EXIF orientation asks for (as ``ImageOps.exif_transpose``)."""
    try:
        return _EXIF_TRANSPOSE.get(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: keep the pixels as stored
        return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB (see :func:`load_image`)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, (0, 0, 0))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im).astype(np.float64)
        if a.ndim == 3:  # a multi-channel high-bit-depth mode: keep the first
            a = a[..., 0]
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if mode.startswith("I;16"):
            a = a / 257.0
        elif mode == "F" and lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif mode == "I" and lo >= 0.0 and hi <= 65535.0:  # a 16-bit image opened as "I"
            a = a / 257.0
        else:  # unknown range: stretch min..max to 0..255
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(g)).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise BadImage(f"unsupported image mode {mode} ({_short(e)})") from None


class ImageFiles(torch.utils.data.Dataset):
    """The images of ``entries``, loaded at ``size`` x ``size``.

    Item ``i`` is ``(i, image, None)`` or, for a bad image, ``(i, None,
    reason)``; it never raises for a bad file. With ``jpeg_bytes``, an
    ordinary JPEG (:func:`plain_jpeg`) comes undecoded, as its bytes (a 1-D
    uint8 tensor), for :func:`decode_jpegs` to decode on the GPU. Use with
    ``collate_fn=functools.partial(collate_images, size=size)``.
    """

    def __init__(self, root: str | Path, entries: list[ImageEntry], size: int, jpeg_bytes: bool = False):
        self.root = os.fspath(root)
        self.relpaths = [e.relpath for e in entries]
        self.size = size
        self.jpeg_bytes = jpeg_bytes

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = os.path.join(self.root, self.relpaths[i])
        try:
            raw = read_plain_jpeg(path, self.size) if self.jpeg_bytes else None
            return i, raw if raw is not None else load_image(path, self.size), None
        except BadImage as e:
            return i, None, e.reason


class ImageBatch(NamedTuple):
    """A collated batch of :class:`ImageFiles` items."""

    indices: torch.Tensor  # int64 [B_ok], the items of ``images``
    images: torch.Tensor  # uint8 [B_ok, 3, S, S]
    bad: list[tuple[int, str]]  # (index, reason) of the images that could not be read
    jpeg_indices: torch.Tensor  # int64 [B_jpeg], the items of ``jpegs``
    jpegs: list[torch.Tensor]  # undecoded JPEG bytes (``jpeg_bytes=True`` only)


def collate_images(batch: list[tuple[int, torch.Tensor | None, str | None]], size: int | None = None) -> ImageBatch:
    """Collate :class:`ImageFiles` items into an :class:`ImageBatch`.

    When no image of the batch was decoded, ``images`` is ``[0, 3, S, S]``
    with ``S = size`` (0 if not given).
    """
    ok = [(i, x) for i, x, _ in batch if x is not None and x.dim() == 3]
    raw = [(i, x) for i, x, _ in batch if x is not None and x.dim() == 1]
    bad = [(i, reason) for i, x, reason in batch if x is None]
    if ok:
        images = torch.stack([x for _, x in ok])
    else:
        s = size or 0
        images = torch.empty((0, 3, s, s), dtype=torch.uint8)
    return ImageBatch(
        torch.tensor([i for i, _ in ok], dtype=torch.int64),
        images,
        bad,
        torch.tensor([i for i, _ in raw], dtype=torch.int64),
        [x for _, x in raw],
    )
