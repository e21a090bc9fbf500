"""The families benchmark: dora-clean's defaults on families of planted tasks, dev and held out.

Each family (``families.py``: a background, content, artifact and architecture)
gets a model trained on its planted task (cached), a scan set with the
artifact spread over all classes at each prevalence (cached), and one row per
(family, layer, prevalence), with the goals of the method issue:

- inf: the infected set holds a neuron within 0.02 AUC of the layer's best (each
  counted in either direction, as the oracle; since 1 Dec 2026, before which an
  infected neuron counted in the combined score's direction only);
- comb: the combined AUC >= max(0.95, layer's best - 0.01), and not more than
  0.02 below the best infected neuron's;
- P/R: min(precision, recall) of the label-free flags within 0.05 of the
  layer's limit (the best neuron's break-even, where precision = recall);
- export: what the default export removes without review (the flags of the
  confident findings: ``dora_clean.scoring.findings``) has precision >= 0.9,
  or nothing is removed without review.

The layer's best neuron (and each infected neuron's AUC, and the break-even) is read
from each neuron's mean over its map and from its peak, whichever is better
(``--readings both``, since 2 Dec 2026; ``--readings pooling``: the scan's pooling
only, the bar of the tables before). Each row also gives ``probe``: a linear
read-out of the whole layer (both readings) trained with the labels
(:func:`probe_auc`, out of fold). The combined score is a linear
read-out too, so where neither the best neuron nor the probe reaches 0.95 the
comb goal is out of the layer's reach, not the method's.

The run ends with a table: per split and layer (last, earlier), the rows meeting
each goal, every goal, the baseline goal restated (``base``:
:func:`beats_baselines`), and the rows where the comb goal is in reach
(``reach``: the best neuron or the probe reaches 0.95); ``fresh`` to ``fresh 17`` count the
batches of fresh held-out families again, and ``dev 2`` the dev families added later.

Clean rows (``--clean``): a model of the family trained without any artifact,
on a clean scan set and on one carrying the family's artifact, which that
model never learned. Their goal: at most 1% of the images flagged as
confident (``clean`` in the goals column when missed).

    python benchmarks/families_benchmark.py --quick             # 4 dev + 4 held-out families, last layer, 5% and 20%
    python benchmarks/families_benchmark.py --split held-out    # every held-out family
    python benchmarks/families_benchmark.py --fresh             # the first batch of fresh held-out families (tag, stamp)
    python benchmarks/families_benchmark.py --fresh 2 3         # the second and third (--help lists all 20)
    python benchmarks/families_benchmark.py --fresh 11 --findings   # every finding of each row under it
    python benchmarks/families_benchmark.py --flat --layers 1   # the scan sets as flat folders (no class folders)
    python benchmarks/families_benchmark.py --clean             # the clean-model rows
    python benchmarks/families_benchmark.py --ablation          # each piece of the scan off in turn
    python benchmarks/families_benchmark.py --ablation --variant peak --fresh 15 16   # one piece, two batches
    python benchmarks/families_benchmark.py --constants --layers 1  # each scoring constant lower and higher
    python benchmarks/families_benchmark.py --set REPRODUCING=5     # the table with a constant changed
    python benchmarks/families_benchmark.py --off centring          # the table with a piece (or rule) off
    python benchmarks/families_benchmark.py --layers 1 --steps 32   # what a cheaper s-AMS setting costs
    python benchmarks/families_benchmark.py --split dev --objective channel_max  # s-AMS of each neuron's peak (PK)
    python benchmarks/families_benchmark.py --pooling mean          # scored from each neuron's mean alone (before PR)

Training takes about a minute a 4-class model on 2 cores, the s-AMS about as
long a layer; everything is cached (``$DORA_CLEAN_CACHE``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import sys
import time

import numpy as np

from dora_clean.analysis import AnalysisOptions, OutlierSettings, analyse_layer
from dora_clean.analysis.sams import OBJECTIVES, SamsConfig, cache_root
from dora_clean.evaluate import auc
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD, LayerModel, weights_hash
from dora_clean.scanning import list_images
from dora_clean.scanning.activations import ScanOptions, scan_images, scan_key
from dora_clean.scoring import DEFAULT_POOLING, PIECES, Finding
from dora_clean.scoring.classes import class_codes
from dora_clean.scoring.stats import layer_pooled
from families import DEV_2_FAMILIES, FAMILIES, FRESH_BATCHES, Family, default_layers, load_family_model, write_family_scan_set
from planted_benchmark import Case, baselines, evaluate


#: The s-AMS settings of every row (``--steps`` / ``--signals`` change them: what cheaper settings cost).
SAMS = SamsConfig()


def prepare(family: Family, layer: str, fraction: float, n_scan: int, clean_model: bool = False) -> Case:
    """Train (cached) the family's model, write (cached) its scan set, analyse ``layer`` and scan."""
    model, metrics = load_family_model(family, learned=not clean_model)
    root = write_family_scan_set(family, n_scan, fraction)
    labels = dict((p, int(a)) for p, a in (line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:]))
    entries, _, _ = list_images(root)
    analysis = analyse_layer(model, layer, config=SAMS, outliers=OutlierSettings(),
                             options=AnalysisOptions(device="cpu", progress=False))
    options = ScanOptions(64, IMAGENET_MEAN, IMAGENET_STD, progress=False)
    key = scan_key(weights_hash(model), layer, root, entries, options)
    res = scan_images(LayerModel(model, layer), root, entries, cache_root() / "scans" / key, options)
    relpaths = [e.relpath for e in res.entries]
    return Case(family.arch, family.artifact, analysis, np.asarray(res.mean_act), np.asarray(res.max_act),
                np.array([labels[p] for p in relpaths]), relpaths, root, [e.label for e in res.entries],
                float(metrics["reliance"]))


def beats_baselines(combined_auc: float, b: dict) -> bool:
    """The method issue's baseline goal, restated: the combined AUC is 0.15 above each baseline
    (IsolationForest and LOF on the penultimate features) that scores below 0.85, and >= 0.99 where one
    scores above."""
    return all(combined_auc >= (b[k] + 0.15 if b[k] < 0.85 else 0.99) for k in ("iforest", "lof"))


GOALS = ("inf", "comb", "P/R", "export")

#: How every row is scored and judged (``evaluate``'s keywords): the scan's pooling (its default), and the
#: layer's best read from each neuron's mean and peak alike (``--pooling``, ``--readings``).
SCORING = {"pooling": DEFAULT_POOLING, "readings": "both"}


def probe_auc(y: np.ndarray, activations: np.ndarray, classes: list | None = None, folds: int = 5) -> float:
    """The AUC of a logistic regression on the layer's standardised activations, trained with the labels:
    each image scored by the model of the fold that did not see it. What the layer holds of the artifact
    for a linear read-out (an estimate: with few artifact images, each fold learns from few). With
    ``classes`` (the class folders), each folder's own offset is a feature too, as dora-clean's scores
    can be centred within the folders."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.sum(y)), int(np.sum(1 - y)))
    if folds < 2:
        return float("nan")
    if classes is not None and len(set(classes)) > 1:
        codes = class_codes(classes)
        activations = np.hstack([activations, np.eye(codes.max() + 1)[codes]])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    score = cross_val_predict(probe, activations, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                              method="decision_function")
    return auc(y, score)


def probe_features(case: Case, pooling: str) -> np.ndarray:
    """The layer's activations a probe reads: one pooling's, or (``both``, and ``auto``, which reads both)
    each neuron's mean and peak."""
    if pooling in ("both", "auto"):
        return np.hstack([np.asarray(case.mean_act), np.asarray(case.max_act)])
    return np.asarray(layer_pooled(case.mean_act, case.max_act, pooling))


def in_reach(e: dict, probe: float) -> bool:
    """Whether the comb goal is within a linear read-out's reach: the best neuron or the probe reaches 0.95
    (where the best neuron does, the goal is within 0.01 of it)."""
    return max(e["oracle_auc"], probe) >= 0.95


def goal_table(counts: dict[tuple[str, str], dict[str, int]]) -> None:
    """Print, per split and layer, how many rows meet each goal (``counts``: from :func:`run`)."""
    columns = (*GOALS, "all", "base", "reach")
    print(f"\n{'split, layer':<24} {'rows':>4} " + " ".join(f"{g:>6}" for g in columns))
    for (split, which), c in sorted(counts.items()):
        print(f"{split + ', ' + which:<24} {c['rows']:4d} " + " ".join(f"{c.get(g, 0):6d}" for g in columns))
    print("(base: the combined AUC beats IsolationForest and LOF by 0.15 where they score below 0.85, "
          "and is >= 0.99 where they score above; reach: rows where the best neuron or a linear probe of "
          "the layer, trained with the labels, reaches 0.95)")


def goals(e: dict) -> list[str]:
    """The method issue's goals this row misses (empty: all met)."""
    miss = []
    if e["best_inf_auc"] < e["oracle_auc"] - 0.02:
        miss.append("inf")
    if e["combined_auc"] < max(0.95, e["oracle_auc"] - 0.01) or e["combined_auc"] < e["best_inf_auc"] - 0.02:
        miss.append("comb")
    if min(e["precision"], e["recall"]) < e["break_even"] - 0.05:
        miss.append("P/R")
    if e["n_removed"] and e["removed_precision"] < 0.9:
        miss.append("export")
    return miss


#: Models trained without any artifact (``--clean``): two dev families and three held out.
CLEAN_FAMILIES: tuple[Family, ...] = (
    Family("texture", "shapes", "text", "tiny_resnet"), Family("flat", "textures", "sticker", "tiny_cnn"),
    Family("photo", "shapes", "ruler", "tiny_resnet"), Family("photo", "digits", "timestamp", "tiny_mobilenet"),
    Family("flat", "digits", "timestamp", "tiny_cnn", 10),
)


def prepare_clean(family: Family, fraction: float, n_scan: int) -> Case:
    """:func:`prepare` for the family's clean model at its last layer; where the scan set is clean, one label
    is turned round (``evaluate``'s ROC needs both kinds)."""
    case = prepare(family, default_layers(family.arch)[0], fraction, n_scan, clean_model=True)
    if case.y.min() == case.y.max():
        case.y[0] = 1 - case.y[0]
    return case


def run_clean(families: list[Family], n_scan: int) -> dict[str, list[int]]:
    """One row per clean model and scan set (clean, and with the family's artifact); returns, per split,
    [rows, rows with at most 1% of the images flagged as confident]."""
    head = f"{'clean model of family':<42} {'split':<8} {'layer':<10} {'scan set':<14} {'#flag':>5} {'rep':>3} {'assoc':>5} {'confident':>9} | goal"
    print(head)
    print("-" * len(head))
    tally: dict[str, list[int]] = {}
    for family in families:
        layer = default_layers(family.arch)[0]
        for fraction in (0.0, 0.1):
            case = prepare_clean(family, fraction, n_scan)
            e = evaluate(case, **SCORING)
            c = e["confidence"]
            confident = e["n_removed"]
            ok = confident <= 0.01 * len(case.y)
            row = tally.setdefault(family.split, [0, 0])
            row[0] += 1
            row[1] += ok
            assoc = "-" if c.class_association is None else f"{c.class_association:.2f}"
            what = "clean" if fraction == 0 else f"{fraction:.0%} {family.artifact}"
            print(f"{family.name:<42} {family.split:<8} {layer:<10} {what:<14} {e['n_flagged']:5d} {c.reproducing:3d} "
                  f"{assoc:>5} {confident:9d} | {'-' if ok else 'clean'}", flush=True)
    for split, (n, ok) in sorted(tally.items()):
        print(f"{split}: {ok} of {n} clean rows flag at most 1% as confident")
    return tally


def run(families: list[Family], layers: int, fractions: list[float], n_scan: int,
        flat: bool = False, off: frozenset[str] = frozenset(), findings: bool = False) -> dict[tuple[str, str], dict[str, int]]:
    """Print one row per (family, layer, prevalence), then :func:`goal_table`; returns its counts.
    ``flat``: score as if the scan set were one flat folder (no class folders); ``off``: scoring pieces off;
    ``findings``: under each row, a line per finding (:func:`finding_lines`)."""
    head = (f"{'family':<42} {'split':<8} {'layer':<10} {'prev':>4} {'rel':>4} {'oracle':>6} {'BE':>4} | {'inf':>5} "
            f"{'comb':>5} {'prec':>4} {'rec':>4} {'#flag':>5} {'rep':>3} {'assoc':>5} {'rm':>4} | {'iforest':>7} {'lof':>5} {'probe':>5} | goals missed")
    print(head)
    print("-" * len(head))
    counts: dict[tuple[str, str], dict[str, int]] = {}
    batch_of = ({f.name: "fresh" if k == 1 else f"fresh {k}" for k, batch in FRESH_BATCHES.items() for f in batch}
                | {f.name: "dev 2" for f in DEV_2_FAMILIES})
    for family in families:
        for depth, layer in enumerate(default_layers(family.arch)[:layers]):
            for fraction in fractions:
                t = time.perf_counter()
                case = prepare(family, layer, fraction, n_scan)
                if flat:
                    case = dataclasses.replace(case, classes=[None] * len(case.y))
                e = evaluate(case, **SCORING, off=off)
                b = baselines(case, with_uniqueness=False)
                miss = goals(e)
                probe = probe_auc(case.y, probe_features(case, "both" if SCORING["readings"] == "both"
                                                         else SCORING["pooling"]), None if flat else case.classes)
                met = {g: g not in miss for g in GOALS} | {"all": not miss, "base": beats_baselines(e["combined_auc"], b),
                                                           "reach": in_reach(e, probe)}
                for split in {family.split, batch_of.get(family.name, family.split)}:  # counted in its batch too
                    cell = counts.setdefault((split, "last" if depth == 0 else "earlier"), dict.fromkeys(("rows", *met), 0))
                    cell["rows"] += 1
                    for g, ok in met.items():
                        cell[g] += ok
                c = e["confidence"]
                assoc = "-" if c.class_association is None else f"{c.class_association:.2f}"
                removed = e["n_removed"]
                print(f"{family.name:<42} {family.split:<8} {layer:<10} {f'{fraction * 100:g}%':>4} {case.reliance:4.2f} "
                      f"{e['oracle_auc']:6.3f} {e['break_even']:4.2f} | {e['best_inf_auc']:5.3f} {e['combined_auc']:5.3f} "
                      f"{e['precision']:4.2f} {e['recall']:4.2f} {e['n_flagged']:5d} {c.reproducing:3d} {assoc:>5} {removed:4d} | "
                      f"{b['iforest']:7.3f} {b['lof']:5.3f} {probe:5.3f} | "
                      f"{', '.join(miss) or '-'}", flush=True)
                if findings:
                    print("\n".join(finding_lines(e["findings"], case.y)), flush=True)
                print(f"  ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    goal_table(counts)
    for split in sorted({f.split for f in families}):
        cells = [c for (s, _), c in counts.items() if s == split]
        print(f"{split}: {sum(c['all'] for c in cells)} of {sum(c['rows'] for c in cells)} rows meet every goal")
    return counts


def finding_lines(findings: list[Finding], y: np.ndarray) -> list[str]:
    """A line per finding of a row: its flagged count and their precision, its split's structure, the
    neurons that reproduce it, the share of finding 1's flagged images it holds, and why it is not
    confident."""
    first = findings[0].flagged if findings else np.zeros(len(y), dtype=bool)
    out = []
    for f in findings:
        n = int(f.flagged.sum())
        precision = float(y[f.flagged].mean()) if n else float("nan")
        holds = float((f.flagged & first).sum() / max(int(first.sum()), 1))
        why = "; ".join(r.split(" (")[0].split(":")[0] for r in f.confidence.reasons) or "confident"
        out.append(f"    finding {f.id}: {n:4d} flagged, precision {precision:.2f}, structure "
                   f"{f.candidate.structure:5.2f}, {f.confidence.reproducing:3d} reproducing, holds {holds:.2f} "
                   f"of finding 1's: {why}")
    return out


def variant_table(title: str, variants: list[tuple[str, dict, dict]], families: list[Family], layers: int,
                  fractions: list[float], n_scan: int) -> None:
    """Per variant (name, ``evaluate`` keywords, scoring constants to set; a ``"rules"`` keyword: :data:`RULES`
    switched off) and per split and layer (last, earlier): how many rows meet each goal (comb, P/R, export,
    all) and how many have the default export remove something (``rm``); and how many clean-model rows flag
    more than 1% as confident."""
    cases = [(f, depth, prepare(f, layer, fraction, n_scan))
             for f in families for depth, layer in enumerate(default_layers(f.arch)[:layers]) for fraction in fractions]
    splits = {f.split for f, _, _ in cases}
    clean = [(f, prepare_clean(f, fraction, n_scan)) for f in CLEAN_FAMILIES if f.split in splits for fraction in (0.0, 0.1)]
    cells_of = sorted({(f.split, depth) for f, depth, _ in cases})
    head = f"{title:<46} " + " ".join(f"{s + ', ' + ('last', 'earlier')[d] + ': comb P/R export all rm':>44}"
                                      for s, d in cells_of)
    print(f"{head} {'clean':>9}")
    print("-" * (len(head) + 10))
    for name, kw, constants in variants:
        kw = dict(kw)
        cells, bad = [], 0
        with scoring_constants(constants), rules_off(kw.pop("rules", frozenset())):
            for split, depth in cells_of:
                tally = np.zeros(5, dtype=int)
                rows = [c for f, d, c in cases if (f.split, d) == (split, depth)]
                for case in rows:
                    e = evaluate(case, **(SCORING | kw))
                    miss = set(goals(e))
                    tally += ["comb" not in miss, "P/R" not in miss, "export" not in miss,
                              not miss & {"comb", "P/R", "export"}, e["n_removed"] > 0]
                cells.append(f"{' '.join(f'{t:>3}' for t in tally)} of {len(rows):<3}")
            for f, case in clean:
                bad += evaluate(case, **(SCORING | kw))["n_removed"] > 0.01 * len(case.y)
        print(f"{name:<46} " + " ".join(f"{c:>44}" for c in cells) + f" {bad:>2} of {len(clean):<2}", flush=True)


def ablation(families: list[Family], layers: int, fractions: list[float], n_scan: int,
             only: list[str] | None = None) -> None:
    """Each piece of the combined score switched off in turn, then the size rule (a constant), then each of
    :data:`RULES`, then all pieces with the size rule and the contest's structure rule (the mean of the infected
    neurons, each read from its mean over the map, split at Otsu's threshold; the confidence tests stay).
    ``only``: the variants whose name contains one of these (and today's)."""
    variants = [("(none: today's scoring)", {}, {}), *((p, {"off": frozenset([p])}, {}) for p in PIECES),
                ("size rule (MIN_NEURONS 1)", {}, {"MIN_NEURONS": 1}),
                *((r, {"rules": frozenset([r])} | ({"pooling": "mean"} if r == "peak" else {}), {}) for r in RULES),
                ("all (the mean of the infected neurons, Otsu)",
                 {"off": frozenset(PIECES), "agreement": 0.0, "rules": frozenset({"contest_structure"}), "pooling": "mean"},
                 {"MIN_NEURONS": 1})]
    if only:
        variants = variants[:1] + [v for v in variants[1:] if any(o in v[0] for o in only)]
    variant_table("piece off", variants, families, layers, fractions, n_scan)


#: The scan's rules besides :data:`PIECES` that the ablation switches off (:func:`rules_off`), each where
#: the library reads it: name -> what it is (docs/benchmark.md, "The ablation of today's scan").
RULES: dict[str, str] = {
    "contest_structure": "the contest ranked by structure where the winner's split is a bell curve's (S')",
    "winner_seeds": "the seeds' winner's own neurons among the layer's skewed and bimodal seeds (E2)",
    "wider_set": "a candidate holding half of a better finding's images is that finding (H; off: half the larger set)",
    "reproduction": "confident only where MIN_REPRODUCING neurons reproduce the flags (both counts)",
    "within_class": "confident only where the layer reproduces the flags within the class folders too (RC')",
    "class_excess": "confident only where no class folder holds more of the flags than predicted (X)",
    "bell_curve": "confident only where the split is cleaner than a bell curve's (C)",
    "peak": "the peak where the mean trusts nothing, never confident (PR; off: the mean alone)",
}


@contextlib.contextmanager
def rules_off(names: frozenset[str] | set[str]):
    """Switch off :data:`RULES` by replacing the names the library reads them from, and put them back after
    (``peak`` is the pooling, which ``evaluate`` and the scan take: nothing to replace)."""
    from types import SimpleNamespace

    from dora_clean.scoring import combine, confidence
    from dora_clean.scoring import findings as found

    unknown = set(names) - set(RULES)
    if unknown:
        raise ValueError(f"unknown rules {sorted(unknown)}; choose from {list(RULES)}")
    down_to, share = combine._down_to, found.SAME_IMAGES

    def larger_set(later: np.ndarray, earlier: np.ndarray, share: float = share) -> bool:  # before H
        return int(earlier.sum()) > 0 and int(np.sum(later & earlier)) >= share * max(int(earlier.sum()), int(later.sum()))

    patches = {
        "contest_structure": [(combine, "thresholds", SimpleNamespace(STRUCTURE=0.0))],
        "winner_seeds": [(combine, "_down_to", lambda order, k, outside, skip=(): down_to(order, k, outside,
                                                                                         {*skip, *outside}))],
        "wider_set": [(found, "same_images", larger_set)],
        "reproduction": [(confidence, "MIN_REPRODUCING", 0)],
        "within_class": [(confidence, "ClassCentred", lambda activations, codes, *a: activations)],
        "class_excess": [(confidence, "class_excess", lambda *a, **k: None)],
        "bell_curve": [(found, "structure", lambda *a, **k: None)],
        "peak": [],
    }
    with replaced() as replace:
        for name in names:
            for module, attr, value in patches[name]:
                replace(module, attr, value)
        yield


#: Each scoring constant, where it is read (a module's global, or a function's default bound when the
#: function was defined), and the two values it is tried at besides its own.
CONSTANTS: dict[str, tuple[tuple[str, str], tuple[float, float]]] = {
    "RECRUIT_ROUNDS": (("recruiting", "RECRUIT_ROUNDS"), (1, 3)),
    "EXTEND_AUC": (("recruiting", "add_near_recruits:min_auc"), (0.8, 0.95)),
    "REPRODUCING": (("thresholds", "REPRODUCING"), (3, 8)),
    "NESTED_SPLITS": (("thresholds", "nested_thresholds:levels"), (2, 4)),
    "CLASS_LAMBDA": (("combine", "CLASS_LAMBDA"), (0.3, 0.7)),
    "SKEWED_SEEDS": (("combine", "SKEWED_SEEDS"), (8, 32)),
    "BIMODAL_SEEDS": (("combine", "BIMODAL_SEEDS"), (8, 32)),
    "MIN_NEURONS": (("combine", "MIN_NEURONS"), (1, 8)),
    "STRUCTURE": (("thresholds", "STRUCTURE"), (0.05, 0.2)),
    "SPLIT_AUC": (("thresholds", "flag_threshold:min_auc"), (0.95, 0.995)),
    "MIN_REPRODUCING": (("confidence", "MIN_REPRODUCING"), (6, 10)),
    "REPRODUCE_PRECISION": (("confidence", "reproducing_neurons:precision"), (0.8, 0.95)),
    "CLASS_ASSOCIATION": (("findings", "CLASS_ASSOCIATION"), (0.1, 0.3)),  # where a scan is scored again, centred
    "SAME_IMAGES": (("findings", "same_images:share"), (0.3, 0.7)),
}


@contextlib.contextmanager
def scoring_constants(values: dict[str, float]):
    """Set scoring constants (names of :data:`CONSTANTS`) where they are read, and put them back after."""
    with replaced() as replace:
        for name, value in values.items():
            (module, where), _ = CONSTANTS[name]
            mod = importlib.import_module(f"dora_clean.scoring.{module}")
            fn, _, param = where.partition(":")
            if param:  # a default bound at definition: replace it in the function's __defaults__
                f = getattr(mod, fn)
                names = list(inspect.signature(f).parameters)[-len(f.__defaults__):]
                if param not in names:
                    raise ValueError(f"{where}: no such positional default")
                replace(f, "__defaults__", tuple(value if n == param else d for n, d in zip(names, f.__defaults__)))
            else:
                replace(mod, fn, value)
        yield


@contextlib.contextmanager
def replaced():
    """Give a function ``replace(obj, attr, value)`` that sets an attribute until the block ends; every
    attribute replaced is put back after, the last first."""
    undo = []

    def replace(obj, attr: str, value) -> None:
        undo.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    try:
        yield replace
    finally:
        for obj, attr, old in reversed(undo):
            setattr(obj, attr, old)


def parse_constants(items: list[str], ap: argparse.ArgumentParser) -> dict[str, float]:
    """``--set NAME=VALUE`` items as :func:`scoring_constants` takes them (each value of its constant's type)."""
    changed = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in CONSTANTS or not value:
            ap.error(f"--set {item}: give NAME=VALUE, NAME one of {', '.join(CONSTANTS)}")
        changed[name] = type(CONSTANTS[name][1][0])(float(value))
    return changed


def constants(families: list[Family], layers: int, fractions: list[float], n_scan: int) -> None:
    """Each scoring constant at a lower and a higher value in turn (and the agreement and recruit bars,
    which ``evaluate`` takes)."""
    variants = [("(none: today's constants)", {}, {}),
                *((f"DEFAULT_AGREEMENT = {v}", {"agreement": v}, {}) for v in (0.15, 0.5)),
                *((f"RECRUIT_AUC (recruiting) = {v}", {"recruit_auc": v}, {}) for v in (0.95, 0.99)),
                *((f"{name} = {v}", {}, {name: v}) for name, (_, values) in CONSTANTS.items() for v in values)]
    variant_table("constant", variants, families, layers, fractions, n_scan)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "held-out", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="4 families of each split, the last layer, 5%% and 20%%")
    ap.add_argument("--family", action="append", help="only families whose name contains this")
    ap.add_argument("--fresh", type=int, nargs="*", choices=sorted(FRESH_BATCHES),
                    help="only the fresh held-out families of these batches (default 1): " + ", ".join(
                        f"{k} ({', '.join(dict.fromkeys(f.artifact for f in batch))})" for k, batch in FRESH_BATCHES.items()))
    ap.add_argument("--fraction", type=float, action="append", help="prevalence (default 0.02, 0.1, 0.4)")
    ap.add_argument("--layers", type=int, choices=[1, 2], default=2, help="the last layer, or also one earlier")
    ap.add_argument("--images", type=int, default=1000, help="scan-set size")
    ap.add_argument("--clean", action="store_true", help="the rows of models trained without any artifact")
    ap.add_argument("--flat", action="store_true", help="score each scan set as one flat folder (no class folders)")
    ap.add_argument("--ablation", action="store_true", help="each piece of the scan off in turn")
    ap.add_argument("--variant", action="append", help="with --ablation: only the variants whose name contains this")
    ap.add_argument("--constants", action="store_true", help="each scoring constant at a lower and a higher value")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help=f"run with a scoring constant changed (one of {', '.join(CONSTANTS)}); repeatable")
    ap.add_argument("--off", action="append", default=[], choices=[*PIECES, *RULES],
                    help="a piece or rule of the scan off (as --ablation switches it); repeatable")
    ap.add_argument("--findings", action="store_true", help="under each row, a line per finding")
    ap.add_argument("--pooling", choices=["auto", "mean", "max"], default=DEFAULT_POOLING, help="the scan's pooling")
    ap.add_argument("--readings", choices=["pooling", "both"], default="both",
                    help="read the layer's best neuron (and the infected set's, and the probe) from each neuron's "
                         "mean and peak alike (both), or from the scan's pooling alone (the tables before 2 Dec "
                         "2026, with --pooling mean)")
    ap.add_argument("--steps", type=int, help="s-AMS steps (default: the scan's, 128)")
    ap.add_argument("--signals", type=int, help="s-AMS per neuron (default: the scan's, 4)")
    ap.add_argument("--objective", choices=list(OBJECTIVES), help="what the s-AMS maximise (default: the scan's, "
                    "channel: each neuron's mean over its map; channel_max: its peak)")
    args = ap.parse_args()
    SCORING.update(pooling=args.pooling, readings=args.readings)
    global SAMS
    SAMS = dataclasses.replace(SAMS, **{k: v for k, v in (("steps", args.steps), ("n_signals", args.signals),
                                                          ("objective", args.objective)) if v})
    changed = parse_constants(args.set, ap)
    if args.clean:
        clean = [f for f in CLEAN_FAMILIES if args.split in ("all", f.split)]
        with scoring_constants(changed):
            run_clean([f for f in clean if not args.family or any(s in f.name for s in args.family)], args.images)
        return 0
    batch = FAMILIES if args.fresh is None else [f for k in args.fresh or [1] for f in FRESH_BATCHES[k]]
    families = [f for f in batch if args.split in ("all", f.split)]
    if args.quick:
        families = [f for f in families if f.split == "dev"][:4] + [f for f in families if f.split == "held-out"][:4]
    if args.family:
        families = [f for f in families if any(s in f.name for s in args.family)]
    fractions = args.fraction or ([0.05, 0.2] if args.quick else [0.02, 0.1, 0.4])
    layers = 1 if args.quick else args.layers
    with scoring_constants(changed):
        if args.ablation:
            ablation(families, layers, fractions, args.images, args.variant)
        elif args.constants:
            constants(families, layers, fractions, args.images)
        else:
            if "peak" in args.off:
                SCORING.update(pooling="mean")
            with rules_off(set(args.off) & set(RULES)):
                run(families, layers, fractions, args.images, args.flat, frozenset(args.off) & frozenset(PIECES),
                    args.findings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
