"""The whole scan (steps 1-7) and the run directory it writes.

The run directory is a contract (DESIGN.md): ``summary.json``,
``neurons.csv``, ``scores.csv``, ``heatmaps.npy``, ``skipped.csv``, ``sams/``,
the plots and ``report.html``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .analysis import LayerAnalysis, analyse_layer, layer_width
from .atomic import atomic_save, atomic_write, remove_stale_temps
from .device import prepare_model, resolve_device
from .errors import DoraError
from .evaluate import auc, neuron_aucs, read_labels, roc_curves
from .scan import list_images, load_image
from .models import LayerModel, default_layer, get_layer, load_model, weights_hash
from .analysis.outliers import DEFAULT_METHOD
from .rundir import update_summary
from .report import plot_atlas, plot_flagged, plot_roc, plot_sams, write_report
from .analysis.sams import IMAGENET_MEAN, IMAGENET_STD, SamsConfig, cache_root
from .scan import scan_images, scan_key
from .scoring import (
    DEFAULT_AGREEMENT, RECRUIT_AUC, ArtifactScores, artifact_scores, flag_images, layer_pooled,
    nearest_neurons,
)

DEFAULT_POOLING = "mean"


@dataclass
class ScanSettings:
    """Everything ``scan_dataset`` can be told (the CLI's options)."""

    model: str | None = None
    weights: str | None = None
    layer: str | None = None
    labels: str | None = None
    out: str | None = None
    image_size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None  # None: scan.default_workers
    fiftyone: bool = True
    trust_model_file: bool = False
    neurons: Sequence[int] | None = None
    sams: SamsConfig = field(default_factory=lambda: SamsConfig(size=0))  # size 0: the image size, at most 128
    outlier_method: str = DEFAULT_METHOD
    representation: str = "standardised"
    n_infected: int | None = None
    n_neighbors: int | None = None
    pooling: str = DEFAULT_POOLING
    flag_top: int | None = None
    threshold: float | None = None
    agreement: float = DEFAULT_AGREEMENT
    recruit: bool = True
    class_folders: bool = True  # set aside scores that flag class content (where the layout has classes)
    progress: bool = True


def default_run_dir(dataset: Path) -> Path:
    return Path("dora-runs") / (dataset.resolve().name or "dataset")


class _Clock:
    def __init__(self, log: Callable[[str], None]):
        self.timings: dict[str, float] = {}
        self.log = log

    def stage(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                clock.log(f"{name} ...")
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.timings[name] = round(time.perf_counter() - self.t, 3)

        return _Stage()


def _check_out_dir(out: Path, dataset: Path) -> None:
    out_r, data_r = out.resolve(), dataset.resolve()
    if out_r == data_r or data_r in out_r.parents:
        raise DoraError(f"the run directory {out} lies inside the dataset {dataset}: choose --out elsewhere")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DoraError(f"cannot write to the run directory {out} ({e.strerror}): choose another --out") from e


def scan_dataset(
    dataset: str | Path, settings: ScanSettings | None = None, log: Callable[[str], None] = lambda s: None
) -> dict:
    """Scan a dataset with DORA's infected neurons and write the run directory.

    Returns the summary (also written as ``summary.json``).
    """
    s = settings or ScanSettings()
    dataset = Path(dataset)
    clock = _Clock(log)
    out = Path(s.out) if s.out else default_run_dir(dataset)
    if s.pooling not in ("mean", "max"):
        raise DoraError(f"unknown pooling {s.pooling!r}: use mean or max")

    with clock.stage("listing images"):
        entries, listed_skipped, layout = list_images(dataset)
    _check_out_dir(out, dataset)
    labels = None
    if s.labels:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = read_labels(s.labels, dataset, [e.relpath for e in entries])
        for w in caught:
            log(f"warning: {w.message}")

    with clock.stage("loading the model"):
        loaded = load_model(s.model, s.weights, s.trust_model_file)
        info = loaded.info
        size = int(s.image_size or info.get("image_size") or 224)
        mean = tuple(s.mean or info.get("mean") or IMAGENET_MEAN)
        std = tuple(s.std or info.get("std") or IMAGENET_STD)
        layer = s.layer or info.get("layer") or default_layer(loaded.model, size)
        get_layer(loaded.model, layer)
        device = resolve_device(s.device)
        layer_model = prepare_model(LayerModel(loaded.model, layer), device)
        try:
            n_channels, h, w = layer_width(layer_model, size)
        except DoraError:
            raise
        except Exception as e:
            raise DoraError(
                f"the model does not take {size}x{size} images ({type(e).__name__}: {str(e).splitlines()[0]}): "
                "set --image-size to the model's input size"
            ) from e

    sams_cfg = s.sams if s.sams.size else dataclasses.replace(s.sams, size=min(size, 128))
    with clock.stage("s-AMS and infected neurons"):
        analysis = analyse_layer(
            loaded.model, layer, s.neurons, sams_cfg, mean, std, device, s.outlier_method, s.n_infected,
            s.n_neighbors, progress=s.progress, representation=s.representation,
        )
    infected = analysis.infected

    with clock.stage("scanning images"):
        root = dataset
        key = scan_key(weights_hash(loaded.model), layer, root, entries, size, mean, std, infected)
        result = scan_images(
            layer_model, root, entries, cache_root() / "scans" / key, size, infected, mean, std, device,
            s.batch_size, s.workers, progress=s.progress,
        )
    skipped = list(listed_skipped) + result.skipped

    with clock.stage("scoring"):
        by_class = s.class_folders and layout == "classes"
        scores = artifact_scores(
            result.mean_act, result.max_act, infected, s.pooling, s.agreement, RECRUIT_AUC if s.recruit else None,
            classes=[e.label for e in result.entries] if by_class else None,
            neighbours=nearest_neurons(analysis.distance, analysis.neurons, infected, exclude=analysis.outliers.dead)
            if by_class else None,
        )
        score = scores.score
        threshold = s.threshold if s.threshold is not None else (None if s.flag_top else scores.threshold)
        flagged = flag_images(score, threshold, s.flag_top)
        relpaths = [e.relpath for e in result.entries]
        aucs: dict[str, float] = {}
        all_auc = None
        if labels is not None:
            rows = np.array([i for i, p in enumerate(relpaths) if p in labels], dtype=np.int64)
            y = np.array([labels[relpaths[i]] for i in rows])
            if len(rows) and y.min() != y.max():
                src = layer_pooled(result.mean_act, result.max_act, s.pooling)
                all_auc = neuron_aucs(y, src, rows)
                for n in analysis.neurons:
                    aucs[str(n)] = float(all_auc[n])
                aucs["combined"] = auc(y, score[rows])
            else:
                log("warning: the labelled images are all of one kind; no ROC/AUC")

    with clock.stage("writing the run directory"):
        _write_run_dir(
            out, dataset, layout, loaded.spec, layer, size, analysis, result, skipped, scores, flagged, threshold,
            labels, aucs, all_auc, s, clock.timings, mean, std,
        )

    if s.fiftyone:
        with clock.stage("FiftyOne import"):
            try:
                from .review import atlas_to_fiftyone, to_fiftyone

                to_fiftyone(out, progress=s.progress)
                atlas_to_fiftyone(out)
            except DoraError as e:
                log(f"warning: {e}")
    return update_summary(out, timings=clock.timings)


def _write_json(path: Path, obj) -> None:
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(obj, f, indent=1)


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    with atomic_write(path, newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_run_dir(
    out: Path, dataset: Path, layout: str, model_spec: str, layer: str, size: int, analysis: LayerAnalysis, result,
    skipped, scores: ArtifactScores, flagged, threshold, labels, aucs, all_auc, s: ScanSettings, timings, mean, std,
) -> dict:
    per_neuron, orient, score, combined = scores.per_neuron, scores.orient, scores.score, scores.combined
    infected = analysis.infected
    o = analysis.outliers
    # s-AMS: a copy of the cached PNG files.
    sams_dir = out / "sams"
    sams_dir.mkdir(parents=True, exist_ok=True)
    for d in (out, sams_dir):  # what an interrupted run was writing
        remove_stale_temps(d)
    for n in analysis.neurons:
        for j in range(analysis.config.n_signals):
            src = analysis.sams_dir / f"{n}_{j}.png"
            dst = sams_dir / f"{n}_{j}.png"
            if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                shutil.copyfile(src, dst)
    # neurons.csv
    auc_of = (lambda n: "" if all_auc is None else f"{all_auc[n]:.6f}")
    dead = set(o.dead)
    neuron_rows = []
    for i, n in enumerate(analysis.neurons):
        neuron_rows.append({
            "neuron": n, "outlier_score": float(o.scores[i]), "infected": int(n in infected), "dead": int(n in dead),
            "atlas_x": float(o.atlas[i, 0]), "atlas_y": float(o.atlas[i, 1]),
            "auc": None if all_auc is None else float(all_auc[n]),
        })
    header = ["neuron", "outlier_score", "infected", "dead", "atlas_x", "atlas_y"] + (["auc"] if all_auc is not None else [])
    _write_csv(out / "neurons.csv", header, (
        [r["neuron"], f"{r['outlier_score']:.6f}", r["infected"], r["dead"], f"{r['atlas_x']:.5f}", f"{r['atlas_y']:.5f}"]
        + ([auc_of(r["neuron"])] if all_auc is not None else [])
        for r in neuron_rows
    ))
    # scores.csv and heatmaps.npy
    relpaths = [e.relpath for e in result.entries]
    header = ["filepath", "label", "score"] + [f"neuron_{n}" for n in infected] + ["flagged"]
    if labels is not None:
        header.append("artifact")
    rows = (
        [p, e.label or "", f"{score[i]:.6f}"] + [f"{v:.6f}" for v in per_neuron[i]] + [int(flagged[i])]
        + ([labels.get(p, "")] if labels is not None else [])
        for i, (p, e) in enumerate(zip(relpaths, result.entries))
    )
    _write_csv(out / "scores.csv", header, rows)
    # the heatmap shows an infected neuron that fires on the artifact (not one it silences), one of the
    # combined score's where there is one
    hm = next((j for j, (n, o) in enumerate(zip(infected, orient)) if o > 0 and combined.get(int(n), 0) > 0),
              next((j for j, o in enumerate(orient) if o > 0), 0))
    if len(infected) and result.maps.ndim == 4 and result.maps.shape[1]:
        heat = np.asarray(result.maps[:, hm])
    else:
        heat = np.zeros((len(relpaths), 1, 1), np.float16)
    atomic_save(out / "heatmaps.npy", lambda p: np.save(p, heat.astype(np.float16)))
    _write_csv(out / "skipped.csv", ["filepath", "reason"], ([k.relpath, k.reason] for k in sorted(skipped, key=lambda k: k.relpath)))
    # plots
    sams_np = analysis.sams.numpy()
    plot_atlas(out / "atlas.png", o.atlas, analysis.neurons, o.scores, infected, o.dead, sams_np)
    plot_sams(out / "infected_sams.png", sams_np, analysis.neurons, infected)
    plots = ["atlas.png", "infected_sams.png"]
    if aucs:
        rows_l = np.array([i for i, p in enumerate(relpaths) if p in labels], dtype=np.int64)
        y = np.array([labels[relpaths[i]] for i in rows_l])
        named = {"combined": score[rows_l]}
        for j, n in enumerate(infected[:5]):
            flipped = orient[j] < 0
            named[f"infected neuron {n}" + (" (silenced by the artifact)" if flipped else "")] = \
                per_neuron[rows_l, j] * orient[j]
        best = int(np.nanargmax(all_auc))
        if best not in infected:
            src = layer_pooled(result.mean_act, result.max_act, s.pooling)
            named[f"best neuron {best} (oracle)"] = np.asarray(src[:, best])[rows_l]
        plot_roc(out / "roc.png", roc_curves(y, named))
        plots.append("roc.png")
    top = np.argsort(-score, kind="stable")[: min(16, int(flagged.sum()) or 16)]
    imgs, titles, hms = [], [], []
    for i in top:
        try:
            imgs.append(load_image(dataset / relpaths[i], size).permute(1, 2, 0).numpy())
        except Exception:
            continue
        titles.append(f"{score[i]:.1f} {Path(relpaths[i]).name[:18]}")
        hms.append(np.asarray(heat[i], dtype=np.float32))
    if imgs:
        plot_flagged(out / "flagged.png", imgs, titles, hms)
        plots.append("flagged.png")
    # summary.json
    old = {}
    if (out / "summary.json").is_file():
        try:
            old = json.loads((out / "summary.json").read_text())
        except ValueError:
            old = {}
    summary = {
        "model": model_spec,
        "layer": layer,
        "n_neurons": len(analysis.neurons),
        "infected_neurons": [int(n) for n in infected],
        "dead_neurons": [int(n) for n in o.dead],
        "n_images": len(relpaths),
        "n_flagged": int(flagged.sum()),
        "n_skipped": len(skipped),
        "fiftyone_dataset": old.get("fiftyone_dataset") if s.fiftyone else None,
        "atlas_dataset": old.get("atlas_dataset") if s.fiftyone else None,
        "timings": timings,
        "dataset": str(dataset.resolve()),
        "layout": layout,
        "image_size": size,
        "mean": list(mean),
        "std": list(std),
        "score_threshold": None if threshold is None else float(threshold),
        "flagging": "top" if s.flag_top else ("threshold" if s.threshold is not None else "otsu"),
        "infected_orientation": {str(n): int(o) for n, o in zip(infected, orient)},
        "combined_neurons": list(combined),
        "combined_orientation": {str(n): o for n, o in combined.items()},
        "combined_seed": scores.seed,
        "separation": round(scores.separation, 4),
        "agreement": s.agreement,
        "recruit": s.recruit,
        "class_folders": scores.class_lambda is not None,  # used: on, and two class folders or more
        "class_content": scores.class_content,
        "class_lambda": scores.class_lambda,
        "heatmap_neuron": int(infected[hm]) if infected else None,
        "pooling": s.pooling,
        "outlier_method": analysis.outliers.method,
        "representation": s.representation,
        "sams": analysis.config.key_fields(),
    }
    if aucs:
        summary["auc"] = aucs
        # each infected neuron in the direction the combined score uses it
        summary["best_infected_auc"] = (
            max(aucs[str(n)] if o > 0 else 1 - aucs[str(n)] for n, o in zip(infected, orient)) if infected else None
        )
    _write_json(out / "summary.json", summary)
    write_report(out, summary, neuron_rows, plots)
    return summary
