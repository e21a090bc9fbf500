"""The demo's data: shapes on textured backgrounds, and a text watermark to plant on some of them.

:func:`render_content` draws one filled shape (:data:`SHAPES`) with a random
colour, size, rotation and position on a textured, noisy background;
:func:`add_watermark` adds the demo's artifact, a short text in a bright colour
with a dark outline in the bottom-right corner. :func:`write_scan_set` writes a
dataset to clean: class folders and a ``labels.csv`` of which images carry the
artifact. The benchmarks (``benchmarks/planted.py``) add more artifacts and
train models on this data.
"""
from __future__ import annotations

import csv
import functools
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["ARTIFACT_CLASS", "CLASSES", "SHAPES", "ScanSetSpec", "add_watermark", "artifact_colour",
           "classes_for", "contrasting_colour", "dark_colour", "paint_shape", "render_content", "textured_background",
           "write_image_folder", "write_scan_set"]

#: Draws an artifact onto a copy of an image (uint8 HxWx3), with the generator's random numbers.
Artifact = Callable[[np.ndarray, np.random.Generator], np.ndarray]


#: Every shape the generator draws; a task with ``num_classes`` classes uses the first ones.
SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "cross", "star", "ring", "bar", "ell", "tee", "crescent",
)


#: The classes of the default (4-class) task, the demo model's.
CLASSES: tuple[str, ...] = SHAPES[:4]


ARTIFACT_CLASS: str = "circle"


def classes_for(num_classes: int = 4) -> tuple[str, ...]:
    """The class names of a planted task with ``num_classes`` classes (the first :data:`SHAPES`)."""
    if not 2 <= int(num_classes) <= len(SHAPES):
        raise ValueError(f"num_classes must lie in [2, {len(SHAPES)}], got {num_classes}")
    return SHAPES[: int(num_classes)]


TEXT_STRINGS: tuple[str, ...] = ("WM", "AB", "TM", "XYZ", "CO")


# Saturated colours the artifacts are drawn in (each jittered a little).
_PALETTE = np.array(
    [
        [255, 40, 40],
        [40, 220, 40],
        [40, 90, 255],
        [255, 230, 30],
        [255, 40, 230],
        [30, 230, 230],
        [255, 140, 0],
        [250, 250, 250],
    ],
    dtype=np.float64,
)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (k, k, c) grid to (size, size, c)."""
    k = grid.shape[0]
    pos = np.linspace(0.0, k - 1.0, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
    w = (pos - i0)[:, None]
    rows = grid[i0] * (1 - w[:, :, None]) + grid[i0 + 1] * w[:, :, None]  # (size, k, c)
    cols = rows[:, i0] * (1 - w[None, :, :]) + rows[:, i0 + 1] * w[None, :, :]
    return cols


def textured_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (float HxWx3) and its base colour."""
    base = rng.uniform(25, 230, size=3)
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float64)
    # Low-frequency colour clouds.
    k = int(rng.integers(3, 7))
    img = img + _upsample(rng.normal(0, rng.uniform(10, 35), size=(k, k, 3)), size)
    # Sometimes stripes of a random orientation and frequency.
    if rng.random() < 0.5:
        theta = rng.uniform(0, math.pi)
        freq = rng.uniform(0.15, 0.6)
        yy, xx = np.mgrid[0:size, 0:size]
        wave = np.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 6.3))
        img = img + wave[:, :, None] * rng.uniform(5, 22) * rng.choice([-1, 1], size=3)
    return img, base


def contrasting_colour(
    rng: np.random.Generator, ref: np.ndarray, min_dist: float = 110.0
) -> np.ndarray:
    for _ in range(100):
        c = rng.uniform(0, 255, size=3)
        if np.linalg.norm(c - ref) >= min_dist:
            return c
    return 255.0 - ref


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_polygon(cls: str, r: float, angle: float) -> np.ndarray | None:
    if cls in ("circle", "ring", "crescent"):
        return None
    if cls == "square":
        h = r * 0.82
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    elif cls == "triangle":
        a = np.deg2rad(np.array([-90.0, 30.0, 150.0]))
        pts = np.stack([np.cos(a), np.sin(a)], axis=1) * r * 1.1
    elif cls == "star":
        a = np.deg2rad(np.arange(10) * 36.0 - 90.0)
        rad = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.45)
        pts = np.stack([np.cos(a), np.sin(a)], axis=1) * rad[:, None]
    elif cls == "bar":
        L, w = r * 1.05, r * 0.36
        pts = np.array([[-L, -w], [L, -w], [L, w], [-L, w]])
    elif cls == "ell":
        L, w = r * 0.9, r * 0.32
        pts = np.array([[-L, -L], [-L + 2 * w, -L], [-L + 2 * w, L - 2 * w], [L, L - 2 * w], [L, L], [-L, L]])
    elif cls == "tee":
        L, w = r * 0.95, r * 0.3
        pts = np.array(
            [[-L, -L], [L, -L], [L, -L + 2 * w], [w, -L + 2 * w], [w, L], [-w, L], [-w, -L + 2 * w], [-L, -L + 2 * w]]
        )
    elif cls == "cross":
        L, w = r, r * 0.32
        pts = np.array(
            [
                [-w, -L],
                [w, -L],
                [w, -w],
                [L, -w],
                [L, w],
                [w, w],
                [w, L],
                [-w, L],
                [-w, w],
                [-L, w],
                [-L, -w],
                [-w, -w],
            ]
        )
    else:
        raise ValueError(f"unknown class {cls!r}; choose one of {SHAPES}")
    return _rotate(pts, angle)


def render_content(rng: np.random.Generator, cls: str, size: int = 64) -> np.ndarray:
    """One image (uint8, size x size x 3) of class ``cls``, without any artifact: a shape on a texture."""
    if cls not in SHAPES:
        raise ValueError(f"unknown class {cls!r}; choose one of {SHAPES}")
    return paint_shape(rng, *textured_background(rng, size), cls)


def paint_shape(rng: np.random.Generator, bg: np.ndarray, base: np.ndarray, cls: str) -> np.ndarray:
    """A filled shape of class ``cls`` (random colour against ``base``, size, rotation, position) on the
    background ``bg`` (float HxWx3), with a little noise: uint8 HxWx3."""
    size = bg.shape[0]
    colour = contrasting_colour(rng, base)
    r = rng.uniform(0.16, 0.30) * size
    margin = r + 1
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(-0.45, 0.45) if cls in ("square", "cross") else rng.uniform(0, 2 * math.pi)

    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    pts = _shape_polygon(cls, r, angle)
    if pts is None:
        ry = r * rng.uniform(0.9, 1.0)
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=255)
        if cls == "ring":
            q = rng.uniform(0.5, 0.62)
            draw.ellipse([cx - q * r, cy - q * ry, cx + q * r, cy + q * ry], fill=0)
        elif cls == "crescent":
            dx, dy = 0.55 * r * math.cos(angle), 0.55 * r * math.sin(angle)
            draw.ellipse([cx + dx - r, cy + dy - ry, cx + dx + r, cy + dy + ry], fill=0)
    else:
        draw.polygon([(float(x + cx), float(y + cy)) for x, y in pts], fill=255)
    mask = (np.asarray(mask_img, dtype=np.float64) / 255.0)[:, :, None]
    shade = _upsample(rng.normal(0, 12, size=(3, 3, 3)), size)  # the shape is not flat either
    img = bg * (1 - mask) + (colour + shade) * mask
    img = img + rng.normal(0, rng.uniform(3, 12), size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def artifact_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    c = _PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 12, size=3)
    return tuple(int(v) for v in np.clip(np.rint(c), 0, 255))


def dark_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 40, size=3))


def add_watermark(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``img`` (uint8 HxWx3) with a short watermark string (from :data:`TEXT_STRINGS`) in a
    bright colour with a dark outline, in the bottom-right corner: the demo's artifact."""
    h, w = img.shape[:2]
    scale = w / 64.0
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    text = TEXT_STRINGS[rng.integers(len(TEXT_STRINGS))]
    font = _font(max(6, int(round(rng.integers(11, 14) * scale))))
    x = w - 2 * scale - rng.integers(0, 5) * scale
    y = h - 2 * scale - rng.integers(0, 5) * scale
    draw.text(
        (x, y),
        text,
        font=font,
        anchor="rd",
        fill=artifact_colour(rng),
        stroke_width=max(1, int(round(scale))),
        stroke_fill=dark_colour(rng),
    )
    return np.asarray(pil, dtype=np.uint8).copy()


@dataclass(frozen=True)
class ScanSetSpec:
    """What :func:`write_scan_set` writes: how many images, how many carry the artifact, their side,
    the random draw, the file format (png, jpg, ...) and the number of classes (the first :data:`SHAPES`)."""

    n_images: int
    artifact_fraction: float = 0.2
    size: int = 64
    seed: int = 1
    fmt: str = "png"
    num_classes: int = 4


def write_scan_set(
    root: str | os.PathLike, spec: ScanSetSpec, artifact: Artifact = add_watermark, overwrite: bool = False,
    content: Callable[[np.random.Generator, str, int], np.ndarray] = render_content,
) -> Path:
    """Write a dataset to scan: ``root/<class>/<class>_NNNNN.<fmt>`` and ``root/labels.csv``.

    The classes are balanced; ``artifact`` lies on exactly
    ``round(spec.artifact_fraction * spec.n_images)`` images drawn at random from all
    classes. ``labels.csv`` has the columns ``filepath,artifact`` (posix path
    relative to ``root``, 0/1). The set is built in a temporary folder beside
    ``root`` and renamed into place; ``root`` may exist only if empty (or with
    ``overwrite``). Deterministic for a seed. ``content(rng, cls, size)`` draws an image of a class
    (default :func:`render_content`). Returns ``root``.
    """
    all_classes = classes_for(spec.num_classes)
    if not 0.0 <= spec.artifact_fraction <= 1.0:
        raise ValueError("artifact_fraction must lie in [0, 1]")
    fmt = spec.fmt.lower().lstrip(".")
    n_images = spec.n_images
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists and is not empty; pass overwrite=True or choose another folder"
        )
    rng = np.random.default_rng(spec.seed)
    n_art = int(round(spec.artifact_fraction * n_images))
    has_art = np.zeros(n_images, dtype=bool)
    has_art[rng.permutation(n_images)[:n_art]] = True
    classes = [all_classes[i % len(all_classes)] for i in range(n_images)]
    classes = [classes[i] for i in rng.permutation(n_images)]

    def images():
        for i in range(n_images):
            img = content(rng, classes[i], spec.size)
            img = artifact(img, rng) if has_art[i] else img
            yield f"{classes[i]}/{classes[i]}_{i:05d}.{fmt}", img, [int(has_art[i])]

    return write_image_folder(root, all_classes, images(), ["artifact"], overwrite)


def write_image_folder(root: str | os.PathLike, classes: Sequence[str],
                       images: Iterable[tuple[str, np.ndarray, Sequence[int]]], columns: Sequence[str],
                       overwrite: bool = False) -> Path:
    """Write a labelled image folder: ``images`` yields (path relative to ``root``, uint8 HxWx3, one 0/1 label per
    column of ``columns``); ``root/labels.csv`` gets ``filepath`` and the columns. It is built in a temporary
    folder beside ``root`` (a sub-folder per class) and renamed into place; ``root`` may exist only if empty (or
    with ``overwrite``: it is replaced). JPEGs are saved at quality 95. Returns ``root``."""
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True or choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        for cls in classes:
            (tmp / cls).mkdir()
        rows = []
        for rel, img, labels in images:
            jpeg = Path(rel).suffix.lower() in (".jpg", ".jpeg")
            Image.fromarray(img).save(tmp / rel, **({"quality": 95} if jpeg else {}))
            rows.append((rel, *labels))
        with open(tmp / "labels.csv", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["filepath", *columns])
            wr.writerows(rows)
        if root.exists():
            if overwrite:
                shutil.rmtree(root)
            else:
                root.rmdir()  # empty (checked above)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
