"""The families benchmark: dora-clean's defaults on families of planted tasks, dev and held out.

Each family (``families.py``: a background, content, artifact and architecture)
gets a model trained on its planted task (cached), a scan set with the
artifact spread over all classes at each prevalence (cached), and one row per
(family, layer, prevalence), with the goals of the method issue:

- inf: the infected set holds a neuron within 0.02 AUC of the layer's best;
- comb: the combined AUC >= max(0.95, layer's best - 0.01), and not more than
  0.02 below the best infected neuron's;
- P/R: min(precision, recall) of the label-free flags within 0.05 of the
  layer's limit (the best neuron's break-even, where precision = recall);
- export: what the default export removes (the flags) has precision >= 0.9,
  or nothing is flagged.

    python benchmarks/families_benchmark.py --quick             # 4 dev + 4 held-out families, last layer, 5% and 20%
    python benchmarks/families_benchmark.py --split held-out    # every held-out family

Training takes about a minute a 4-class model on 2 cores, the s-AMS about as
long a layer; everything is cached (``$DORA_CLEAN_CACHE``).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dora_clean.analysis import AnalysisOptions, OutlierSettings, analyse_layer
from dora_clean.analysis.sams import SamsConfig, cache_root
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD, LayerModel, weights_hash
from dora_clean.scanning import list_images
from dora_clean.scanning.activations import ScanOptions, scan_images, scan_key
from families import FAMILIES, Family, default_layers, load_family_model, write_family_scan_set
from planted_benchmark import Case, baselines, evaluate


def prepare(family: Family, layer: str, fraction: float, n_scan: int, clean_model: bool = False) -> Case:
    """Train (cached) the family's model, write (cached) its scan set, analyse ``layer`` and scan."""
    model, metrics = load_family_model(family, learned=not clean_model)
    root = write_family_scan_set(family, n_scan, fraction)
    labels = dict((p, int(a)) for p, a in (line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:]))
    entries, _, _ = list_images(root)
    analysis = analyse_layer(model, layer, config=SamsConfig(), outliers=OutlierSettings(),
                             options=AnalysisOptions(device="cpu", progress=False))
    options = ScanOptions(64, IMAGENET_MEAN, IMAGENET_STD, progress=False)
    key = scan_key(weights_hash(model), layer, root, entries, options)
    res = scan_images(LayerModel(model, layer), root, entries, cache_root() / "scans" / key, options)
    relpaths = [e.relpath for e in res.entries]
    return Case(family.arch, family.artifact, analysis, np.asarray(res.mean_act), np.asarray(res.max_act),
                np.array([labels[p] for p in relpaths]), relpaths, root, [e.label for e in res.entries],
                float(metrics["reliance"]))


def goals(e: dict) -> list[str]:
    """The method issue's goals this row misses (empty: all met)."""
    miss = []
    if e["best_inf_auc"] < e["oracle_auc"] - 0.02:
        miss.append("inf")
    if e["combined_auc"] < max(0.95, e["oracle_auc"] - 0.01) or e["combined_auc"] < e["best_inf_auc"] - 0.02:
        miss.append("comb")
    if min(e["precision"], e["recall"]) < e["break_even"] - 0.05:
        miss.append("P/R")
    if e["n_flagged"] and e["precision"] < 0.9:
        miss.append("export")
    return miss


def run(families: list[Family], layers: int, fractions: list[float], n_scan: int) -> dict[str, list[int]]:
    """Print one row per (family, layer, prevalence); returns, per split, [rows, rows meeting every goal]."""
    head = (f"{'family':<42} {'split':<8} {'layer':<10} {'prev':>4} {'rel':>4} {'oracle':>6} {'BE':>4} | {'inf':>5} "
            f"{'comb':>5} {'prec':>4} {'rec':>4} {'#flag':>5} | {'iforest':>7} {'lof':>5} | goals missed")
    print(head)
    print("-" * len(head))
    tally: dict[str, list[int]] = {}
    for family in families:
        for layer in default_layers(family.arch)[:layers]:
            for fraction in fractions:
                t = time.perf_counter()
                case = prepare(family, layer, fraction, n_scan)
                e = evaluate(case)
                b = baselines(case, with_uniqueness=False)
                miss = goals(e)
                row = tally.setdefault(family.split, [0, 0])
                row[0] += 1
                row[1] += not miss
                print(f"{family.name:<42} {family.split:<8} {layer:<10} {fraction:4.0%} {case.reliance:4.2f} "
                      f"{e['oracle_auc']:6.3f} {e['break_even']:4.2f} | {e['best_inf_auc']:5.3f} {e['combined_auc']:5.3f} "
                      f"{e['precision']:4.2f} {e['recall']:4.2f} {e['n_flagged']:5d} | {b['iforest']:7.3f} {b['lof']:5.3f} | "
                      f"{', '.join(miss) or '-'}", flush=True)
                print(f"  ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    for split, (n, ok) in sorted(tally.items()):
        print(f"{split}: {ok} of {n} rows meet every goal")
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "held-out", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="4 families of each split, the last layer, 5%% and 20%%")
    ap.add_argument("--family", action="append", help="only families whose name contains this")
    ap.add_argument("--fraction", type=float, action="append", help="prevalence (default 0.02, 0.1, 0.4)")
    ap.add_argument("--layers", type=int, choices=[1, 2], default=2, help="the last layer, or also one earlier")
    ap.add_argument("--images", type=int, default=1000, help="scan-set size")
    args = ap.parse_args()
    families = [f for f in FAMILIES if args.split in ("all", f.split)]
    if args.quick:
        families = [f for f in families if f.split == "dev"][:4] + [f for f in families if f.split == "held-out"][:4]
    if args.family:
        families = [f for f in families if any(s in f.name for s in args.family)]
    fractions = args.fraction or ([0.05, 0.2] if args.quick else [0.02, 0.1, 0.4])
    run(families, 1 if args.quick else args.layers, fractions, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
