"""The bundled example: a planted-artifact dataset for the bundled demo model."""
from __future__ import annotations

import csv
from pathlib import Path

from .errors import DoraError
from .planted import load_demo_model, write_scan_set

MARKER = ".dora-clean-demo"


def prepare_demo_dataset(workdir: str | Path, n_images: int = 1000, seed: int = 1) -> Path:
    """Write (or reuse) the demo dataset under ``workdir/dataset``; returns its folder.

    The images are shapes like those the demo model was trained on; a fifth
    of them carry its planted artifact, and ``labels.csv`` says which.
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
    write_scan_set(data, info["artifact"], n_images, size=info["image_size"], seed=seed, overwrite=True)
    (data / MARKER).write_text(f"{info['artifact']} {n_images} {seed}\n")
    return data
