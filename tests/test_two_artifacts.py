"""A dataset with two artifacts, end to end: two findings, each reviewable and removable on its own, and a
detector that flags the scanned images as the scan did.

The model is built by hand, so that nothing is trained: a 1x1 convolution whose first channels fire on
saturated red pixels (the red-square artifact), the next on saturated blue ones (the blue square), the
rest on the images' ordinary colours.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dora_clean.cli import main
from dora_clean.detector import apply_detector
from dora_clean.pipeline import ScanSettings, scan_dataset
from dora_clean.scoring import MIN_REPRODUCING
from dora_clean.analysis.sams import SamsConfig

N_DETECTORS = MIN_REPRODUCING + 1  # per artifact: enough for a confident finding of each


class Colours(nn.Module):
    """conv (1x1) -> ReLU -> global mean -> fc: detectors of saturated red and blue, and colour channels."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        n = 2 * N_DETECTORS + 10
        w, b = np.zeros((n, 3)), np.zeros(n)
        for k in range(N_DETECTORS):  # pixels in [-2, 2.6] after ImageNet normalisation
            w[k] = [1.0, -1.0, -1.0] * rng.uniform(0.8, 1.2, 3)
            w[N_DETECTORS + k] = [-1.0, -1.0, 1.0] * rng.uniform(0.8, 1.2, 3)
        b[: 2 * N_DETECTORS] = -3.5  # only a saturated red (or blue) pixel gets past this
        w[2 * N_DETECTORS:] = rng.normal(size=(10, 3))
        self.conv = nn.Conv2d(3, n, 1)
        self.conv.weight.data = torch.tensor(w, dtype=torch.float32)[:, :, None, None]
        self.conv.bias.data = torch.tensor(b, dtype=torch.float32)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(n, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def _dataset(root: Path, n: int = 200, seed: int = 0) -> Path:
    """Two classes of muted colour fields; a red square on one random tenth, a blue one on another."""
    rng = np.random.default_rng(seed)
    red, blue = np.zeros(n, bool), np.zeros(n, bool)
    red[rng.permutation(n)[: n // 10]] = True
    blue[rng.permutation(n)[: n // 10]] = True
    rows = []
    for i in range(n):
        cls = ("warm", "cool")[i % 2]
        base = np.array([150, 120, 100] if cls == "warm" else [100, 120, 150], float)
        img = np.clip(base + rng.normal(0, 20, (32, 32, 3)), 0, 255)
        if red[i]:
            img[2:10, 2:10] = [255, 0, 0]
        if blue[i]:
            img[22:30, 22:30] = [0, 0, 255]
        rel = f"{cls}/{cls}_{i:04d}.png"
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(root / rel)
        rows.append((rel, int(red[i]), int(blue[i])))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "red", "blue"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    data = _dataset(tmp_path_factory.mktemp("two") / "data")
    out = tmp_path_factory.mktemp("two-run") / "run"
    model = Colours().eval()
    summary = scan_dataset(data, ScanSettings(
        model=model, layer="relu", labels=str(data / "labels.csv"), out=str(out), image_size=32,
        sams=SamsConfig(n_signals=2, steps=16, size=32), workers=0, progress=False))
    return data, out, model, summary


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_artifacts_are_two_findings_each_removable_on_its_own(scanned, tmp_path):
    import fiftyone as fo

    data, out, model, summary = scanned
    findings = summary["findings"]
    by_label = {f["label"]: f for f in findings if f["confident"]}
    assert set(by_label) == {"red", "blue"}, findings  # two confident findings, one an artifact
    for label, f in by_label.items():
        assert f["auc"][label] >= 0.95
        assert {int(n) for n in f["neurons"]} <= set(range(2 * N_DETECTORS))  # detectors only
    rows = _rows(out / "scores.csv")
    for label, f in by_label.items():
        flagged = {r["filepath"] for r in rows if r[f"flagged_{f['id']}"] == "1"}
        marked = {r["filepath"] for r in rows if r[f"artifact_{label}"] == "1"}
        assert len(flagged & marked) >= 0.9 * max(len(flagged), len(marked))

    # review: each finding's field, tag and view
    ds = fo.load_dataset(summary["fiftyone_dataset"])
    for f in by_label.values():
        assert len(ds.load_saved_view(f"finding-{f['id']}")) == f["n_flagged"]
        assert len(ds.match_tags(f"dora:finding-{f['id']}")) == f["n_flagged"]
        assert ds.has_sample_field(f"dora_finding_{f['id']}")

    # export one finding's flags only
    red = by_label["red"]
    assert main(["export", str(out), "--to", str(tmp_path / "clean"), "--findings", str(red["id"])],
                standalone_mode=False) in (None, 0)
    removed = _rows(tmp_path / "clean" / "removed.csv")
    red_flags = {r["filepath"] for r in rows if r[f"flagged_{red['id']}"] == "1"}
    assert {r["filepath"] for r in removed if r["reason"] == "flagged"} == red_flags
    assert all(r["findings"] == str(red["id"]) for r in removed if r["reason"] == "flagged")
    red_score = {r["filepath"]: float(r[f"finding_{red['id']}"]) for r in rows}
    assert all(abs(float(r["score"]) - red_score[r["filepath"]]) < 1e-5 for r in removed if r["reason"] == "flagged")
    kept = {p.relative_to(tmp_path / "clean").as_posix() for p in (tmp_path / "clean").rglob("*.png")}
    assert kept == {r["filepath"] for r in rows} - red_flags


@pytest.mark.slow
def test_the_detector_flags_what_the_scan_flagged_and_scores_new_images(scanned, tmp_path):
    data, out, model, summary = scanned
    applied = apply_detector(out, data, out=tmp_path / "applied", model=model, progress=False)
    assert applied["n_flagged"] == summary["n_flagged"]
    rows, again = _rows(out / "scores.csv"), _rows(tmp_path / "applied" / "scores.csv")
    for f in summary["findings"]:
        k = f["id"]
        assert [r[f"flagged_{k}"] for r in again] == [r[f"flagged_{k}"] for r in rows]
    new = _dataset(tmp_path / "new", n=60, seed=5)  # later images: the detector finds their squares
    later = apply_detector(out, new, out=tmp_path / "later", model=model, progress=False)
    labels = {r["filepath"]: r for r in _rows(new / "labels.csv")}
    scored = _rows(tmp_path / "later" / "scores.csv")
    for f in summary["findings"]:
        if f["confident"]:
            hits = [labels[r["filepath"]][f["label"]] == "1" for r in scored if r[f"flagged_{f['id']}"] == "1"]
            assert hits and np.mean(hits) >= 0.9
    assert later["n_images"] == 60
