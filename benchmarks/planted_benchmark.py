"""Planted-artifact benchmark: are the neurons DORA calls infected the artifact detectors?

For every case (architecture x artifact) it trains (once, cached) a tiny model
on planted data where the artifact carries label information, writes a scan
set with a known artifact fraction and labels.csv, runs dora-clean with one
set of defaults, and prints one table row:

- oracle: the best single neuron of the layer as a detector (AUC), and its
  break-even precision (= recall);
- dora-clean: the best AUC among the infected neurons, its rank among all
  neurons, how many neurons were called infected, the combined-score AUC, and
  the precision / recall of the label-free flagged set;
- baselines on the same images: IsolationForest and LOF on the model's
  penultimate features, FiftyOne Brain uniqueness on those features, and a
  random neuron (the mean AUC over all neurons, each oriented without labels
  as dora-clean orients its neurons: the expected AUC of a random draw).

    python benchmarks/planted_benchmark.py              # the table (about 10 min on 2 cores the first time)
    python benchmarks/planted_benchmark.py --explore    # also the outlier-detection variants tried
    python benchmarks/planted_benchmark.py --fraction 0.02 --fraction 0.1 --scan-seed 11   # held-out draws
    python benchmarks/planted_benchmark.py --model-seed 1   # models trained afresh (35-55 s each on 2 cores)
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dora_clean.analysis import AnalysisOptions, analyse_layer
from dora_clean.evaluate import auc, break_even, neuron_aucs, precision_recall
from dora_clean.scanning import list_images
from dora_clean.models import LayerModel, weights_hash
from dora_clean.demo.nets import default_layer
from dora_clean.analysis.outliers import DEFAULT_METHOD, OutlierSettings, find_infected
from planted import ARTIFACTS, TRAIN_DEFAULTS, load_planted_model, write_scan_set
from dora_clean.analysis.representations import REPRESENTATIONS
from dora_clean.review import import_fiftyone
from dora_clean.analysis.sams import SamsConfig, cache_root
from dora_clean.scanning.activations import ScanOptions, scan_images, scan_key
from dora_clean.scoring import (
    DEFAULT_AGREEMENT, POOLINGS, RECRUIT_AUC, ScoringSettings, layer_pooled, orientation, score_findings,
)

ARCHS = ("tiny_resnet", "tiny_cnn")
#: The planted task the benchmark trains on by default (planted.TRAIN_DEFAULTS, the demo
#: model's: 4 classes, a 64-channel layer). ``--classes 10 --width 128`` trains a task where the
#: artifact class is one of ten (the baselines fall to 0.55-0.9 there, but kNN misses the
#: detectors on the ResNet cases; see the issue's notes).
BENCH_TRAIN: dict = {"num_classes": TRAIN_DEFAULTS["num_classes"], "widths": TRAIN_DEFAULTS["widths"]}


@dataclass
class Case:
    arch: str
    artifact: str
    analysis: object
    mean_act: np.ndarray
    max_act: np.ndarray
    y: np.ndarray
    relpaths: list[str]
    root: Path
    classes: list[str | None]  # each image's class folder
    reliance: float  # share of other classes' images the model calls the artifact class once it is added


def prepare(arch: str, artifact: str, n_scan: int, config: SamsConfig, progress: bool,
            train: dict | None = None, fraction: float = 0.2, representation: str = "standardised",
            scan_seed: int = 7) -> Case:
    """Train (cached) the case's model, write (cached) its scan set with the artifact on
    ``fraction`` of the images (drawn with ``scan_seed``), analyse the layer and scan the set."""
    train = dict(train or {})
    model, metrics = load_planted_model(arch, artifact, **train)
    layer = default_layer(arch)
    n_cls = int(train.get("num_classes", TRAIN_DEFAULTS["num_classes"]))
    name = f"scan-{artifact}-{n_scan}" + ("" if n_cls == 4 else f"-c{n_cls}")
    name += "" if fraction == 0.2 else f"-f{fraction:g}"
    name += "" if scan_seed == 7 else f"-s{scan_seed}"
    root = cache_root() / "bench" / name
    if not (root / "labels.csv").is_file():
        write_scan_set(root, artifact, n_scan, artifact_fraction=fraction, seed=scan_seed, overwrite=True,
                       num_classes=n_cls)
    labels = dict(
        (p, int(a)) for p, a in (line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:])
    )
    entries, _, _ = list_images(root)
    analysis = analyse_layer(model, layer, config=config, outliers=OutlierSettings(representation=representation),
                             options=AnalysisOptions(device="cpu", progress=progress))
    lm = LayerModel(model, layer)
    options = ScanOptions(64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), progress=progress)
    key = scan_key(weights_hash(model), layer, root, entries, options)
    res = scan_images(lm, root, entries, cache_root() / "scans" / key, options, [])
    relpaths = [e.relpath for e in res.entries]
    y = np.array([labels[p] for p in relpaths])
    return Case(arch, artifact, analysis, np.asarray(res.mean_act), np.asarray(res.max_act), y, relpaths, root,
                [e.label for e in res.entries], float(metrics["reliance"]))


def layer_best(y: np.ndarray, mean_act: np.ndarray, max_act: np.ndarray, pooling: str = "mean",
               readings: str = "pooling") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each neuron's AUC as a detector in either direction [C], read from ``pooling`` or (``readings`` both)
    the better of its mean and its peak; and the activations [N, C] and raw AUCs [C] of the reading in
    which the best neuron is best."""
    one = readings == "pooling" and pooling != "auto"  # auto reads both
    sources = [layer_pooled(mean_act, max_act, p) for p in ((pooling,) if one else POOLINGS)]
    raws = np.stack([neuron_aucs(y, src) for src in sources])  # [reading, neuron]
    two_ways = np.maximum(raws, 1 - raws)
    reading = int(np.argmax(two_ways[:, int(np.argmax(two_ways.max(axis=0)))]))
    return two_ways.max(axis=0), sources[reading], raws[reading]


def evaluate(case: Case, method: str = DEFAULT_METHOD, n_neighbors=None, pooling: str = "mean",
             agreement: float = DEFAULT_AGREEMENT, recruit_auc: float | None = RECRUIT_AUC,
             rows: np.ndarray | None = None, off: frozenset[str] = frozenset(), readings: str = "pooling") -> dict:
    """dora-clean's infected set and scores against the labels, and the oracle.

    A neuron counts as a detector in either direction (the artifact may
    silence it), for the oracle and for the infected neurons alike; the
    combined score orients its neurons without labels (``orientation``).
    ``rows``: score only these images (a dataset drawn from the scan set); ``off``: scoring pieces
    switched off (``dora_clean.scoring.PIECES``); ``readings``: how a neuron's AUC is read for the oracle,
    its break-even point and the infected set, ``pooling`` (as the scores are pooled) or ``both`` (the
    better of its mean and its peak over the map).
    """
    a = case.analysis
    o = find_infected(a.distance, a.self_act, a.neurons, OutlierSettings(method, n_neighbors=n_neighbors),
                      representations=a.A.mean(dim=2).numpy(), with_atlas=False)
    rows = np.arange(len(case.y)) if rows is None else rows
    y, mean_act, max_act = case.y[rows], case.mean_act[rows], case.max_act[rows]
    two_way, src, raw = layer_best(y, mean_act, max_act, pooling, readings)
    oracle = int(np.argmax(two_way))
    oracle_dir = 1 if raw[oracle] >= 0.5 else -1
    rank = {n: r + 1 for r, n in enumerate(np.argsort(-two_way))}
    inf = o.infected
    classes = [case.classes[i] for i in rows]
    scores, findings = score_findings(mean_act, max_act, inf, pooling, classes,  # as a scan makes them
                                      ScoringSettings(agreement, recruit_auc, frozenset(off)))
    scores = scores.following(findings[0].candidate, inf)
    orient, score = scores.orient, scores.score
    used = [two_way[n] for n in inf]  # either direction and reading, as the oracle (not the winner's side)
    best = int(np.argmax(used)) if inf else None
    flagged = findings[0].flagged
    p, r = precision_recall(y, flagged)
    confident = [f.flagged for f in findings if f.confident]
    removed = np.logical_or.reduce(confident) if confident else np.zeros(len(y), dtype=bool)
    return {
        "oracle_auc": two_way[oracle], "oracle": oracle,
        "break_even": break_even(y, src[:, oracle] * oracle_dir),
        "best_inf_auc": used[best] if inf else float("nan"), "best_inf": inf[best] if inf else None,
        "rank": rank.get(inf[best], -1) if inf else -1, "n_inf": len(inf), "n": len(a.neurons), "infected": inf,
        "combined_auc": auc(y, score), "n_combined": len(scores.combined), "precision": p, "recall": r, "dead": len(o.dead),
        "n_flagged": int(flagged.sum()),
        "n_detectors": int(np.sum(two_way > 0.9)), "flipped": int(np.sum(orient < 0)),
        "confidence": findings[0].confidence, "findings": findings,
        "n_removed": int(removed.sum()), "removed_precision": precision_recall(y, removed)[0],
        "class_lambda": scores.class_lambda, "seed": scores.seed, "flagged": flagged, "score": score,
    }


def baselines(case: Case, with_uniqueness: bool = True) -> dict:
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    feats = case.mean_act  # the penultimate features: global average pool of the last conv stage
    out = {
        "iforest": auc(case.y, -IsolationForest(random_state=0).fit(feats).score_samples(feats)),
        "lof": auc(case.y, -LocalOutlierFactor(n_neighbors=20).fit(feats).negative_outlier_factor_),
        "random_neuron": random_neuron_auc(case.y, feats),
    }
    if with_uniqueness:
        out["uniqueness"] = uniqueness_auc(case, feats)
    return out


def random_neuron_auc(y: np.ndarray, feats: np.ndarray) -> float:
    """The expected AUC of a neuron drawn at random: the mean over all neurons,
    each oriented without labels the way dora-clean orients its neurons
    (``orientation``: the side of its tail)."""
    orient = orientation(feats)
    raw = neuron_aucs(y, feats)
    return float(np.mean(np.where(orient > 0, raw, 1 - raw)))


def uniqueness_auc(case: Case, feats: np.ndarray) -> float:
    import logging

    fo = import_fiftyone(None, otherwise="pass --no-uniqueness")  # one start of its database at a time
    import fiftyone.brain as fob

    logging.getLogger("fiftyone").setLevel(logging.WARNING)  # no progress lines between the table's rows
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=str(case.root / p)) for p in case.relpaths], progress=False)
        fob.compute_uniqueness(ds, embeddings=feats, progress=False)
        u = np.array(ds.values("uniqueness"))
        order = {str(case.root / p): i for i, p in enumerate(case.relpaths)}
        aligned = np.empty(len(u))
        for fp, v in zip(ds.values("filepath"), u):
            aligned[order[fp]] = v
        return auc(case.y, aligned)
    finally:
        ds.delete()


def goals(e: dict, b: dict) -> list[str]:
    """The issue's goals this row misses (empty: all met)."""
    miss = []
    if not e["best_inf_auc"] >= e["oracle_auc"] - 0.02:
        miss.append("infected<oracle-0.02")
    if not 1 <= e["n_inf"] <= max(1, int(0.05 * e["n"])):
        miss.append("n_infected")
    if not (e["combined_auc"] >= 0.95 and e["combined_auc"] >= e["oracle_auc"] - 1e-9):
        miss.append("combined")
    be = e["break_even"]
    if not (abs(e["precision"] - be) <= 0.05 or e["precision"] >= be) or not (abs(e["recall"] - be) <= 0.05 or e["recall"] >= be):
        miss.append("P/R vs break-even")
    if be >= 0.9 and not (e["precision"] >= 0.9 and e["recall"] >= 0.9):
        miss.append("P/R<0.9")
    if not all(e["combined_auc"] >= v + 0.15 for v in b.values() if v == v):
        miss.append("baselines")
    return miss


def table(cases: list[Case], method: str, pooling: str, with_uniqueness: bool) -> int:
    """Print one row per case; return how many cases miss a goal."""
    head = (f"{'case':<20} {'rel':>4} {'#det':>4} {'oracle':>6} {'BE':>5} | {'inf':>5} {'rank':>4} {'#inf':>4} {'dead':>4} {'comb':>5} "
            f"{'prec':>5} {'rec':>5} | {'iforest':>7} {'lof':>5} {'uniq':>5} {'rand':>5} | goals")
    print(head)
    print("-" * len(head))
    n_fail = n_auc = n_pr = 0
    for c in cases:
        e = evaluate(c, method, pooling=pooling)
        b = baselines(c, with_uniqueness)
        miss = goals(e, b)
        n_fail += bool(miss)
        n_auc += e["combined_auc"] >= 0.95
        n_pr += e["precision"] >= 0.9 and e["recall"] >= 0.9
        print(f"{c.arch + '/' + c.artifact:<20} {c.reliance:4.2f} {e['n_detectors']:4d} {e['oracle_auc']:6.3f} {e['break_even']:5.2f} | "
              f"{e['best_inf_auc']:5.3f} {e['rank']:4d} {e['n_inf']:4d} {e['dead']:4d} {e['combined_auc']:5.3f} "
              f"{e['precision']:5.2f} {e['recall']:5.2f} | {b['iforest']:7.3f} {b['lof']:5.3f} "
              f"{b.get('uniqueness', float('nan')):5.3f} {b['random_neuron']:5.3f} | {'ok' if not miss else ', '.join(miss)}")
    print(f"\n{len(cases) - n_fail}/{len(cases)} cases meet every goal; combined AUC >= 0.95 in {n_auc}, precision "
          f"and recall >= 0.9 in {n_pr}. rel: the model's reliance on the artifact (the share of other "
          "classes' images it calls the artifact's class once the artifact is added); #det: neurons with AUC > 0.9 "
          "(either direction); inf: best infected neuron's AUC, rank: its rank among all neurons; comb: combined score")
    return n_fail


def explore(cases: list[Case], pooling: str) -> None:
    """The outlier-detection and combination variants tried."""
    print("\nvariants (best infected AUC / rank / #infected / combined AUC):")
    variants = [("lof", None), ("lof", 5), ("lof", 10), ("knn", None), ("knn", 5), ("pca", None), ("iforest", None)]
    print(f"{'case':<20} " + " ".join(f"{m + ('' if k is None else str(k)):>22}" for m, k in variants))
    for c in cases:
        cells = []
        for m, k in variants:
            e = evaluate(c, m, k, pooling)
            cells.append(f"{e['best_inf_auc']:.3f}/{e['rank']:>2}/{e['n_inf']}/{e['combined_auc']:.3f}")
        print(f"{c.arch + '/' + c.artifact:<20} " + " ".join(f"{x:>22}" for x in cells))
    combos = [(0.0, None), (0.3, None), (0.5, None), (0.3, 0.9), (0.3, 0.95), (0.3, 0.98)]
    print("\ncombined score by agreement (0: the mean of all infected neurons) and recruit AUC (-: none): "
          "combined AUC / precision / recall / neurons averaged; 'one class' scores a dataset drawn from "
          "the scan set where the artifact goes with one class (all its images kept, 1 in 8 artifact "
          "images of the other classes)")
    print(f"{'case':<20} {'method':<6} {'data':<9} " + " ".join(f"{f'{a}/{r or chr(45)}':>21}" for a, r in combos))
    for c in cases:
        cls = np.array([p.split("/")[0] for p in c.relpaths])
        keep = (cls == sorted(set(cls))[0]) | (c.y == 0) | (np.random.default_rng(0).random(len(cls)) < 0.125)
        for data, rows in (("all", None), ("one class", np.flatnonzero(keep))):
            for m, k in (("knn", None), ("lof", 5), ("lof", None)):
                cells = []
                for ag, rec in combos:
                    e = evaluate(c, m, k, pooling, ag, rec, rows)
                    cells.append(f"{e['combined_auc']:.3f}/{e['precision']:.2f}/{e['recall']:.2f}/{e['n_combined']:>2}")
                print(f"{c.arch + '/' + c.artifact:<20} {m + ('' if k is None else str(k)):<6} {data:<9} "
                      + " ".join(f"{x:>21}" for x in cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="scan-set size per case")
    ap.add_argument("--fraction", type=float, action="append",
                    help="share of the scan set's images that carry the artifact (repeat for several tables; "
                         "default 0.2)")
    ap.add_argument("--scan-seed", type=int, default=7,
                    help="seed of the scan sets' draw (7: the benchmark's; another gives a held-out draw)")
    ap.add_argument("--model-seed", type=int, default=TRAIN_DEFAULTS["seed"],
                    help="seed of the models' training data and weights (0: the benchmark's; another trains "
                         "a fresh set of models, 35-55 s each on 2 cores with 4 classes, 2-3 min with "
                         "--classes 10)")
    ap.add_argument("--arch", choices=ARCHS, action="append")
    ap.add_argument("--artifact", choices=ARTIFACTS, action="append")
    ap.add_argument("--signals", type=int, default=4)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--method", default=DEFAULT_METHOD)
    ap.add_argument("--pooling", default="mean")
    ap.add_argument("--representation", choices=REPRESENTATIONS, default="standardised",
                    help="how the EA distance sees the layer's responses (raw: the DORA paper's)")
    ap.add_argument("--explore", action="store_true", help="also print the outlier-detection variants tried")
    ap.add_argument("--no-uniqueness", action="store_true", help="skip the FiftyOne Brain baseline")
    ap.add_argument("--classes", type=int, default=BENCH_TRAIN["num_classes"],
                    help="classes of the planted task (first of planted.SHAPES)")
    ap.add_argument("--width", type=int, default=BENCH_TRAIN["widths"][2] if BENCH_TRAIN["widths"] else 64,
                    help="channels of the analysed (last) conv stage")
    args = ap.parse_args()
    train = {"num_classes": args.classes, "widths": None if args.width == 64 else (16, 32, args.width),
             "seed": args.model_seed}
    torch.manual_seed(0)
    config = SamsConfig(n_signals=args.signals, steps=args.steps, size=64)
    n_fail = 0
    for fraction in args.fraction or [0.2]:
        cases = []
        for arch, art in itertools.product(args.arch or ARCHS, args.artifact or ARTIFACTS):
            t = time.perf_counter()
            cases.append(prepare(arch, art, args.images, config, progress=False, train=train, fraction=fraction,
                                 representation=args.representation, scan_seed=args.scan_seed))
            print(f"prepared {arch}/{art} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        print(f"\ndefaults: method={args.method} representation={args.representation} pooling={args.pooling} "
              f"signals={args.signals} steps={args.steps}; {args.images} scan images (draw {args.scan_seed}), "
              f"{fraction:.0%} artifact; task: {args.classes} classes, analysed layer {args.width} channels, "
              f"models of seed {args.model_seed}\n")
        n_fail += table(cases, args.method, args.pooling, not args.no_uniqueness)
        if args.explore:
            explore(cases, args.pooling)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    sys.exit(main())
