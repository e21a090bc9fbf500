"""The findings benchmark (issue 20): two artifacts in one dataset must come out as two separate findings.

Each two-artifact family (``families.TWO_ARTIFACT_FAMILIES``: a background,
content, two artifacts and an architecture) gets a model trained with each
artifact a shortcut for its own class (cached), and a scan set in which each
artifact lies on about 10% of all classes' images, independently of the
other, labelled in a column of its own (``labels.csv``:
``filepath,<artifact 1>,<artifact 2>``; cached). The whole pipeline
(``dora_clean.pipeline.scan_dataset``, at the architecture's last default
layer) scans it with those labels; one row per (family, label column):

- match: the finding whose AUC on that column is highest (summary.json's
  ``auc_by_label``), its AUC, whether it is confident, how many images it
  flags and their precision and recall against the column (scores.csv's
  ``flagged_K``);
- best: the layer's best single neuron as a detector of that column (either
  direction, as the families benchmark's oracle: ``auc_by_label``'s
  ``best_neuron_auc``);
- the goal: the matched finding's AUC >= max(0.95, best - 0.02), and the two
  columns of a family matched by two different findings (``sep``);
- under each family, what the default export removes without review (every
  confident finding's flags) and how much of it carries either artifact: the
  families benchmark's ``export`` goal (precision >= 0.9, or nothing removed).

Which families are dev (the method's choices may look at them) and which are
held out (reported, never chosen on) follows ``families.SPLIT``: a family is
held out when any of its kinds is, either artifact included. The families
were fixed before any result was seen.

    python benchmarks/findings_benchmark.py --quick          # one dev and one held-out family
    python benchmarks/findings_benchmark.py                  # every two-artifact family
    python benchmarks/findings_benchmark.py --split dev --runs /tmp/findings-runs   # keep the run directories
    python benchmarks/findings_benchmark.py --pooling auto   # scanned with --pooling auto
    python benchmarks/findings_benchmark.py --fresh          # the fresh held-out families (2 Dec 2026)
    python benchmarks/findings_benchmark.py --fresh 2        # the second fresh batch (a ninth session)
    python benchmarks/findings_benchmark.py --fresh 3        # the third (a ninth session, later)
    python benchmarks/findings_benchmark.py --fresh 4        # the fourth (a tenth session)
    python benchmarks/findings_benchmark.py --fresh 5        # the fifth (a tenth session, later)
    python benchmarks/findings_benchmark.py --every-batch --off class_rule   # all 19 families, a piece off
    python benchmarks/findings_benchmark.py --split dev --set CLASS_LAMBDA=0.7   # a scoring constant changed

Training takes one to three minutes a model on 2 cores, the s-AMS about a
minute; both and the scan sets are cached (``$DORA_CLEAN_CACHE``).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dora_clean.evaluate import auc, neuron_aucs
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD, LayerModel, weights_hash
from dora_clean.pipeline import DEFAULT_POOLING, ScanSettings, scan_dataset
from dora_clean.rundir import RunDir
from dora_clean.scoring import PIECES
from dora_clean.scanning import list_images
from dora_clean.scanning.activations import ScanOptions, scan_images, scan_key
from dora_clean.analysis.sams import cache_root
from families_benchmark import CONSTANTS, RULES, parse_constants, rules_off, scoring_constants
from families import (FRESH_TWO_ARTIFACT_2_FAMILIES, FRESH_TWO_ARTIFACT_3_FAMILIES, FRESH_TWO_ARTIFACT_4_FAMILIES,
                      FRESH_TWO_ARTIFACT_5_FAMILIES, FRESH_TWO_ARTIFACT_FAMILIES, TWO_ARTIFACT_FAMILIES,
                      TwoArtifactFamily, default_layers, load_two_artifact_model, write_two_artifact_scan_set)


#: The two-artifact families by batch: None the first (dev and held out), 1-5 the fresh held-out batches.
BATCHES = {None: TWO_ARTIFACT_FAMILIES, 1: FRESH_TWO_ARTIFACT_FAMILIES, 2: FRESH_TWO_ARTIFACT_2_FAMILIES,
           3: FRESH_TWO_ARTIFACT_3_FAMILIES, 4: FRESH_TWO_ARTIFACT_4_FAMILIES, 5: FRESH_TWO_ARTIFACT_5_FAMILIES}


@contextlib.contextmanager
def switched_off(names: set[str]):
    """Scan with pieces (``dora_clean.scoring.PIECES``) and rules (``families_benchmark.RULES``) switched off,
    as the families benchmark's ablation does; ``peak`` is the pooling, which the caller sets."""
    import dora_clean.pipeline as pipeline

    settings = pipeline.ScoringSettings
    pipeline.ScoringSettings = functools.partial(settings, off=frozenset(names & set(PIECES)))
    try:
        with rules_off(names & set(RULES)):
            yield
    finally:
        pipeline.ScoringSettings = settings


def _labels(root: Path) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The scan set's label columns and, per column, relpath -> 0/1."""
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c != "filepath"]
    return columns, {c: {r["filepath"]: int(r[c]) for r in rows} for c in columns}


def layer_best(model, layer: str, root: Path, y: dict[str, np.ndarray]) -> dict[str, float]:
    """The layer's best single neuron for each label column (AUC in either direction, mean pooling)."""
    entries, _, _ = list_images(root)
    options = ScanOptions(64, IMAGENET_MEAN, IMAGENET_STD, progress=False)
    key = scan_key(weights_hash(model), layer, root, entries, options)
    res = scan_images(LayerModel(model, layer), root, entries, cache_root() / "scans" / key, options)
    order = {e.relpath: i for i, e in enumerate(res.entries)}
    act = np.asarray(res.mean_act)
    out = {}
    for column, labels in y.items():
        rows = np.array([order[p] for p in labels])
        raw = neuron_aucs(np.array(list(labels.values())), act[rows])
        out[column] = float(np.nanmax(np.maximum(raw, 1 - raw)))
    return out


def _precision_recall(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    tp = int((flagged & (y == 1)).sum())
    return (tp / flagged.sum() if flagged.any() else float("nan")), (tp / (y == 1).sum() if y.any() else float("nan"))


def removed(flags: list[np.ndarray], any_artifact: np.ndarray) -> tuple[int, float]:
    """What the default export removes without review (the union of the confident findings' ``flags``), and
    its precision against ``any_artifact`` (0/1 per image; nan where nothing is removed)."""
    out = np.logical_or.reduce(flags) if flags else np.zeros(len(any_artifact), dtype=bool)
    return int(out.sum()), _precision_recall(any_artifact, out)[0]


def run_family(family: TwoArtifactFamily, n_scan: int, fraction: float, out: Path,
               pooling: str = DEFAULT_POOLING) -> list[dict]:
    """Train (cached), write the scan set (cached), scan it with the pipeline (``pooling``: the scan's ``--pooling``);
    one dict per label column."""
    model, metrics = load_two_artifact_model(family)
    root = write_two_artifact_scan_set(family, n_scan, fraction)
    layer = default_layers(family.arch)[0]
    scan_dataset(root, ScanSettings(model=model, layer=layer, labels=str(root / "labels.csv"), out=str(out),
                                    image_size=64, fiftyone=False, progress=False, device="cpu", pooling=pooling))
    summary = json.loads((out / "summary.json").read_text())
    scores = RunDir(out).read_scores()
    columns, labels = _labels(root)
    findings = {int(f["id"]): f for f in summary.get("findings", [])}
    by_label = summary.get("auc_by_label", {})
    y = {c: np.array([labels[c][p] for p in scores.filepaths]) for c in columns}
    best = {c: by_label[c]["best_neuron_auc"] for c in columns if "best_neuron_auc" in by_label.get(c, {})}
    if len(best) < len(columns):  # a summary without it: from the scan's activations
        best = layer_best(model, layer, root, {c: {p: labels[c][p] for p in scores.filepaths} for c in columns})
    n_removed, removed_precision = removed([scores.flags_of(k) for k, f in findings.items() if f["confident"]],
                                           np.logical_or.reduce([y[c] == 1 for c in columns]))
    rows = []
    for c in columns:
        aucs = {}
        for k, f in findings.items():  # the summary's AUC of each finding on the column; else from scores.csv
            a = by_label.get(c, {}).get(f"finding_{k}", (f.get("auc") or {}).get(c))
            if a is None and k in scores.findings:
                a = auc(y[c], scores.findings[k])
            aucs[k] = float("nan") if a is None else float(a)
        k = max(aucs, key=lambda i: -np.inf if np.isnan(aucs[i]) else aucs[i]) if aucs else None
        flagged = scores.flags_of(k) if k is not None else np.zeros(len(y[c]), dtype=bool)
        p, r = _precision_recall(y[c], flagged)
        a = aucs.get(k, float("nan")) if k is not None else float("nan")
        rows.append({"family": family, "layer": layer, "column": c, "reliance": metrics["reliance"][c],
                     "finding": k, "auc": a, "best": best[c], "met": bool(a >= max(0.95, best[c] - 0.02)),
                     "confident": bool(findings[k]["confident"]) if k is not None else False,
                     "n_flagged": int(flagged.sum()), "precision": p, "recall": r, "n_findings": len(findings),
                     "n_positive": int(y[c].sum()), "removed": n_removed, "removed_precision": removed_precision})
    return rows


def run(families: list[TwoArtifactFamily], n_scan: int, fraction: float, runs: Path,
        pooling: str = DEFAULT_POOLING) -> dict[str, list[int]]:
    """Print one row per (family, label column), each scanned with ``pooling``, and what the default export
    removes; returns, per split, [rows, rows meeting the AUC goal, families, families with both columns met by
    two different findings, families where the export removes nothing or at precision >= 0.9]."""
    head = (f"{'split':<8} {'family':<44} {'column':<10} {'rel':>4} {'#pos':>4} | {'find':>4} {'auc':>5} {'best':>5} "
            f"{'goal':>4} {'conf':>4} {'#flag':>5} {'prec':>4} {'rec':>4} | {'#F':>2} {'sep':>3}")
    print(head)
    print("-" * len(head))
    tally: dict[str, list[int]] = {}
    for family in families:
        t = time.perf_counter()
        rows = run_family(family, n_scan, fraction, runs / family.name.replace("/", "_"), pooling)
        matched = [r["finding"] for r in rows]
        separate = None not in matched and len(set(matched)) == len(matched)
        t_ = tally.setdefault(family.split, [0, 0, 0, 0, 0])
        t_[2] += 1
        t_[3] += separate and all(r["met"] for r in rows)
        export = rows[0]["removed"] == 0 or rows[0]["removed_precision"] >= 0.9
        t_[4] += export
        for r in rows:
            t_[0] += 1
            t_[1] += r["met"]
            print(f"{family.split:<8} {family.name:<44} {r['column']:<10} {r['reliance']:4.2f} {r['n_positive']:4d} | "
                  f"{r['finding'] if r['finding'] is not None else '-':>4} {r['auc']:5.3f} {r['best']:5.3f} "
                  f"{'met' if r['met'] else 'MISS':>4} {'yes' if r['confident'] else 'no':>4} {r['n_flagged']:5d} "
                  f"{r['precision']:4.2f} {r['recall']:4.2f} | {r['n_findings']:2d} {'yes' if separate else 'NO':>3}",
                  flush=True)
        print(f"{'':<8} {'':<44} export: removes {rows[0]['removed']} images without review"
              + (f", {rows[0]['removed_precision']:.3f} of them with an artifact" if rows[0]["removed"] else "")
              + ("" if export else " (MISS: below 0.9)"), flush=True)
        print(f"  ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    for split, (n, ok, nf, sep, exported) in sorted(tally.items()):
        print(f"{split}: {ok} of {n} rows meet the goal; {sep} of {nf} families have both artifacts as separate "
              f"findings that meet it; the default export holds (removes nothing, or at precision >= 0.9) in "
              f"{exported} of {nf}")
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "held-out", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="one dev and one held-out family")
    ap.add_argument("--family", action="append", help="only families whose name contains this")
    ap.add_argument("--images", type=int, default=1000, help="scan-set size")
    ap.add_argument("--fraction", type=float, default=0.10, help="each artifact's share of the scan set")
    ap.add_argument("--runs", type=Path, help="keep the run directories here (default: a temporary folder)")
    ap.add_argument("--fresh", type=int, nargs="*", choices=[k for k in BATCHES if k],
                    help="fresh batches of held-out families: 1 (FRESH_TWO_ARTIFACT_FAMILIES, the default) to 5")
    ap.add_argument("--every-batch", action="store_true", help="the first families and every fresh batch")
    ap.add_argument("--pooling", choices=["mean", "max", "auto"], default=DEFAULT_POOLING, help="the scan's --pooling")
    ap.add_argument("--off", action="append", default=[], choices=[*PIECES, *RULES],
                    help="a piece or rule of the scan off, as families_benchmark.py --ablation switches it; repeatable")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help=f"a scoring constant changed, as families_benchmark.py --set (one of {', '.join(CONSTANTS)})")
    args = ap.parse_args()
    changed = parse_constants(args.set, ap)
    batches = list(BATCHES) if args.every_batch else [None] if args.fresh is None else args.fresh or [1]
    families = [f for k in batches for f in BATCHES[k] if args.split in ("all", f.split)]
    if args.quick:
        families = [f for f in families if f.split == "dev"][:1] + [f for f in families if f.split == "held-out"][:1]
    if args.family:
        families = [f for f in families if any(s in f.name for s in args.family)]
    pooling = "mean" if "peak" in args.off else args.pooling
    runs = contextlib.nullcontext(args.runs) if args.runs else tempfile.TemporaryDirectory(prefix="findings-runs-")
    with scoring_constants(changed), switched_off(set(args.off)), runs as out:
        run(families, args.images, args.fraction, Path(out), pooling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
