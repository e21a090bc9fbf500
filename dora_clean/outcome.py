"""What a scan found (:class:`ScanOutcome`), its evaluation against labels, and the run directory written
from it (DESIGN.md, "The run directory"): ``summary.json``, ``neurons.csv``, ``scores.csv``,
``heatmaps.npy``, ``detector.json``, ``skipped.csv``, ``sams/``, the plots and ``report.html``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .analysis import LayerAnalysis
from .errors import DoraError
from .detector import DETECTOR_FORMAT, DETECTOR_VERSION
from .evaluate import auc, neuron_aucs, roc_curves
from .report import plot_atlas, plot_finding, plot_flagged, plot_roc, plot_sams, write_report
from .rundir import NeuronRow, RunDir, Scores
from .scanning import ScanResult, Skipped, load_image
from .scoring import ArtifactScores, Confidence, Finding, layer_pooled

if TYPE_CHECKING:
    from .pipeline import ScanSettings

__all__ = ["FINDING_TOP", "Evaluation", "ScanOutcome", "evaluate_labels", "heatmap_neuron", "write_run"]

#: The report shows this many top images of each finding.
FINDING_TOP = 8


@dataclass
class Evaluation:
    """Step 6: the scan against the artifact labels, per label column (``filepath,artifact`` has one).

    Attributes:
        columns: label column -> {relpath: 0/1}.
        all_auc: label column -> every neuron's AUC [C].
        finding_aucs: finding id -> label column -> the AUC of its score.
        aucs: label column -> summary.json's ``auc_by_label`` entry (infected neurons, "combined", each
            "finding_K", and the layer's "best_neuron" in either direction with its "best_neuron_auc").
    """

    columns: dict[str, dict[str, int]]
    all_auc: dict[str, np.ndarray]
    finding_aucs: dict[int, dict[str, float]]
    aucs: dict[str, dict]

    def label_of(self, finding: int) -> str | None:
        """The label column a finding detects best."""
        aucs = self.finding_aucs.get(finding) or {}
        return max(aucs, key=aucs.get) if aucs else None

    @property
    def first(self) -> str | None:
        """The label column of finding 1: what summary.json's ``auc`` and roc.png use."""
        return self.label_of(1) or next((c for c in self.aucs), None)


def evaluate_labels(labels: dict[str, dict[str, int]], relpaths: list[str], src: np.ndarray, findings: list[Finding],
              infected: Sequence[int], log: Callable[[str], None]) -> Evaluation | None:
    """AUCs of every neuron, the infected ones, the combined score and each finding, per label column."""
    out = Evaluation(labels, {}, {f.id: {} for f in findings}, {})
    for column, given in labels.items():
        rows = np.array([i for i, p in enumerate(relpaths) if p in given], dtype=np.int64)
        y = np.array([given[relpaths[i]] for i in rows])
        name = "" if len(labels) == 1 else f" of {column}"
        if not len(rows) or y.min() == y.max():
            log(f"warning: the labelled images{name} are all of one kind; no ROC/AUC for them")
            continue
        every = neuron_aucs(y, src, rows)
        best = int(np.nanargmax(np.maximum(every, 1 - every)))
        entry: dict = {str(n): float(every[n]) for n in infected}
        entry["combined"] = auc(y, findings[0].score[rows])
        for f in findings:
            entry[f"finding_{f.id}"] = out.finding_aucs[f.id][column] = auc(y, f.score[rows])
        entry["best_neuron"] = best
        entry["best_neuron_auc"] = float(max(every[best], 1 - every[best]))
        out.all_auc[column], out.aucs[column] = every, entry
    return out if out.aucs else None


@dataclass
class ScanOutcome:
    """What one scan found, for the run directory: its input, the analysis, the scan and the scores."""

    dataset: Path
    layout: str  # "classes" or "flat"
    model_spec: str
    fingerprint: str  # the model's weights_hash
    layer: str
    size: int
    mean: Sequence[float]
    std: Sequence[float]
    analysis: LayerAnalysis
    result: ScanResult
    skipped: list[Skipped]
    scores: ArtifactScores
    flagged: np.ndarray  # bool, per scanned image: the confident findings' flags (finding 1's where none is)
    threshold: float | None
    findings: list[Finding]  # ranked; the first is what the single score of old was
    labels: dict[str, dict[str, int]] | None  # label column -> {relpath: 0/1}, where labels were given
    evaluation: Evaluation | None  # where labels were given (of both kinds)
    heatmaps: np.ndarray | None = None  # heatmaps.npy where the scan's maps do not give it
    finding_maps: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # id -> its top rows, maps

    @property
    def relpaths(self) -> list[str]:
        return [e.relpath for e in self.result.entries]

    @property
    def confidence(self) -> Confidence:
        """The first finding's confidence."""
        return self.findings[0].confidence

    @property
    def artifact_labels(self) -> dict[str, int] | None:
        """The labels of the first finding's column: relpath -> 0/1."""
        return None if self.evaluation is None else self.evaluation.columns[self.evaluation.first]

    @property
    def aucs(self) -> dict[str, float]:
        """summary.json's ``auc``: the infected neurons' and the combined score's, on the first finding's column."""
        if self.evaluation is None:
            return {}
        every = self.evaluation.all_auc[self.evaluation.first]
        aucs = {str(n): float(every[n]) for n in self.analysis.neurons}
        return aucs | {"combined": self.evaluation.aucs[self.evaluation.first]["combined"]}

    @property
    def all_auc(self) -> np.ndarray | None:
        """Every neuron's AUC on the first finding's column."""
        return None if self.evaluation is None else self.evaluation.all_auc[self.evaluation.first]

    @property
    def shown(self) -> np.ndarray:
        """The rows of the top images that flagged.png shows, most suspicious first."""
        return np.argsort(-self.scores.score, kind="stable")[: min(16, int(self.flagged.sum()) or 16)]

    @property
    def heatmap_column(self) -> int:
        """The infected neuron whose maps go to heatmaps.npy: one that fires on the artifact (not one it
        silences), one of the combined score's where there is one."""
        infected, orient, combined = self.analysis.infected, self.scores.orient, self.scores.combined
        return next((j for j, (n, o) in enumerate(zip(infected, orient)) if o > 0 and combined.get(int(n), 0) > 0),
                    next((j for j, o in enumerate(orient) if o > 0), 0))


def _neuron_rows(o: ScanOutcome) -> list[NeuronRow]:
    out, dead = o.analysis.outliers, set(o.analysis.outliers.dead)
    return [
        NeuronRow(n, float(out.scores[i]), n in o.analysis.infected, n in dead, float(out.atlas[i, 0]),
                  float(out.atlas[i, 1]), None if o.all_auc is None else float(o.all_auc[n]))
        for i, n in enumerate(o.analysis.neurons)
    ]


def _scores_table(o: ScanOutcome) -> Scores:
    relpaths = o.relpaths
    columns = {c: [given.get(p) for p in relpaths] for c, given in (o.labels or {}).items()}
    any_artifact = None
    if columns:  # with several columns: 1 where any is 1 (None where none is labelled)
        any_artifact = [None if all(c[i] is None for c in columns.values())
                        else max(c[i] or 0 for c in columns.values()) for i in range(len(relpaths))]
    return Scores(
        filepaths=relpaths,
        labels=[e.label or "" for e in o.result.entries],
        score=o.scores.score,
        neurons={int(n): o.scores.per_neuron[:, j] for j, n in enumerate(o.analysis.infected)},
        flagged=o.flagged,
        artifact=any_artifact,
        findings={f.id: f.score for f in o.findings},
        finding_flags={f.id: f.flagged for f in o.findings},
        artifacts=columns if len(columns) > 1 else {},
    )


def _plot_findings(run: RunDir, o: ScanOutcome, findings: list[dict]) -> dict[int, Path]:
    """Each finding's page of the report (:func:`plot_finding`): finding id -> its file."""
    sams_np, index = o.analysis.sams.numpy(), {n: i for i, n in enumerate(o.analysis.neurons)}
    relpaths, out = o.relpaths, {}
    for f, entry in zip(o.findings, findings):
        shown = list(entry["infected_neurons"]) + [n for n in f.neurons if n not in o.analysis.infected]
        sams = [(n, sams_np[index[n], 0].transpose(1, 2, 0)) for n in shown[:6] if n in index]
        rows, maps = o.finding_maps.get(f.id, (np.zeros(0, dtype=np.int64), np.zeros((0, 1, 1))))
        curve = None
        label = entry.get("label")
        if label is not None and o.evaluation is not None:
            rows_l, y = _labelled(relpaths, o.evaluation.columns[label])
            curve = roc_curves(y, {f"finding {f.id} vs {label}": f.score[rows_l]})[0]
        plot_finding(run.finding_plot(f.id), entry, sams, *_thumbnails(o, rows, f.score, maps), f.score, curve)
        out[f.id] = run.finding_plot(f.id)
    return out


def _labelled(relpaths: list[str], given: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The rows that a label column labels, and their labels."""
    rows = np.array([i for i, p in enumerate(relpaths) if p in given], dtype=np.int64)
    return rows, np.array([given[relpaths[i]] for i in rows])


def _thumbnails(o: ScanOutcome, rows: Sequence[int], score: np.ndarray, maps: np.ndarray
                ) -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
    """The images of some rows at the model's side, their titles (score, file name) and heatmaps (``maps``: one
    per row); an image that cannot be read now is left out."""
    imgs, titles, hms = [], [], []
    for j, i in enumerate(rows):
        try:
            imgs.append(load_image(o.dataset / o.relpaths[i], o.size).permute(1, 2, 0).numpy())
        except Exception:
            continue
        titles.append(f"{score[i]:.1f} {Path(o.relpaths[i]).name[:18]}")
        hms.append(np.asarray(maps[j], dtype=np.float32))
    return imgs, titles, hms


def _heatmaps(o: ScanOutcome) -> np.ndarray:
    if o.heatmaps is not None:
        return o.heatmaps
    maps = o.result.maps
    if len(o.analysis.infected) and maps.ndim == 4 and maps.shape[1]:
        return np.asarray(maps[:, o.heatmap_column])
    return np.zeros((len(o.result.entries), 1, 1), np.float16)


def _plot(run: RunDir, o: ScanOutcome, heat: np.ndarray, pooling: str) -> list[Path]:
    """The run's plots; returns their paths."""
    analysis, scores = o.analysis, o.scores
    infected, orient, score, per_neuron = analysis.infected, scores.orient, scores.score, scores.per_neuron
    sams_np = analysis.sams.numpy()
    plot_atlas(run.atlas_plot, analysis.outliers.atlas, analysis.neurons, analysis.outliers.scores, infected,
               analysis.outliers.dead, sams_np, {f.id: list(f.neurons) for f in o.findings})
    plot_sams(run.sams_plot, sams_np, analysis.neurons, infected)
    plots = [run.atlas_plot, run.sams_plot]
    relpaths = o.relpaths
    if o.aucs:
        rows_l, y = _labelled(relpaths, o.artifact_labels)
        named = {"combined": score[rows_l]}
        for j, n in enumerate(infected[:5]):
            flipped = orient[j] < 0
            named[f"infected neuron {n}" + (" (silenced by the artifact)" if flipped else "")] = \
                per_neuron[rows_l, j] * orient[j]
        best = int(np.nanargmax(o.all_auc))
        if best not in infected:
            src = layer_pooled(o.result.mean_act, o.result.max_act, pooling)
            named[f"best neuron {best} (oracle)"] = np.asarray(src[:, best])[rows_l]
        curves = roc_curves(y, {(f"{k} vs {o.evaluation.first}" if len(o.evaluation.aucs) > 1 else k): v
                                for k, v in named.items()})
        for column in o.evaluation.aucs:  # with several label columns: each one's best finding against it
            best_finding = max(o.findings, key=lambda f: o.evaluation.finding_aucs[f.id].get(column) or 0)
            if column != o.evaluation.first:
                rows_c, y_c = _labelled(relpaths, o.evaluation.columns[column])
                curves += roc_curves(y_c, {f"finding {best_finding.id} vs {column}": best_finding.score[rows_c]})
        plot_roc(run.roc_plot, curves)
        plots.append(run.roc_plot)
    imgs, titles, hms = _thumbnails(o, o.shown, score, heat[o.shown])
    if imgs:
        plot_flagged(run.flagged_plot, imgs, titles, hms)
        plots.append(run.flagged_plot)
    return plots


def _summary(o: ScanOutcome, s: ScanSettings, timings: dict[str, float], old: dict) -> dict:
    analysis, scores = o.analysis, o.scores
    infected, orient, combined = analysis.infected, scores.orient, scores.combined
    summary = {
        "model": o.model_spec,
        "layer": o.layer,
        "n_neurons": len(analysis.neurons),
        "infected_neurons": [int(n) for n in infected],
        "dead_neurons": [int(n) for n in analysis.outliers.dead],
        "n_images": len(o.result.entries),
        "n_flagged": int(o.flagged.sum()),
        "artifact_found": any(f.confident for f in o.findings),
        "n_confident": int(o.flagged.sum()) if any(f.confident for f in o.findings) else 0,
        "confidence": o.confidence.to_json(),
        "findings": _findings_json(o),
        "n_skipped": len(o.skipped),
        "fiftyone_dataset": old.get("fiftyone_dataset") if s.fiftyone else None,
        "atlas_dataset": old.get("atlas_dataset") if s.fiftyone else None,
        "timings": timings,
        "dataset": str(o.dataset.resolve()),
        "layout": o.layout,
        "image_size": o.size,
        "mean": list(o.mean),
        "std": list(o.std),
        "score_threshold": None if o.threshold is None else float(o.threshold),
        "flagging": "top" if s.flag_top else ("threshold" if s.threshold is not None else "otsu"),
        "infected_orientation": {str(n): int(d) for n, d in zip(infected, orient)},
        "combined_neurons": list(combined),
        "combined_orientation": {str(n): d for n, d in combined.items()},
        "combined_seed": scores.seed,
        "separation": round(scores.separation, 4),
        "structure": round(o.findings[0].candidate.structure, 4) if o.findings else None,
        "contest": scores.ranked_by,  # "structure" where the first winner's split was a bell curve's
        "agreement": s.agreement,
        "recruit": s.recruit,
        "class_folders": scores.class_lambda is not None,  # used: on, and two class folders or more
        "class_centred": scores.class_centres is not None,  # scored on activations centred within the class folders
        "class_content": scores.class_content,
        "class_lambda": scores.class_lambda,
        "heatmap_neuron": int(infected[o.heatmap_column]) if infected else None,
        "pooling": s.pooling,
        "outlier_method": analysis.outliers.method,
        "representation": s.representation,
        "sams": analysis.config.key_fields(),
    }
    if o.labels:
        summary["label_columns"] = list(o.labels)
    if o.evaluation is not None:
        summary["auc_by_label"] = o.evaluation.aucs
    if o.aucs:
        summary["auc"] = o.aucs
        # each infected neuron in the direction the combined score uses it
        summary["best_infected_auc"] = (
            max(o.aucs[str(n)] if d > 0 else 1 - o.aucs[str(n)] for n, d in zip(infected, orient)) if infected else None
        )
    return summary


def _findings_json(o: ScanOutcome) -> list[dict]:
    """summary.json's ``findings``."""
    out = []
    for f in o.findings:
        entry = f.to_json(o.analysis.infected)
        entry["heatmap_neuron"] = heatmap_neuron(o, f)
        if o.evaluation is not None:
            entry["label"] = o.evaluation.label_of(f.id)
            entry["auc"] = o.evaluation.finding_aucs[f.id]
        out.append(entry)
    return out


def heatmap_neuron(o: ScanOutcome, f: Finding) -> int | None:
    """The neuron whose maps show where a finding's artifact is: an infected one of its neurons that fires on
    it, else any of its that fires on it, else its first."""
    infected = [n for n in o.analysis.infected if f.neurons.get(int(n), 0) > 0]
    firing = [n for n, d in f.neurons.items() if d > 0]
    return int((infected or firing or list(f.neurons) or [None])[0]) if f.neurons else None


def _detector(o: ScanOutcome, s: ScanSettings) -> dict:
    """detector.json: what ``dora-clean apply`` needs to score new images as this scan scored its own."""
    return {
        "format": DETECTOR_FORMAT, "version": DETECTOR_VERSION,
        "model": o.model_spec, "weights": str(Path(s.weights).resolve()) if s.weights else None,
        "weights_sha256": o.fingerprint, "layer": o.layer,
        "pooling": s.pooling, "prefix_tokens": s.prefix_tokens, "image_size": o.size,
        "mean": list(o.mean), "std": list(o.std),
        "findings": [f.detector() | {"label": None if o.evaluation is None else o.evaluation.label_of(f.id)}
                     for f in o.findings],
    }


def _previous_summary(run: RunDir) -> dict:
    """An earlier run's summary in the same folder (its FiftyOne dataset names are kept); {} if none."""
    if not run.summary_path.is_file():
        return {}
    try:
        return run.read_summary()
    except DoraError:
        return {}


def write_run(run: RunDir, o: ScanOutcome, s: ScanSettings, timings: dict[str, float]) -> dict:
    """Write the run directory of a scan (DESIGN.md, "The run directory"); returns the summary."""
    run.create()
    run.copy_sams(o.analysis.sams_dir, o.analysis.neurons, o.analysis.config.n_signals)
    neurons = _neuron_rows(o)
    run.write_neurons(neurons)
    run.write_scores(_scores_table(o))
    heat = _heatmaps(o)
    run.write_heatmaps(heat)
    run.write_skipped(o.skipped)
    plots = _plot(run, o, heat, s.pooling)
    summary = _summary(o, s, timings, _previous_summary(run))
    finding_plots = _plot_findings(run, o, summary["findings"])
    for stale in run.path.glob("finding_*.png"):  # of a finding an earlier scan here had
        if stale not in finding_plots.values():
            stale.unlink()
    run.write_detector(_detector(o, s))
    run.write_summary(summary)
    write_report(run, summary, neurons, plots, finding_plots)
    return summary
