"""List and load the images of a dataset folder, robust to bad input.

A dataset is a folder of images, either flat or with class sub-folders
(torchvision ImageFolder / FiftyOne ImageClassificationDirectoryTree layout).
Nothing here ever writes to the dataset. A bad file never stops a scan: at
listing time it becomes a :class:`Skipped`, at loading time a
:class:`BadImage` (or a ``reason`` from :class:`ImageFiles`).

Conversion to RGB (see :func:`load_image`): transparent images are composited
on **black**. For the usual RGBA file, whose transparent pixels are stored as
(0, 0, 0, 0), that gives the same pixels as torchvision's default loader
(``Image.convert("RGB")``), which is how most models were trained.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from .errors import DoraError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
)
_EXTENSIONS_B = tuple(e.encode() for e in IMAGE_EXTENSIONS)

#: Images with more pixels than this are refused without being decoded
#: (Pillow's default ``Image.MAX_IMAGE_PIXELS``, about 89 M pixels).
MAX_PIXELS = 89_478_485

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass(frozen=True)
class ImageEntry:
    """One image of the dataset."""

    relpath: str  # posix path relative to the dataset root
    label: str | None  # class folder (first path component); None at the top level


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    relpath: str
    reason: str


class BadImage(Exception):
    """An image that cannot be loaded; ``.reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- listing


def _is_image_name(name: bytes) -> bool:
    return name.lower().endswith(_EXTENSIONS_B)


def _show(rel: bytes) -> str:
    """A printable, UTF-8-safe form of a relative path (bad bytes as \\xNN)."""
    return rel.decode("utf-8", "backslashreplace")


def _os_reason(e: OSError, what: str = "file") -> str:
    if isinstance(e, PermissionError):
        return "permission denied" if what == "file" else f"permission denied ({what})"
    if e.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot read {what} ({e.strerror or e})"


def list_images(root: str | Path) -> tuple[list[ImageEntry], list[Skipped], str]:
    """List the images under ``root``.

    Returns ``(entries, skipped, layout)``: entries sorted by relpath, the
    image files left out already at listing time (zero-byte, broken symlink,
    symlink loop, name not UTF-8, not a regular file, unreadable folder), and
    ``"classes"`` when any sub-folder holds images, else ``"flat"``.

    Directory symlinks are followed unless they lead back into one of their
    own ancestors (listed as ``"symlink loop"``). Hidden files and folders
    (name starting with ``.``) and files without an image extension are
    ignored. Raises :class:`DoraError` if ``root`` is not a folder or holds no
    usable image.
    """
    root_s = os.fspath(root)
    try:
        st = os.stat(root_s)
    except FileNotFoundError:
        raise DoraError(f"dataset folder not found: {root_s}") from None
    except OSError as e:
        raise DoraError(f"cannot open the dataset folder {root_s}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DoraError(f"not a folder: {root_s} (DATASET must be a folder of images)")

    entries: list[ImageEntry] = []
    skipped: list[Skipped] = []
    root_b = os.fsencode(root_s)
    # Each item: (relative folder path as bytes, ending in b"/" unless root;
    # the (dev, inode) of the folders from root down to this one).
    stack: list[tuple[bytes, frozenset]] = [(b"", frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        rel_dir, ancestors = stack.pop()
        try:
            with os.scandir(os.path.join(root_b, rel_dir) if rel_dir else root_b) as it:
                children = list(it)
        except OSError as e:
            if not rel_dir:
                raise DoraError(f"cannot read the dataset folder {root_s}: {e.strerror}") from None
            skipped.append(Skipped(_show(rel_dir.rstrip(b"/")), _os_reason(e, "folder")))
            continue
        for child in children:
            name = child.name
            if name.startswith(b"."):
                continue
            rel = rel_dir + name
            is_image = _is_image_name(name)
            try:
                st = child.stat()  # follows symlinks
            except OSError as e:
                if child.is_symlink() and e.errno == errno.ENOENT:
                    reason = "broken symlink"
                elif e.errno == errno.ELOOP:
                    reason = "symlink loop"
                else:
                    reason = _os_reason(e)
                if is_image:
                    skipped.append(Skipped(_show(rel), reason))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    skipped.append(Skipped(_show(rel), "symlink loop"))
                else:
                    stack.append((rel + b"/", ancestors | {key}))
                continue
            if not is_image:
                continue
            try:
                relpath = rel.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(Skipped(_show(rel), "file name is not valid UTF-8"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(relpath, "not a regular file"))
            elif st.st_size == 0:
                skipped.append(Skipped(relpath, "zero-byte file"))
            else:
                label = relpath.split("/", 1)[0] if "/" in relpath else None
                entries.append(ImageEntry(relpath, label))

    entries.sort(key=lambda e: e.relpath)
    skipped.sort(key=lambda s: s.relpath)
    if not entries:
        if skipped:
            first = skipped[0]
            raise DoraError(
                f"no readable images in {root_s}: all {len(skipped)} image files were skipped "
                f"(e.g. {first.relpath}: {first.reason})"
            )
        raise DoraError(
            f"no images found in {root_s}: expected .jpg/.png/... files in {root_s} "
            "or in its class sub-folders"
        )
    layout = "classes" if any(e.label is not None for e in entries) else "flat"
    return entries, skipped, layout


# ---------------------------------------------------------------- loading


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
    """
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
        f = open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        with warnings.catch_warnings(), _strict_decoding():
            warnings.simplefilter("ignore")  # EXIF, palette, bomb warnings: all handled here
            x = _decode(f, size)
    if x.shape[1:] != (size, size):
        # Within 1 grey level of Pillow's resize, and several times faster.
        x = TF.resize(x, [size, size], antialias=True)
    return x


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


# ---------------------------------------------------------------- dataset


class ImageFiles(torch.utils.data.Dataset):
    """The images of ``entries``, loaded at ``size`` x ``size``.

    Item ``i`` is ``(i, image, None)`` or, for a bad image, ``(i, None,
    reason)``; it never raises for a bad file. Use with
    ``collate_fn=functools.partial(collate_images, size=size)``.
    """

    def __init__(self, root: str | Path, entries: list[ImageEntry], size: int):
        self.root = os.fspath(root)
        self.relpaths = [e.relpath for e in entries]
        self.size = size

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, load_image(os.path.join(self.root, self.relpaths[i]), self.size), None
        except BadImage as e:
            return i, None, e.reason


def collate_images(
    batch: list[tuple[int, torch.Tensor | None, str | None]], size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """Collate :class:`ImageFiles` items into ``(indices, images, bad)``.

    ``indices`` is int64 ``[B_ok]``, ``images`` uint8 ``[B_ok, 3, S, S]``,
    ``bad`` a list of ``(index, reason)``. When no image of the batch loaded,
    ``images`` is ``[0, 3, S, S]`` with ``S = size`` (0 if not given).
    """
    ok = [(i, img) for i, img, _ in batch if img is not None]
    bad = [(i, reason) for i, img, reason in batch if img is None]
    if ok:
        indices = torch.tensor([i for i, _ in ok], dtype=torch.int64)
        images = torch.stack([img for _, img in ok])
    else:
        s = size or 0
        indices = torch.empty(0, dtype=torch.int64)
        images = torch.empty((0, 3, s, s), dtype=torch.uint8)
    return indices, images, bad
