"""A detector that travels: score new images with a scan's findings, without the s-AMS.

Each scan writes ``detector.json`` into its run directory (see DESIGN.md,
"The run directory"): the model's fingerprint (:func:`~.models.weights_hash`),
the layer, the preprocessing, and each finding's neurons, directions, centre,
spread and threshold (and, where the scan centred its activations within the
class folders, each neuron's median in each class folder: ``class_centres``).
:func:`apply_detector` runs the same model on another folder of images
(reusing the scan's cache of activations where it can), centres each image on
its class folder's centres where the finding has them, and scores each
finding with :func:`~.scoring.stats.finding_score`, the function the scan
scored it with. On the scanned dataset itself it flags exactly what
the scan flagged.

The output folder (default ``dora-runs/<dataset name>-apply``) holds
``scores.csv`` (the run directory's format), ``skipped.csv`` and a small
``summary.json``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DoraError
from .rundir import DETECTOR, RunDir, Scores

__all__ = ["APPLY_OPTIONS", "DETECTOR_FORMAT", "DETECTOR_VERSION", "READ_VERSIONS", "apply_detector", "default_apply_dir", "load_detector"]

#: detector.json's ``format`` and the ``version`` this dora-clean writes (2: findings may have
#: ``class_centres``); it reads :data:`READ_VERSIONS`.
DETECTOR_FORMAT = "dora-clean detector"
DETECTOR_VERSION = 2
READ_VERSIONS = (1, 2)

_KEYS = ("weights_sha256", "layer", "pooling", "image_size", "mean", "std", "findings")
_FINDING_KEYS = ("id", "neurons", "directions", "centre", "spread", "threshold")


def default_apply_dir(dataset: str | os.PathLike) -> Path:
    """``dora-runs/<dataset name>-apply``."""
    return Path("dora-runs") / f"{Path(dataset).resolve().name or 'dataset'}-apply"


def load_detector(path: str | os.PathLike) -> dict:
    """A detector: a run directory's ``detector.json``, or a ``detector.json`` file itself.

    Checked: its format and version, and that each finding has what scoring needs. Its
    ``"source"`` is set to the file it came from. A DoraError (one line) otherwise.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / DETECTOR).is_file() and not (p / "summary.json").is_file():
            raise DoraError(f"{p} is neither a dora-clean run directory nor a detector.json file")
        detector, source = RunDir(p).read_detector(), p / DETECTOR
    elif p.is_file():
        try:
            detector = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DoraError(f"cannot read the detector {p}: {e}") from None
        source = p
    else:
        raise DoraError(f"{p} does not exist: give a run directory of `dora-clean scan` or its detector.json")
    detector = check_detector(detector, str(source))
    detector["source"] = str(source.resolve())
    return detector


def check_detector(detector: dict, source: str = "the detector") -> dict:
    """``detector`` if it is one this version of dora-clean can apply; a DoraError naming ``source`` if not."""
    if not isinstance(detector, dict) or detector.get("format") != DETECTOR_FORMAT:
        found = detector.get("format") if isinstance(detector, dict) else None
        raise DoraError(f"{source} is not a dora-clean detector (format {found!r}, expected {DETECTOR_FORMAT!r})")
    version = detector.get("version")
    if version not in READ_VERSIONS:
        newer = isinstance(version, int) and version > DETECTOR_VERSION
        raise DoraError(f"{source} is a detector of version {version!r}; this dora-clean reads versions "
                        f"{', '.join(map(str, READ_VERSIONS))}" + (": update dora-clean" if newer else ""))
    missing = [k for k in _KEYS if k not in detector]
    if missing:
        raise DoraError(f"{source} lacks {', '.join(missing)}: is it a whole detector.json?")
    if detector["pooling"] not in ("mean", "max", "cls"):
        raise DoraError(f"{source} has an unknown pooling {detector['pooling']!r}")
    if not isinstance(detector["findings"], list) or not detector["findings"]:
        raise DoraError(f"{source} has no findings (the scan found no infected neurons): there is nothing to apply")
    for f in detector["findings"]:
        lacking = [k for k in _FINDING_KEYS if not isinstance(f, dict) or k not in f]
        if lacking:
            raise DoraError(f"{source}: a finding lacks {', '.join(lacking)}")
        lengths = {len(f[k]) for k in ("neurons", "directions", "centre", "spread")}
        lengths |= {len(c) if isinstance(c, list) else -1 for c in (f.get("class_centres") or {}).values()}
        if len(lengths) != 1:
            raise DoraError(f"{source}: finding {f['id']} has neurons, directions, centre, spread and class "
                            "centres of different lengths")
    return detector


def _class_centres(by_class: dict[str, list[float]], labels: Sequence[str | None]) -> tuple[np.ndarray, int]:
    """[N, m] each image's class centre of a finding's neurons (its class folder's, from the scan), and how
    many images lie outside the scan's class folders: those get the median of the centres."""
    names = list(by_class)
    table = np.array([by_class[k] for k in names], dtype=np.float64)
    index = {k: j for j, k in enumerate(names)}
    rows = np.array([index.get(str(label), -1) for label in labels], dtype=int)
    return np.vstack([table, np.median(table, axis=0)])[rows], int(np.sum(rows < 0))


def _check_not_a_scan(run: RunDir) -> None:
    """Refuse to write over a scan's run directory (an earlier apply's folder is fine)."""
    summary = None
    if run.summary_path.is_file():
        try:
            summary = run.read_summary()
        except DoraError:
            summary = {}
    if run.detector_path.is_file() or (summary is not None and summary.get("kind") != "apply"):
        raise DoraError(f"{run.path} holds a scan's run directory, which apply would write over: choose another --out")


def _chosen(detector: dict, findings: Sequence[int] | None) -> list[dict]:
    """The detector's findings to apply (all, or those of ``findings``), by id."""
    by_id = {int(f["id"]): f for f in detector["findings"]}
    if findings is None:
        return [by_id[k] for k in sorted(by_id)]
    unknown = [int(k) for k in findings if int(k) not in by_id]
    if unknown:
        raise DoraError(f"the detector has no finding {', '.join(map(str, unknown))} "
                        f"(it has: {', '.join(map(str, sorted(by_id)))})")
    return [by_id[k] for k in sorted({int(k) for k in findings})]


#: The fields of :class:`~.pipeline.ScanSettings` that apply uses.
APPLY_OPTIONS = ("out", "model", "weights", "device", "batch_size", "workers", "progress", "trust_model_file")


def apply_detector(
    detector_or_path: dict | str | os.PathLike,
    dataset: str | os.PathLike,
    findings: Sequence[int] | None = None,
    log: Callable[[str], None] = lambda s: None,
    **options: Any,
) -> dict:
    """Score the images of ``dataset`` with a scan's detector and write ``out``; returns its summary.

    ``detector_or_path``: a run directory, a ``detector.json`` file, or the detector as a dict.
    ``findings``: apply only these finding ids. ``options`` (:data:`APPLY_OPTIONS`, as in
    :class:`~.pipeline.ScanSettings`): ``out``, ``device``, ``batch_size``, ``workers``, ``progress``, and
    ``model`` / ``weights`` / ``trust_model_file``: the model, where the detector's spec does not load it any
    more (the file moved): a spec as ``--model`` or an ``nn.Module`` (given back as it was); its weights must
    be the scan's (``weights_sha256``).

    ``out`` (default :func:`default_apply_dir`) gets ``scores.csv`` (filepath, label, score: the first
    applied finding's; flagged: the union of the confident findings' flags, the first finding's where
    none is confident, as the scan does; ``finding_K``, ``flagged_K``), ``skipped.csv`` and
    ``summary.json``.
    """
    from .pipeline import ScanSettings, _borrowed

    unknown = sorted(set(options) - set(APPLY_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; apply takes {', '.join(APPLY_OPTIONS)}")
    detector = (check_detector(dict(detector_or_path)) if isinstance(detector_or_path, dict)
                else load_detector(detector_or_path))
    chosen = _chosen(detector, findings)
    dataset = Path(dataset)
    model, weights, out = options.pop("model", None), options.pop("weights", None), options.pop("out", None)
    out = Path(out) if out is not None else default_apply_dir(dataset)
    with _borrowed(model):
        return _apply(detector, chosen, dataset, out, ScanSettings(
            model=model if model is not None else detector.get("model"),
            weights=str(weights) if weights is not None else (detector.get("weights") if model is None else None),
            **options), model is None, log)


def _apply(detector: dict, chosen: list[dict], dataset: Path, out: Path, s, own_model: bool,
           log: Callable[[str], None]) -> dict:
    from .analysis.sams import cache_root
    from .device import prepare_model, resolve_device
    from .models import LayerModel, get_layer, weights_hash
    from .pipeline import _check_out_dir, _load
    from .scanning import list_images, scan_images, scan_key
    from .scanning.activations import ScanOptions
    from .scoring.stats import finding_score, layer_pooled

    t0 = time.perf_counter()
    entries, skipped, layout = list_images(dataset)
    _check_out_dir(out, dataset)
    _check_not_a_scan(RunDir(out))
    device = resolve_device(s.device)

    log("loading the model ...")
    try:
        loaded = _load(s)
    except DoraError as e:
        if not own_model:
            raise
        raise DoraError(f"cannot load the detector's model {s.model!r} ({e}): pass it with --model "
                        "(and --weights)") from e
    expected, got = detector["weights_sha256"], weights_hash(loaded.model)
    if got != expected:
        raise DoraError(f"the model's weights differ from those the detector was made with (sha {expected}; "
                        f"this model's: {got}): pass the model the scan used (--model/--weights)")
    layer, pooling = detector["layer"], detector["pooling"]
    get_layer(loaded.model, layer)
    tokens = "cls" if pooling == "cls" else "patches"  # as the scan: cls is the class token as a 1x1 map
    layer_model = prepare_model(LayerModel(loaded.model, layer, tokens, detector.get("prefix_tokens")), device)

    log(f"scanning {len(entries)} images ...")
    options = ScanOptions(int(detector["image_size"]), tuple(float(v) for v in detector["mean"]),
                          tuple(float(v) for v in detector["std"]), device, s.batch_size, s.workers,
                          progress=s.progress)
    key = scan_key(got, layer_model.view_key, dataset, entries, options)
    result = scan_images(layer_model, dataset, entries, cache_root() / "scans" / key, options, (),
                         missing_maps=False)
    skipped = list(skipped) + result.skipped
    if not result.entries:
        raise DoraError(f"no image of {dataset} could be read (see {len(skipped)} skipped, e.g. "
                        f"{skipped[0].relpath}: {skipped[0].reason})" if skipped else f"no images in {dataset}")

    activations = layer_pooled(result.mean_act, result.max_act, pooling)
    width = activations.shape[1]
    scores: dict[int, np.ndarray] = {}
    flags: dict[int, np.ndarray] = {}
    labels = [e.label for e in result.entries]
    outside: tuple[int, list[str]] = (0, [])  # images outside the scan's class folders, and those folders
    for f in chosen:
        k = int(f["id"])
        if any(not 0 <= int(n) < width for n in f["neurons"]):
            raise DoraError(f"finding {k}'s neurons lie outside the layer {layer} ({width} neurons): "
                            "is this the scan's model?")
        neurons = [int(n) for n in f["neurons"]]
        x = np.asarray(activations[:, neurons], dtype=np.float64)
        if f.get("class_centres"):  # centred within the class folders, as the scan scored them
            centres, n_outside = _class_centres(f["class_centres"], labels)
            x = x - centres
            outside = max(outside, (n_outside, list(f["class_centres"])))  # the same folders for every finding
        scores[k] = finding_score(x, range(len(neurons)), f["directions"], f["centre"], f["spread"])
        flags[k] = scores[k] > float(f["threshold"])
    n_outside, names = outside
    if n_outside:  # once, not once a finding
        log(f"warning: {n_outside} images lie outside the scan's class folders ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}): their scores are centred on the median of the classes' "
            "(review their flags)")
    confident = [int(f["id"]) for f in chosen if f.get("confident")]
    first = int(chosen[0]["id"])
    if confident:
        flagged = np.logical_or.reduce([flags[k] for k in confident])
    else:
        flagged = flags[first]

    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_scores(Scores(
        filepaths=[e.relpath for e in result.entries], labels=[e.label or "" for e in result.entries],
        score=scores[first], neurons={}, flagged=flagged, artifact=None, findings=scores, finding_flags=flags,
    ))
    run.write_skipped(skipped)
    summary = {
        "kind": "apply",
        "detector": detector.get("source"),
        "model": loaded.spec,
        "weights_sha256": got,
        "layer": layer,
        "dataset": str(dataset.resolve()),
        "layout": layout,
        "n_images": len(result.entries),
        "n_flagged": int(flagged.sum()),
        "n_skipped": len(skipped),
        "artifact_found": bool(confident),
        "n_confident": int(flagged.sum()) if confident else 0,
        "findings": [{"id": int(f["id"]), "threshold": float(f["threshold"]),
                      "n_flagged": int(flags[int(f["id"])].sum()), "confident": bool(f.get("confident")),
                      "label": f.get("label")} for f in chosen],
        "fiftyone_dataset": None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    run.write_summary(summary)
    return summary
