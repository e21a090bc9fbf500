"""The bundled example: a small model that learned a text watermark as a shortcut, and data to scan with it.

:func:`load_demo_model` loads the model (``assets/``, trained by
``benchmarks/train_demo_model.py``); :func:`prepare_demo_dataset` writes a
dataset of shapes (:mod:`.shapes`) in which a fifth of the images carry the
watermark, with ``labels.csv``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import nn

from ..errors import DoraError
from .nets import build
from .shapes import ScanSetSpec, write_scan_set

__all__ = ["MARKER", "demo_asset_paths", "load_demo_model", "prepare_demo_dataset"]

MARKER = ".dora-clean-demo"


def demo_asset_paths() -> tuple[Path, Path]:
    """The bundled demo model's state dict and its description (``.pt``, ``.json``)."""
    assets = Path(__file__).parent / "assets"
    return assets / "demo_model.pt", assets / "demo_model.json"


def load_demo_model() -> tuple[nn.Module, dict]:
    """The bundled demo model (eval mode, CPU) and its description.

    The description holds ``arch``, ``num_classes``, ``classes``,
    ``image_size``, ``mean``, ``std``, ``artifact``, ``layer`` and ``metrics``.
    """
    pt, js = demo_asset_paths()
    if not pt.exists() or not js.exists():
        raise FileNotFoundError(
            f"the demo model is missing ({pt}); "
            "run `python benchmarks/train_demo_model.py` to make it"
        )
    info = json.loads(js.read_text())
    model = build(info["arch"], int(info["num_classes"]))
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    return model.eval(), info


def prepare_demo_dataset(workdir: str | Path, n_images: int = 1000, seed: int = 1) -> Path:
    """Write (or reuse) the demo dataset under ``workdir/dataset``; returns its folder.

    The images are shapes like those the demo model was trained on; a fifth
    of them carry its planted watermark, and ``labels.csv`` says which.
    A folder left by an earlier demo with the same size is reused.
    """
    _, info = load_demo_model()
    data = Path(workdir) / "dataset"
    labels = data / "labels.csv"
    if data.exists() and any(data.iterdir()):
        if not (data / MARKER).is_file():
            raise DoraError(f"{data} exists and was not written by the demo: choose another --workdir")
        if (data / MARKER).read_text().strip() == f"{info['artifact']} {n_images} {seed}" and labels.is_file():
            with open(labels, newline="") as f:
                if sum(1 for _ in csv.reader(f)) - 1 == n_images:
                    return data
    write_scan_set(data, ScanSetSpec(n_images, size=info["image_size"], seed=seed), overwrite=True)
    (data / MARKER).write_text(f"{info['artifact']} {n_images} {seed}\n")
    return data
