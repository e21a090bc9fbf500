"""Plots of a run and the single ``report.html`` that shows them together."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_save, atomic_write
from .evaluate import Curve
from .rundir import NeuronRow, RunDir

__all__ = ["FINDING_COLOURS", "plot_atlas", "plot_finding", "plot_flagged", "plot_roc", "plot_sams", "write_report"]

#: The colour of each finding (by id, cycling) in the atlas and the report.
FINDING_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    atomic_save(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    _plt().close(fig)


def plot_atlas(
    path: Path, atlas: np.ndarray, neurons: Sequence[int], scores: np.ndarray, infected: Sequence[int],
    dead: Sequence[int], sams: np.ndarray | None = None, findings: dict[int, Sequence[int]] | None = None,
) -> None:
    """The representation atlas: a 2-D UMAP of the EA distance, infected neurons marked, their s-AMS beside;
    each finding's neurons (``findings``: id -> neurons) in its colour (:data:`FINDING_COLOURS`)."""
    plt = _plt()
    n_inf = len(infected)
    fig = plt.figure(figsize=(7 + (2.2 if n_inf and sams is not None else 0), 6))
    ax = fig.add_axes([0.07, 0.08, 0.62 if n_inf and sams is not None else 0.88, 0.84])
    index = {n: i for i, n in enumerate(neurons)}
    live = [i for i, n in enumerate(neurons) if n not in set(dead)]
    sc = ax.scatter(atlas[live, 0], atlas[live, 1], c=np.nan_to_num(scores[live]), cmap="viridis", s=28)
    fig.colorbar(sc, ax=ax, label="outlier score", shrink=0.7)
    dead_i = [index[n] for n in dead if n in index]
    if dead_i:
        ax.scatter(atlas[dead_i, 0], atlas[dead_i, 1], marker="x", c="grey", s=30, label="dead")
    for k, members in sorted((findings or {}).items(), reverse=True):  # finding 1 drawn last, on top
        at = [index[n] for n in members if n in index]
        ax.scatter(atlas[at, 0], atlas[at, 1], s=70, marker="s", facecolors="none", linewidths=1.5,
                   edgecolors=FINDING_COLOURS[(k - 1) % len(FINDING_COLOURS)], label=f"finding {k}")
    for rank, n in enumerate(infected):
        i = index[n]
        ax.scatter(atlas[i, 0], atlas[i, 1], s=160, facecolors="none", edgecolors="red", linewidths=2)
        ax.annotate(str(n), atlas[i], xytext=(5, 5), textcoords="offset points", color="red", weight="bold")
    ax.set_title("Representation atlas (UMAP of EA distance); red circles: infected")
    ax.set_xticks([])
    ax.set_yticks([])
    if dead_i or findings:
        ax.legend(loc="lower right", fontsize=8)
    if n_inf and sams is not None:
        for r, n in enumerate(infected[:6]):
            a = fig.add_axes([0.78, 0.92 - (r + 1) * 0.14, 0.13, 0.13])
            a.imshow(sams[index[n], 0].transpose(1, 2, 0))
            a.set_title(f"neuron {n}", fontsize=8, color="red")
            a.axis("off")
    _save(fig, path)


def plot_sams(path: Path, sams: np.ndarray, neurons: Sequence[int], show: Sequence[int]) -> None:
    """The s-AMS of some neurons: one row a neuron."""
    plt = _plt()
    index = {n: i for i, n in enumerate(neurons)}
    show = [n for n in show if n in index] or list(neurons[:1])
    n_sig = sams.shape[1]
    fig, axes = plt.subplots(len(show), n_sig, figsize=(1.6 * n_sig, 1.6 * len(show)), squeeze=False)
    for r, n in enumerate(show):
        for j in range(n_sig):
            axes[r, j].imshow(sams[index[n], j].transpose(1, 2, 0))
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
        axes[r, 0].set_ylabel(f"neuron {n}")
    fig.suptitle("s-AMS of the infected neurons")
    _save(fig, path)


def plot_roc(path: Path, curves: Sequence[Curve]) -> None:
    """ROC curves (the combined score's and the findings' bold)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in curves:
        bold = c.name.startswith(("combined", "finding"))
        ax.plot(c.fpr, c.tpr, label=f"{c.name} (AUC {c.auc:.3f})", lw=2 if bold else 1.2)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Infected neurons as artifact detectors")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _overlay(ax, img: np.ndarray, heatmap: np.ndarray | None, title: str) -> None:
    """An image with a heatmap stretched over it, and a title."""
    ax.imshow(img)
    if heatmap is not None and heatmap.size:
        ax.imshow(heatmap, cmap="jet", alpha=0.35, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5),
                  interpolation="bilinear")
    ax.set_title(title, fontsize=7)


def plot_flagged(path: Path, images: Sequence[np.ndarray], titles: Sequence[str], heatmaps: Sequence[np.ndarray]) -> None:
    """A grid of the top flagged images with where the top infected neuron fires."""
    plt = _plt()
    n = max(1, len(images))
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title, hm in zip(axes.flat, images, titles, heatmaps):
        _overlay(ax, img, hm, title)
    fig.suptitle("Most suspicious images (heatmap: top infected neuron)")
    _save(fig, path)


def plot_finding(
    path: Path, finding: dict, sams: Sequence[tuple[int, np.ndarray]], images: Sequence[np.ndarray],
    titles: Sequence[str], heatmaps: Sequence[np.ndarray], score: np.ndarray, curve: Curve | None = None,
) -> None:
    """One finding on one page: the s-AMS of some of its neurons (``sams``: (neuron, HxWx3) pairs), its top
    images with the maps of its heatmap neuron, the histogram of its score with its threshold, and its ROC
    (``curve``, against the label column it detects best, where labels were given)."""
    plt = _plt()
    cols = max(4, len(sams), len(images))
    fig = plt.figure(figsize=(1.7 * cols, 7.2))
    grid = fig.add_gridspec(3, cols, height_ratios=[1, 1, 1.6], hspace=0.45)
    colour = FINDING_COLOURS[(finding["id"] - 1) % len(FINDING_COLOURS)]
    for j, (n, img) in enumerate(sams):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(img)
        ax.set_title(f"neuron {n}", fontsize=8)
        ax.axis("off")
    for j, (img, title, hm) in enumerate(zip(images, titles, heatmaps)):
        ax = fig.add_subplot(grid[1, j])
        _overlay(ax, img, hm, title)
        ax.axis("off")
    half = cols // 2
    ax = fig.add_subplot(grid[2, :half] if curve is not None else grid[2, :])
    score = np.asarray(score, dtype=np.float64)
    ax.hist(score[np.isfinite(score)], bins=60, color=colour, alpha=0.8)
    ax.axvline(finding["threshold"], color="black", ls="--", lw=1, label=f"threshold {finding['threshold']:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel(f"finding {finding['id']} score")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    if curve is not None:
        ax = fig.add_subplot(grid[2, half:])
        ax.plot(curve.fpr, curve.tpr, color=colour, lw=2, label=f"{curve.name} (AUC {curve.auc:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    verdict = "confident" if finding["confident"] else "not confident"
    fig.suptitle(f"Finding {finding['id']}: {len(finding['neurons'])} neurons, {finding['n_flagged']} flagged, "
                 f"{verdict} (top: its s-AMS; middle: its top images)", color=colour)
    _save(fig, path)


def _finding_section(run: RunDir, f: dict, plot: Path | None) -> str:
    """The report's section of one finding."""
    esc = html.escape
    c = f.get("confidence") or {}
    facts = [
        ("confident", "yes" if f["confident"] else "no: " + "; ".join(c.get("reasons", []))),
        ("neurons", f"{len(f['neurons'])} (infected: {', '.join(map(str, f.get('infected_neurons', []))) or 'none'};"
                    f" seed {f.get('seed')})"),
        ("images flagged", f["n_flagged"]), ("threshold", f"{f['threshold']:.3f}"),
        ("neurons that reproduce its flags", c.get("reproducing_neurons")),
        ("class association", "-" if c.get("class_association") is None else f"{c['class_association']:.2f}"),
    ]
    if f.get("auc"):
        facts.append(("AUC", ", ".join(f"{k} {v:.3f}" for k, v in f["auc"].items() if v is not None)
                      + (f" (detects {f['label']} best)" if f.get("label") else "")))
    rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    img = "" if plot is None else (f'<figure><img src="{esc(plot.relative_to(run.path).as_posix())}" '
                                   f'alt="finding {f["id"]}"></figure>')
    return (f'<h3 style="color:{FINDING_COLOURS[(f["id"] - 1) % len(FINDING_COLOURS)]}">Finding {f["id"]}</h3>'
            f"<table>{rows}</table>{img}")


def write_report(run: RunDir, summary: dict, neurons: Sequence[NeuronRow], plots: Sequence[Path],
                 finding_plots: dict[int, Path] | None = None) -> Path:
    """The run's ``report.html``: the summary, a section per finding (with its plot: ``finding_plots``, id ->
    file of the run), the infected neurons, and the plots (files of the run)."""
    esc = html.escape
    infected = summary.get("infected_neurons", [])
    auc = summary.get("auc") or {}
    rows = sorted(neurons, key=lambda r: -(r.outlier_score if r.outlier_score == r.outlier_score else -1e9))
    table = "".join(
        "<tr{}><td>{}</td><td>{:.3f}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            ' class="inf"' if r.infected else "",
            r.neuron,
            r.outlier_score if r.outlier_score == r.outlier_score else float("nan"),
            "yes" if r.infected else "",
            "dead" if r.dead else "",
            f"{r.auc:.3f}" if r.auc is not None else "",
        )
        for r in rows[:20]
    )
    facts = [
        ("model", summary.get("model")), ("layer", summary.get("layer")), ("neurons", summary.get("n_neurons")),
        ("infected neurons", ", ".join(map(str, infected)) or "none"),
        ("dead neurons", len(summary.get("dead_neurons", []))),
        ("images scanned", summary.get("n_images")), ("images skipped", summary.get("n_skipped")),
        ("images flagged", summary.get("n_flagged")),
    ]
    if "confidence" in summary:
        c = summary["confidence"]
        facts.append(("artifact found", "yes: confident" if summary.get("artifact_found") else
                      "no artifact dora-clean trusts: " + "; ".join(c.get("reasons", []))))
        facts.append(("neurons that reproduce the flags", c.get("reproducing_neurons")))
    if "combined_neurons" in summary:
        split = f"separation {summary.get('separation')}"
        if summary.get("structure") is not None:  # runs made before 1 Dec 2026 lack it (and contest)
            split += f", structure {summary['structure']}"
        if summary.get("contest") == "structure":
            split += " (the seeds ranked by structure: the first winner's split was a bell curve's)"
        facts.append(("combined score", f"{len(summary['combined_neurons'])} neurons, seed "
                                        f"{summary.get('combined_seed')}, {split}"))
    if summary.get("class_content"):
        facts.append(("set aside as class content", ", ".join(
            f"{seed} (lambda {lam:.2f})" for seed, lam in summary["class_content"].items())))
    if auc:
        facts += [("combined AUC", f"{auc.get('combined', float('nan')):.3f}"),
                  ("best infected AUC", f"{summary.get('best_infected_auc', float('nan')):.3f}")]
    facts.append(("FiftyOne dataset", summary.get("fiftyone_dataset") or "-"))
    facts_html = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    sections = "".join(_finding_section(run, f, (finding_plots or {}).get(f["id"]))
                       for f in summary.get("findings", []))
    names = [Path(p).relative_to(run.path).as_posix() for p in plots]
    imgs = "".join(f'<figure><img src="{esc(p)}" alt="{esc(p)}"></figure>' for p in names)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dora-clean report: {esc(str(summary.get('dataset', '')))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 2px 10px; text-align: left; }}
tr.inf {{ color: #b00; font-weight: bold; }} figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 640px; border: 1px solid #ddd; }}
</style></head><body>
<h1>dora-clean report</h1>
<p>Dataset <code>{esc(str(summary.get('dataset', '')))}</code>.</p>
<table>{facts_html}</table>
<h2>Findings</h2>{sections or "<p>none</p>"}
<h2>Plots</h2>{imgs}
<h2>Most anomalous neurons</h2>
<table><tr><th>neuron</th><th>outlier score</th><th>infected</th><th></th><th>AUC</th></tr>{table}</table>
<details><summary>summary.json</summary><pre>{esc(json.dumps(summary, indent=1))}</pre></details>
</body></html>
"""
    with atomic_write(run.report_path, encoding="utf-8") as f:
        f.write(page)
    return run.report_path
