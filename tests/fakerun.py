"""Build a small, fake-but-real run directory for tests.

The images are real PNG files (in class folders, or flat), and the run
directory holds the files the scan writes (see DESIGN.md, "The run
directory"): summary.json, scores.csv, heatmaps.npy, neurons.csv, sams/ and
skipped.csv, written through :class:`dora_clean.rundir.RunDir` as the scan
writes them. The numbers are made up but consistent: an image is flagged when
its score reaches the threshold, and its artifact label says the same except
for a few mistakes. With ``findings`` the run has several findings (the
finding_K/flagged_K columns of scores.csv and summary.json's "findings");
without, it is a run written before findings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from dora_clean.rundir import NeuronRow, RunDir, Scores
from dora_clean.scanning import Skipped


@dataclass
class FakeRun:
    run_dir: Path
    dataset: Path
    infected: list[int]
    rows: list[dict] = field(default_factory=list)  # scores.csv rows, as written
    skipped: list[str] = field(default_factory=list)  # relpaths of the unreadable files
    findings: dict[int, dict] = field(default_factory=dict)  # id -> its summary.json entry (none: an old run)

    @property
    def flagged(self) -> list[str]:
        return [r["filepath"] for r in self.rows if r["flagged"] == 1]

    def flagged_by(self, finding: int) -> list[str]:
        """The images a finding flags (an old run: finding 1 is ``flagged``)."""
        key = f"flagged_{finding}" if self.findings else "flagged"
        return [r["filepath"] for r in self.rows if r[key] == 1]

    @property
    def summary(self) -> dict:
        return RunDir(self.run_dir).read_summary()


def _png(path: Path, rng: np.random.Generator, artifact: bool, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = rng.integers(0, 200, (size, size, 3), dtype=np.uint8)
    if artifact:
        img[: size // 3, : size // 3] = 255  # a white corner tag
    Image.fromarray(img).save(path)


def make_run(
    root: str | Path,
    *,
    layout: str = "classes",
    n_images: int = 12,
    classes: tuple[str, ...] = ("cat", "dog"),
    labels: bool = True,
    n_neurons: int = 8,
    infected: tuple[int, ...] = (5, 2),
    n_sams: int = 2,
    heat: int = 8,
    threshold: float = 0.7,
    images: bool = True,
    image_size: int = 16,
    seed: int = 0,
    confident: bool = True,
    findings: Sequence[bool] | None = None,
) -> FakeRun:
    """Write ``root/data`` (the dataset) and ``root/run`` (the run directory).

    ``layout`` is "classes" (class folders, one image in a nested sub-folder
    per class) or "flat". ``images=False`` skips writing the image files (for
    timing the review step on many samples). One unreadable file per dataset is
    listed in skipped.csv. ``confident``: whether the scan found an artifact it trusts (summary.json's
    ``artifact_found``). ``findings``: one finding per entry, whether it is confident (``confident`` is
    then ignored). Finding 1 flags the images ``flagged`` describes in an old run; finding K > 1 flags two
    of those and two clean ones, and its neurons are the last infected one (direction -1) and neuron
    ``n_neurons - K + 1``. The ``flagged`` column is the union of the confident findings' flags, or
    finding 1's where none is confident (as the scan writes it).
    """
    if n_images < 8:
        raise ValueError("make_run needs n_images >= 8")
    root = Path(root)
    data, run = root / "data", RunDir(root / "run")
    run.create()
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    relpaths = []
    for i in range(n_images):
        if layout == "classes":
            c = classes[i % len(classes)]
            sub = "sub/" if i < len(classes) else ""  # one nested image per class
            relpaths.append(f"{c}/{sub}img_{i:06d}.png")
        else:
            relpaths.append(f"img_{i:06d}.png")
    relpaths.sort()

    scores = np.round(rng.random(n_images), 6)
    plain = [i for i, rel in enumerate(relpaths) if "/sub/" not in rel]
    nested = [i for i, rel in enumerate(relpaths) if "/sub/" in rel]
    rng.shuffle(plain)
    scores[plain[:3]] = [0.95, 0.85, 0.75]  # at least three flagged images
    scores[plain[3:6]] = [0.1, 0.2, 0.3]  # and three clean ones
    scores[nested[:2]] = [0.05, 0.99][: len(nested[:2])]  # a clean and a flagged nested one
    flagged = scores >= threshold
    confidences = list(findings or [])
    finding_scores = {1: scores} if confidences else {}
    for k in range(2, len(confidences) + 1):
        other = np.round(rng.random(n_images) * threshold * 0.9, 6)
        hits = [i for i in plain if flagged[i]][k % 2: k % 2 + 2] + plain[3 + k % 2: 5 + k % 2]
        other[hits] = np.round(threshold + 0.05 * np.arange(len(hits), 0, -1), 6)
        finding_scores[k] = other
    finding_flags = {k: v >= threshold for k, v in finding_scores.items()}
    if confidences:
        chosen = [finding_flags[k] for k, c in enumerate(confidences, 1) if c] or [finding_flags[1]]
        flagged = np.logical_or.reduce(chosen)
        confident = any(confidences)
    artifact = finding_flags[1].copy() if confidences else flagged.copy()
    artifact[np.argmax(scores)] = True
    artifact[np.argmin(scores)] = True  # a miss the scan did not flag

    rows = []
    for i, rel in enumerate(relpaths):
        row = {
            "filepath": rel,
            "label": rel.split("/")[0] if layout == "classes" else "",
            "score": float(scores[i]),
        }
        for k, n in enumerate(infected):
            row[f"neuron_{n}"] = float(np.round(scores[i] * (1.0 - 0.1 * k), 6))
        row["flagged"] = int(flagged[i])
        for k in finding_scores:
            row[f"finding_{k}"] = float(finding_scores[k][i])
            row[f"flagged_{k}"] = int(finding_flags[k][i])
        if labels:
            row["artifact"] = int(artifact[i])
        rows.append(row)
        if images:
            _png(data / rel, rng, bool(artifact[i]), image_size)

    run.write_scores(Scores(
        filepaths=[r["filepath"] for r in rows],
        labels=[r["label"] for r in rows],
        score=scores,
        neurons={n: np.array([r[f"neuron_{n}"] for r in rows]) for n in infected},
        flagged=flagged,
        artifact=artifact if labels else None,
        findings=finding_scores,
        finding_flags=finding_flags,
    ))

    broken = f"{classes[0]}/broken.png" if layout == "classes" else "broken.png"
    (data / broken).parent.mkdir(parents=True, exist_ok=True)
    (data / broken).write_bytes(b"not a png")
    run.write_skipped([Skipped(broken, "cannot identify image file")])

    # where the top infected neuron fires: a blob, brighter the higher the score
    yy, xx = np.mgrid[0:heat, 0:heat]
    blob = np.exp(-((yy - 1) ** 2 + (xx - 1) ** 2) / 2.0)
    maps = (scores[:, None, None] * blob[None] * 10).astype(np.float16)
    run.write_heatmaps(maps)

    atlas = rng.normal(size=(n_neurons, 2)).round(4)
    atlas[list(infected)] += 5.0
    run.write_neurons([
        NeuronRow(n, 3.0 if n in infected else 1.0, n in infected, n == 0, float(atlas[n, 0]), float(atlas[n, 1]),
                  (0.9 if n in infected else 0.5) if labels else None)
        for n in range(n_neurons)
    ])

    for n in range(n_neurons):
        for s in range(n_sams):
            _png(run.sams_image(n, s), rng, n in infected, image_size)

    summary = {
        "model": "fake",
        "layer": "layer3",
        "n_neurons": n_neurons,
        "infected_neurons": list(infected),
        "n_images": n_images,
        "n_flagged": int(flagged.sum()),
        "artifact_found": confident,
        "n_confident": int(flagged.sum()) if confident else 0,
        "confidence": {"confident": confident, "reproducing_neurons": 5 if confident else 0,
                       "class_association": 0.01, "flagged_share": float(flagged.mean()),
                       "reasons": [] if confident else ["0 of the layer's neurons reproduce the flagged set"]},
        "n_skipped": 1,
        "fiftyone_dataset": None,
        "atlas_dataset": None,
        "timings": {},
        "dataset": str(data.resolve()),
        "layout": layout,
        "score_threshold": threshold,
        "heatmap_neuron": infected[0],
    }
    entries = {}
    for k, c in enumerate(confidences, 1):
        neurons = {n: 1 for n in infected} if k == 1 else {infected[-1]: -1, n_neurons - k + 1: 1}
        entries[k] = {
            "id": k, "seed": "agreement" if k == 1 else f"skewed:{n_neurons - k + 1}",
            "neurons": {str(n): d for n, d in neurons.items()},
            "infected_neurons": [n for n in infected if n in neurons], "threshold": threshold,
            "n_flagged": int(finding_flags[k].sum()), "confident": bool(c),
            "confidence": {"confident": bool(c), "reproducing_neurons": 5 if c else 0, "class_association": 0.01,
                           "flagged_share": float(finding_flags[k].mean()), "reasons": [] if c else ["not trusted"]},
            "separation": 0.5, "heatmap_neuron": next(iter(neurons)),
        }
    if confidences:
        summary["findings"] = sorted(entries.values(), key=lambda e: not e["confident"])  # ranked: confident first
    if labels:
        summary["auc"] = {str(n): 0.9 for n in infected} | {"combined": 0.92}
        summary["best_infected_auc"] = 0.9
    run.write_summary(summary)
    return FakeRun(run_dir=run.path, dataset=data, infected=list(infected), rows=rows, skipped=[broken],
                   findings=entries)
