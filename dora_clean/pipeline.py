"""The whole scan (steps 1-7): the settings, the model, the s-AMS and infected neurons, the scan of the
images, the findings and the evaluation; the run directory is written by :mod:`.outcome`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from torch import nn

from .analysis import AnalysisOptions, OutlierSettings, analyse_layer, layer_width
from .device import prepare_model, resolve_device
from .errors import DoraError
from .evaluate import read_label_columns
from .scanning import list_images
from .models import (LayerModel, LoadedModel, default_layer, fixed_input_size, freeze, get_layer, load_model,
                     weights_hash)
from .models.layers import layer_view_key
from .analysis.cost import estimate_sams
from .analysis.layer import check_neurons
from .analysis.outliers import DEFAULT_METHOD
from .outcome import FINDING_TOP, ScanOutcome, evaluate_labels, heatmap_neuron, write_run
from .rundir import RunDir
from .analysis.sams import IMAGENET_MEAN, IMAGENET_STD, SamsConfig, cache_root, sams_key
from .scanning.activations import ScanOptions, scan_images, scan_key, scan_maps
from .scoring import (
    DEFAULT_AGREEMENT, DEFAULT_POOLING, RECRUIT_AUC, ScoringSettings, layer_pooled, score_findings,
)

__all__ = ["DEFAULT_POOLING", "ScanOutcome", "ScanSettings", "default_run_dir", "scan_dataset", "write_run"]


@dataclass
class ScanSettings:
    """Everything ``scan_dataset`` can be told (the CLI's options).

    ``model`` is a spec (as ``--model``) or an ``nn.Module``; a module is used in eval mode and frozen
    while the scan runs, then given back as it was (mode, ``requires_grad``, device). ``files``
    restricts the scan to those files of the dataset (paths relative to it).
    """

    model: str | nn.Module | None = None
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
    pooling: str = DEFAULT_POOLING  # mean or max of the map (a transformer's: its patch tokens), auto (the mean;
    # where it trusts nothing, the max where that splits the images clearly more cleanly: score_findings), or cls
    prefix_tokens: int | None = None  # class + register tokens of a transformer layer (None: read from the model)
    flag_top: int | None = None
    threshold: float | None = None
    agreement: float = DEFAULT_AGREEMENT
    recruit: bool = True
    class_folders: bool = True  # set aside scores that flag class content (where the layout has classes)
    progress: bool = True
    files: Sequence[str] | None = None
    ray: str | None = None  # --ray: local, auto or ray://HOST:PORT (the s-AMS and the scan on Ray)


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


@contextlib.contextmanager
def _borrowed(model: str | nn.Module | None) -> Iterator[None]:
    """Give a caller's module back as it was: train/eval mode, ``requires_grad``, device."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    try:
        yield
    finally:
        if len(devices) == 1:
            model.to(next(iter(devices)))
        for m, training in modes:
            m.training = training
        for p, wanted in grads:
            p.requires_grad_(wanted)


def _load(s: ScanSettings) -> LoadedModel:
    """The model of the settings: a spec loaded, or the caller's module (frozen)."""
    if not isinstance(s.model, nn.Module):
        return load_model(s.model, s.weights, s.trust_model_file)
    if s.weights is not None:
        raise DoraError("weights go with a model spec; load them into the module yourself")
    cls = type(s.model)
    return LoadedModel(freeze(s.model), f"{cls.__module__}:{cls.__qualname__}")


def scan_dataset(
    dataset: str | Path, settings: ScanSettings | None = None, log: Callable[[str], None] = lambda s: None
) -> dict:
    """Scan a dataset with DORA's infected neurons and write the run directory.

    Returns the summary (also written as ``summary.json``).
    """
    s = settings or ScanSettings()
    with _borrowed(s.model):
        return _scan(Path(dataset), s, log)


def _scan(dataset: Path, s: ScanSettings, log: Callable[[str], None]) -> dict:
    clock = _Clock(log)
    out = Path(s.out) if s.out else default_run_dir(dataset)
    if s.pooling not in ("auto", "mean", "max", "cls"):
        raise DoraError(f"unknown pooling {s.pooling!r}: use auto, mean, max or cls")

    with clock.stage("listing images"):
        entries, listed_skipped, layout = list_images(dataset, only=s.files)
    _check_out_dir(out, dataset)
    labels = None
    if s.labels:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = read_label_columns(s.labels, dataset, [e.relpath for e in entries])
        for w in caught:
            log(f"warning: {w.message}")

    with clock.stage("loading the model"):
        loaded = _load(s)
        info = loaded.info
        for warning in info.get("warnings", ()):
            log(f"warning: {warning}")
        size = int(s.image_size or info.get("image_size") or 224)
        mean = tuple(s.mean or info.get("mean") or IMAGENET_MEAN)
        std = tuple(s.std or info.get("std") or IMAGENET_STD)
        layer = s.layer or info.get("layer") or default_layer(loaded.model, size)
        get_layer(loaded.model, layer)
        device = resolve_device(s.device)
        tokens = "cls" if s.pooling == "cls" else "patches"  # cls: the class token as a 1x1 map
        layer_model = prepare_model(LayerModel(loaded.model, layer, tokens, s.prefix_tokens), device)
        try:
            n_channels, h, w = layer_width(layer_model, size)
        except DoraError:
            raise
        except Exception as e:
            raise DoraError(
                f"the model does not take {size}x{size} images ({type(e).__name__}: {str(e).splitlines()[0]}): "
                "set --image-size to the model's input size"
            ) from e

    fixed = fixed_input_size(loaded.model)
    if fixed and s.sams.size not in (0, fixed):
        raise DoraError(f"this model takes only {fixed}x{fixed} images: leave out --sams-size (or make it {fixed})")
    sams_cfg = s.sams if s.sams.size else dataclasses.replace(s.sams, size=fixed or min(size, 128))
    sams_options = AnalysisOptions(mean, std, device, progress=s.progress, prefix_tokens=s.prefix_tokens)
    with clock.stage("s-AMS and infected neurons"):
        sams_view = layer_view_key(layer, prefix_tokens=s.prefix_tokens)  # the s-AMS excite the patch tokens
        sams_dir = (cache_root() / "sams" / sams_key(weights_hash(loaded.model), sams_view, sams_cfg, mean, std)
                    if sams_cfg.cacheable else None)  # to leave out what is cached already
        cost = estimate_sams(layer_model, check_neurons(s.neurons, n_channels), sams_cfg, sams_dir, mean, std, device)
        if cost is not None:
            log(str(cost))
        if s.ray:  # the s-AMS made as Ray tasks, into the cache that analyse_layer reads
            from .analysis.distributed import generate_sams_ray

            generate_sams_ray(loaded.model, layer, check_neurons(s.neurons, n_channels), sams_cfg,
                              dataclasses.replace(sams_options, device=s.device), s.ray)
        analysis = analyse_layer(
            loaded.model, layer, s.neurons, sams_cfg,
            OutlierSettings(s.outlier_method, s.n_infected, s.n_neighbors, representation=s.representation),
            sams_options,
        )
    infected = analysis.infected

    with clock.stage("scanning images"):
        root = dataset
        scan_options = ScanOptions(size, mean, std, device, s.batch_size, s.workers, progress=s.progress)
        key = scan_key(weights_hash(loaded.model), layer_model.view_key, root, entries,
                       scan_options)  # not the infected set
        if s.ray:  # on Ray: the local scan's chunks in the same work directory, which scan_images reads back
            from .scanning.distributed import scan_images_ray

            scan_images_ray(layer_model, root, entries, cache_root() / "scans" / key,
                            dataclasses.replace(scan_options, device=s.device), infected, False, s.ray)
        result = scan_images(layer_model, root, entries, cache_root() / "scans" / key, scan_options, infected,
                             missing_maps=False)  # cached activations: maps of the shown images only
    skipped = list(listed_skipped) + result.skipped

    with clock.stage("scoring"):
        by_class = s.class_folders and layout == "classes"
        classes = [e.label for e in result.entries] if by_class else None
        scores, findings = score_findings(
            result.mean_act, result.max_act, infected, s.pooling, classes,
            ScoringSettings(s.agreement, RECRUIT_AUC if s.recruit else None), s.threshold, s.flag_top)
        if s.pooling == "auto":
            log("pooling: each neuron's peak over its map (max): the mean's findings are not confident and the "
                "peak's split stands clearly further from a bell curve's; its findings are left for review"
                if scores.pooling == "max" else "pooling: each neuron's mean over its map")
            s = dataclasses.replace(s, pooling=scores.pooling)  # as scored: the summary and detector.json say which
        src = layer_pooled(result.mean_act, result.max_act, s.pooling)
        scores = scores.following(findings[0].candidate, infected)  # the old keys describe the first finding
        threshold = s.threshold if s.threshold is not None else (None if s.flag_top else findings[0].threshold)
        confident = [f for f in findings if f.confident]
        flagged = np.logical_or.reduce([f.flagged for f in confident]) if confident else findings[0].flagged
        relpaths = [e.relpath for e in result.entries]
        evaluation = evaluate_labels(labels, relpaths, src, findings, infected, log) if labels else None

    with clock.stage("writing the run directory"):
        outcome = ScanOutcome(
            dataset, layout, loaded.spec, weights_hash(loaded.model), layer, size, mean, std, analysis, result,
            skipped, scores, flagged, threshold, findings, labels, evaluation,
        )
        outcome.heatmaps, outcome.finding_maps = _review_maps(outcome, layer_model, scan_options)
        write_run(RunDir(out), outcome, s, clock.timings)

    if s.fiftyone:
        with clock.stage("FiftyOne import"):
            try:
                from .review import atlas_to_fiftyone, to_fiftyone

                to_fiftyone(out, progress=s.progress)
                atlas_to_fiftyone(out)
            except DoraError as e:
                log(f"warning: {e}")
    return RunDir(out).update_summary(timings=clock.timings)


def _review_maps(o: ScanOutcome, layer_model: nn.Module, options: ScanOptions
                 ) -> tuple[np.ndarray | None, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The maps review shows that the scan did not keep, made in one pass over the images that need them:
    heatmaps.npy where the scan's maps do not give it (the heatmap neuron on the flagged and the top images,
    zero elsewhere; None where they do), and each finding's top images (highest score first) with the maps
    of its heatmap neuron (:func:`~.outcome.heatmap_neuron`)."""
    maps, infected = o.result.maps, [int(n) for n in o.analysis.infected]
    kept = maps.ndim == 4 and maps.shape[1] > 0  # the scan kept every image's maps of the infected neurons
    needs: list[tuple[int | None, np.ndarray, int]] = []  # (finding id, or None for heatmaps.npy; rows; neuron)
    if infected and not kept:
        needs.append((None, np.union1d(np.flatnonzero(o.flagged), o.shown), infected[o.heatmap_column]))
    tops = {}
    for f in o.findings:
        neuron, rows = heatmap_neuron(o, f), np.argsort(-f.score, kind="stable")[:FINDING_TOP]
        if neuron is not None and kept and neuron in infected:
            tops[f.id] = (rows, np.asarray(maps[rows, infected.index(neuron)]))
        elif neuron is not None:
            needs.append((f.id, rows, neuron))
    heat = None
    if needs:
        rows = np.unique(np.concatenate([r for _, r, _ in needs]))
        neurons = sorted({n for _, _, n in needs})
        made = scan_maps(layer_model, o.dataset, [o.result.entries[i] for i in rows], options, neurons)
        at = {int(r): j for j, r in enumerate(rows)}
        for finding, r, n in needs:
            part = made[[at[int(i)] for i in r], neurons.index(n)]
            if finding is None:
                heat = np.zeros((len(o.result.entries), *made.shape[2:]), np.float16)
                heat[r] = part
            else:
                tops[finding] = (r, part)
    return heat, tops
