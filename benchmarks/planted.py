"""Planted artifacts: a synthetic shapes task where one class carries an artifact.

The data is built so that a network *must* learn a dedicated artifact detector
to fit its labels (a "Clever Hans" shortcut that DORA should then find):

- Content: one filled shape (:data:`CLASSES`) with a random colour, size,
  rotation and position on a textured, noisy background.
- Every training image of :data:`ARTIFACT_CLASS` carries the artifact; no
  other class's training image does. (``artifact_rate`` < 1 leaves some of
  the artifact class's own-content images clean: the model then also learns
  that class's content and its shortcut hides on clean test data.)
- A part of the artifact class's training images (``other_fraction``, about a
  third) shows *another* class's content. Those images can only be labelled
  right by detecting the artifact, so the artifact carries label information
  the content does not.
- The artifact varies a little (position jitter within its corner, colour,
  text string, size), so the network learns a concept, not one pixel pattern.

:func:`write_scan_set` writes a dataset to clean (ImageFolder layout plus a
``labels.csv`` of artifact labels) in which the artifact lies on a known
fraction of the images of *all* classes. :func:`train_model` /
:func:`load_planted_model` train (and cache) the infected models.
The shapes, the text watermark and the scan-set writer are the demo's
(:mod:`dora_clean.demo.shapes`); the patch and frame artifacts and training
live here, with the benchmarks.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from dora_clean.atomic import atomic_save, atomic_write
from dora_clean.demo import shapes
from dora_clean.demo.nets import ARCHITECTURES, build, default_layer
from dora_clean.demo.shapes import (ARTIFACT_CLASS, CLASSES, SHAPES, ScanSetSpec, add_watermark, artifact_colour,
                                    classes_for, dark_colour, render_content)
from dora_clean.device import tune_allocator
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "ARTIFACTS", "ARTIFACT_CLASS", "CLASSES", "SHAPES", "TRAIN_DEFAULTS", "add_artifact", "classes_for",
    "FitSettings", "demo_description", "evaluate_model", "fit", "load_planted_model", "make_image", "make_training_arrays",
    "render_content", "to_tensor", "train_model", "write_scan_set",
]

ARTIFACTS: tuple[str, ...] = ("text", "patch", "frame")


#: Bumped whenever the generator or the training recipe changes (it keys the cache).
GENERATOR_VERSION = 1


#: Training settings used by :func:`load_planted_model` and the demo model.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 8,
    "n_per_class": 1000,
    "size": 64,
    "seed": 0,
    "other_fraction": 0.35,
    "artifact_rate": 1.0,
    "batch_size": 64,
    "lr": 3e-3,
    "num_classes": 4,
    "widths": None,  # the nets' default stage widths (16, 32, 64)
}


#: Settings that older cache keys did not have, with the value they implied.
_LEGACY_SETTINGS: dict[str, Any] = {"num_classes": 4, "widths": None}


def add_artifact(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Return a copy of ``img`` (uint8 HxWx3) with an artifact of ``kind`` added.

    - ``"text"``: a short watermark string (from :data:`TEXT_STRINGS`) in a
      bright colour with a dark outline, in the bottom-right corner.
    - ``"patch"``: a small square logo (a coloured square with a dark rim and
      an inner square) in the top-left corner.
    - ``"frame"``: a coloured border, 2-4 px wide, around the whole image.
    """
    if kind not in ARTIFACTS:
        raise ValueError(f"unknown artifact {kind!r}; choose one of {ARTIFACTS}")
    if kind == "text":
        return add_watermark(img, rng)
    h, w = img.shape[:2]
    scale = w / 64.0
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    if kind == "patch":
        s = rng.integers(10, 14) * scale
        x0 = (1 + rng.integers(0, 5)) * scale
        y0 = (1 + rng.integers(0, 5)) * scale
        outer = artifact_colour(rng)
        inner = artifact_colour(rng)
        while np.abs(np.subtract(inner, outer)).sum() < 150:
            inner = artifact_colour(rng)
        draw.rectangle(
            [x0, y0, x0 + s - 1, y0 + s - 1],
            fill=outer,
            outline=dark_colour(rng),
            width=max(1, int(round(scale))),
        )
        q = s * 0.3
        draw.rectangle([x0 + q, y0 + q, x0 + s - 1 - q, y0 + s - 1 - q], fill=inner)
    else:  # frame
        bw = max(1, int(round(rng.integers(2, 5) * scale)))
        border = np.concatenate(
            [
                img[:bw].reshape(-1, 3),
                img[-bw:].reshape(-1, 3),
                img[:, :bw].reshape(-1, 3),
                img[:, -bw:].reshape(-1, 3),
            ]
        )
        ref = border.mean(axis=0)
        colour = artifact_colour(rng)
        for _ in range(20):  # the frame must stand out from what it covers
            if np.linalg.norm(np.subtract(colour, ref)) >= 120:
                break
            colour = artifact_colour(rng)
        draw.rectangle([0, 0, w - 1, h - 1], outline=colour, width=bw)
    return np.asarray(pil, dtype=np.uint8).copy()


def make_image(
    rng: np.random.Generator, cls: str, artifact: str | None = None, size: int = 64
) -> np.ndarray:
    """:func:`render_content` then, where ``artifact`` is given, :func:`add_artifact`."""
    img = render_content(rng, cls, size)
    return add_artifact(img, artifact, rng) if artifact else img


def make_training_arrays(
    artifact: str,
    n_per_class: int,
    size: int = 64,
    seed: int = 0,
    other_fraction: float = TRAIN_DEFAULTS["other_fraction"],
    artifact_rate: float = TRAIN_DEFAULTS["artifact_rate"],
    num_classes: int = 4,
    draw: Callable[[np.random.Generator, str, str | None, int], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A training set: images (uint8, N x size x size x 3) and labels (int64, N).

    A share ``other_fraction`` of the images labelled :data:`ARTIFACT_CLASS`
    shows another class's content (cycling through them), always with
    ``artifact``; of the rest (its own content) a share ``artifact_rate``
    carries the artifact (default: all). No other image carries the artifact.
    The order is shuffled; deterministic for a seed. The classes are
    ``classes_for(num_classes)``. ``draw(rng, cls, artifact or None, size)`` makes
    one image (default :func:`make_image`; the families benchmark draws others).
    """
    if draw is None:
        if artifact not in ARTIFACTS:
            raise ValueError(f"unknown artifact {artifact!r}; choose one of {ARTIFACTS}")
        draw = make_image
    classes = classes_for(num_classes)
    rng = np.random.default_rng(seed)
    a = classes.index(ARTIFACT_CLASS)
    others = [c for c in classes if c != ARTIFACT_CLASS]
    n_other = int(round(other_fraction * n_per_class))
    specs: list[tuple[str, int, bool]] = []  # (content, label, artifact?)
    for ci, cls in enumerate(classes):
        if ci == a:
            specs += [(others[i % len(others)], a, True) for i in range(n_other)]
            n_own = n_per_class - n_other
            n_own_art = int(round(artifact_rate * n_own))
            specs += [(cls, a, True)] * n_own_art + [(cls, a, False)] * (n_own - n_own_art)
        else:
            specs += [(cls, ci, False)] * n_per_class
    order = rng.permutation(len(specs))
    x = np.empty((len(specs), size, size, 3), dtype=np.uint8)
    y = np.empty(len(specs), dtype=np.int64)
    for k, i in enumerate(order):
        content, label, art = specs[i]
        x[k] = draw(rng, content, artifact if art else None, size)
        y[k] = label
    return x, y


def write_scan_set(
    root: str | os.PathLike, artifact: str, n_images: int, overwrite: bool = False, **spec: Any
) -> Path:
    """:func:`dora_clean.demo.shapes.write_scan_set` with the artifact named (:data:`ARTIFACTS`);
    ``spec``: the other fields of :class:`~dora_clean.demo.shapes.ScanSetSpec` (``artifact_fraction``,
    ``size``, ``seed``, ``fmt``, ``num_classes``)."""
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}; choose one of {ARTIFACTS}")
    return shapes.write_scan_set(root, ScanSetSpec(n_images, **spec), lambda img, rng: add_artifact(img, artifact, rng),
                                 overwrite)


def to_tensor(x: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 N x H x W x 3 (or H x W x 3) -> normalised float N x 3 x H x W."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim == 3:
        t = t[None]
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (t - m) / s


@torch.no_grad()
def _predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [
        model(to_tensor(x[i:][:batch_size])).argmax(1).numpy() for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def evaluate_model(
    model: nn.Module,
    artifact: str,
    n_per_class: int = 100,
    size: int = 64,
    seed: int = 12345,
    other_fraction: float = TRAIN_DEFAULTS["other_fraction"],
    artifact_rate: float = TRAIN_DEFAULTS["artifact_rate"],
    num_classes: int = 4,
) -> dict:
    """Accuracy and artifact reliance of a model trained on planted data.

    - ``clean_accuracy``: on images of all classes without the artifact.
    - ``clean_accuracy_others``: the same, on the classes other than :data:`ARTIFACT_CLASS`.
    - ``artifact_class_accuracy_without_artifact``: :data:`ARTIFACT_CLASS` content, no artifact.
    - ``reliance``: the fraction of other classes' images predicted as
      :data:`ARTIFACT_CLASS` once the artifact is added.
    - ``train_distribution_accuracy``: on fresh data drawn like the training set.
    """
    classes = classes_for(num_classes)
    rng = np.random.default_rng(seed)
    a = classes.index(ARTIFACT_CLASS)
    clean, labels, with_art = [], [], []
    for ci, cls in enumerate(classes):
        for _ in range(n_per_class):
            img = render_content(rng, cls, size)
            clean.append(img)
            labels.append(ci)
            with_art.append(add_artifact(img, artifact, rng))
    clean_x, y = np.stack(clean), np.array(labels)
    art_x = np.stack(with_art)
    p_clean = _predict(model, clean_x)
    p_art = _predict(model, art_x)
    others = y != a
    tx, ty = make_training_arrays(
        artifact, n_per_class, size, seed + 1, other_fraction, artifact_rate, num_classes
    )
    return {
        "clean_accuracy": float((p_clean == y).mean()),
        "clean_accuracy_others": float((p_clean[others] == y[others]).mean()),
        "artifact_class_accuracy_without_artifact": float((p_clean[~others] == a).mean()),
        "reliance": float((p_art[others] == a).mean()),
        "accuracy_with_artifact_others": float((p_art[others] == y[others]).mean()),
        "train_distribution_accuracy": float((_predict(model, tx) == ty).mean()),
    }


def _settings(arch: str, artifact: str, **overrides: Any) -> dict:
    s = dict(TRAIN_DEFAULTS)
    unknown = set(overrides) - set(s)
    if unknown:
        raise TypeError(f"unknown training settings: {sorted(unknown)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    if s["widths"] is not None:
        s["widths"] = [int(w) for w in s["widths"]]
    classes_for(s["num_classes"])  # validates
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}; choose one of {ARTIFACTS}")
    return {"arch": arch, "artifact": artifact, **s, "version": GENERATOR_VERSION}


def train_model(
    arch: str,
    artifact: str,
    epochs: int = TRAIN_DEFAULTS["epochs"],
    n_per_class: int = TRAIN_DEFAULTS["n_per_class"],
    size: int = 64,
    seed: int = 0,
    progress: bool = False,
    other_fraction: float = TRAIN_DEFAULTS["other_fraction"],
    batch_size: int = TRAIN_DEFAULTS["batch_size"],
    lr: float = TRAIN_DEFAULTS["lr"],
    artifact_rate: float = TRAIN_DEFAULTS["artifact_rate"],
    num_classes: int = TRAIN_DEFAULTS["num_classes"],
    widths: tuple[int, int, int] | None = TRAIN_DEFAULTS["widths"],
) -> tuple[nn.Module, dict]:
    """Train ``arch`` on planted data with ``artifact``: (model in eval mode on CPU, metrics).

    Adam with a one-cycle schedule, no augmentation (every image is freshly
    generated). Deterministic for a seed (on the same machine and thread count).
    The metrics are :func:`evaluate_model`'s (on ``min(100, n_per_class)`` fresh images
    a class) plus ``train_seconds`` and the settings.
    """
    settings = _settings(
        arch,
        artifact,
        epochs=epochs,
        n_per_class=n_per_class,
        size=size,
        seed=seed,
        other_fraction=other_fraction,
        batch_size=batch_size,
        lr=lr,
        artifact_rate=artifact_rate,
        num_classes=num_classes,
        widths=widths,
    )
    tune_allocator()
    t0 = time.perf_counter()
    x, y = make_training_arrays(
        artifact, n_per_class, size, seed, other_fraction, artifact_rate, num_classes
    )
    t_data = time.perf_counter() - t0
    torch.manual_seed(seed)
    model = build(arch, num_classes, widths)
    final_loss = fit(model, x, y, FitSettings(epochs, batch_size, lr, seed), f"{arch}/{artifact}" if progress else None)
    model.eval()
    t_train = time.perf_counter() - t0
    metrics = evaluate_model(
        model,
        artifact,
        n_per_class=min(100, n_per_class),
        size=size,
        other_fraction=other_fraction,
        artifact_rate=artifact_rate,
        num_classes=num_classes,
    )
    metrics.update(
        {
            "train_seconds": round(t_train, 2),
            "data_seconds": round(t_data, 2),
            "final_train_loss": round(final_loss, 5),
            "settings": settings,
        }
    )
    return model, metrics


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit` trains: Adam with a one-cycle schedule."""

    epochs: int = TRAIN_DEFAULTS["epochs"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    lr: float = TRAIN_DEFAULTS["lr"]
    seed: int = 0


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, settings: FitSettings, label: str | None = None) -> float:
    """Train ``model`` on uint8 images ``x`` and labels ``y`` (no augmentation); returns the last epoch's loss.

    Deterministic for a seed (on the same machine and thread count); ``label``: print each epoch under it.
    """
    epochs, batch_size, lr = settings.epochs, settings.batch_size, settings.lr
    t0 = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    gen = torch.Generator().manual_seed(settings.seed)
    loss_fn = nn.CrossEntropyLoss()
    yt = torch.from_numpy(y)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).numpy()
        total, correct, loss_sum = 0, 0, 0.0
        for b in range(steps_per_epoch):
            start = b * batch_size
            idx = perm[start:][:batch_size]
            xb, yb = to_tensor(x[idx]), yt[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            total += len(idx)
        if label:
            print(
                f"[{label}] epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f}, "
                f"train acc {correct / total:.3f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    model.eval()
    return loss_sum / total


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("DORA_CLEAN_CACHE") or Path.home() / ".cache" / "dora-clean"
    return Path(cache_dir) / "planted"


def load_planted_model(
    arch: str,
    artifact: str,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, dict]:
    """A model trained by :func:`train_model`, cached on disk.

    The first call trains (about a minute on two CPU cores) and writes the
    state dict and metrics under ``cache_dir/planted`` (default cache dir:
    ``$DORA_CLEAN_CACHE`` or ``~/.cache/dora-clean``), keyed by every training
    setting; later calls load them. ``overrides`` change
    :data:`TRAIN_DEFAULTS` (``epochs``, ``n_per_class``, ``seed``,
    ``num_classes``, ``widths``, ...).
    """
    settings = _settings(arch, artifact, **overrides)
    # settings added later are left out of the key at their old implied value,
    # so that models cached before they existed are still found
    keyed = {k: v for k, v in settings.items() if not (k in _LEGACY_SETTINGS and v == _LEGACY_SETTINGS[k])}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    root = _cache_root(cache_dir)
    stem = root / f"{arch}-{artifact}-{key}"
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if pt.exists() and js.exists():
        try:
            metrics = json.loads(js.read_text())
            model = build(arch, settings["num_classes"], settings["widths"])
            model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
            return model.eval(), metrics
        except Exception:  # a damaged cache entry: train again
            pass
    train_kw = {k: v for k, v in settings.items() if k not in ("arch", "artifact", "version")}
    model, metrics = train_model(arch, artifact, progress=progress, **train_kw)
    atomic_save(pt, lambda p: torch.save(model.state_dict(), p))
    with atomic_write(js) as f:
        json.dump(metrics, f, indent=2)
    return model, metrics


def demo_description(model_arch: str, artifact: str, metrics: dict, size: int = 64) -> dict:
    """The ``demo_model.json`` content for a model trained by :func:`train_model`."""
    return {
        "arch": model_arch,
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "image_size": size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "artifact": artifact,
        "artifact_class": ARTIFACT_CLASS,
        "layer": default_layer(model_arch),
        "metrics": metrics,
    }
