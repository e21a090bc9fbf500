"""Mean or peak: a screen of how a neuron's map becomes an image score, on the families benchmark.

Each row (family, layer, prevalence) is scored twice, with ``--pooling mean`` and with ``--pooling max``
(dora-clean's scoring unchanged otherwise), and the goals are judged against the layer's best neuron read
either way (``evaluate(..., readings="both")``). Besides each pooling alone, two label-free ways to choose
one per scan are shown: the pooling whose first finding has the more :attr:`~Candidate.structure`, the
one whose first finding wins the seed contest against the other's (:meth:`~Candidate.beats`), and the
first with the peak taken only where its first finding is not the mean's again (``new split``) or where
its structure passes the mean's by :data:`dora_clean.scoring.thresholds.STRUCTURE` (``peak by the bar``: variant PS,
:func:`dora_clean.scoring.peak_reads_better`; docs/benchmark.md, "Mean or peak"), and that only where no
finding of the mean is confident (``peak, mean unconf``: what the scan's default ``--pooling auto`` does,
variant PR, "The peak for review"), and that only where the layer reproduces the peak's first finding too
(``peak reproduced``: variant PRR). Since PR, no finding read from the peak is confident, so every column
that takes the peak removes nothing there. ``worse`` counts the rows where a choice took the reading whose
combined AUC is clearly (:data:`WORSE`) below the other's.

    python benchmarks/pooling_screen.py                     # dev, both layers, 2/10/40%
    python benchmarks/pooling_screen.py --fraction 0.01 --fraction 0.005
    python benchmarks/pooling_screen.py --clean             # models trained without any artifact
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from dora_clean.scoring import MIN_REPRODUCING, peak_reads_better, same_images
from families import FAMILIES, FRESH_BATCHES, default_layers
from families_benchmark import CLEAN_FAMILIES, goals, prepare, prepare_clean
from planted_benchmark import Case, evaluate

#: A choice took the clearly worse reading where its combined AUC is this far below the other's.
WORSE = 0.1

#: A way to choose the pooling of one scan from its two scorings (each evaluate()'s dict): "mean" or "max".
Choice = Callable[[dict, dict], str]


def first(e: dict):
    """The first finding's candidate."""
    return e["findings"][0].candidate


def by_the_bar(m: dict, x: dict) -> bool:
    """PS: the peak's first finding splits clearly further from a bell curve than the mean's (the scan's own
    test, :func:`dora_clean.scoring.peak_reads_better`)."""
    return peak_reads_better(m["findings"][0], x["findings"][0])


def mean_unconf(m: dict, x: dict) -> bool:
    """PU / PR: PS, but only where no finding of the mean is confident (findings come confident first)."""
    return not m["findings"][0].confidence.confident and by_the_bar(m, x)


CHOICES: dict[str, Choice] = {
    "mean": lambda m, x: "mean",
    "max": lambda m, x: "max",
    "more structure": lambda m, x: "max" if first(x).structure > first(m).structure else "mean",
    "contest": lambda m, x: "max" if first(x).beats(first(m)) else "mean",
    "peak by the bar": lambda m, x: "max" if by_the_bar(m, x) else "mean",
    "peak, mean unconf": lambda m, x: "max" if mean_unconf(m, x) else "mean",
    # PR, but the peak only where the layer reproduces its first finding too (MIN_REPRODUCING): variant PRR
    "peak reproduced": lambda m, x: ("max" if mean_unconf(m, x)
                                     and x["findings"][0].confidence.reproducing >= MIN_REPRODUCING else "mean"),
    # the peak only where it splits off other images than the mean's first finding (findings.same_images)
    "new split": lambda m, x: ("max" if first(x).structure > first(m).structure
                               and not same_images(x["findings"][0].flagged, m["findings"][0].flagged) else "mean"),
}


def misses(e: dict, n: int) -> set[str]:
    """The goals a row misses (``families_benchmark.goals`` but ``inf``, which the pooling does not move), and
    ``clean`` where more than 1% of the ``n`` images are removed as confident (the clean-model goal)."""
    out = set(goals(e)) - {"inf"}
    if e["n_removed"] > 0.01 * n:
        out.add("clean")
    return out


def screen(cases: list[tuple[str, str, Case]], show: bool = False) -> dict[tuple[str, str], dict[str, int]]:
    """Score each (name, layer kind, case) with both poolings; returns per (choice, layer kind) the rows
    meeting each goal. ``show``: a line per row."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for name, kind, case in cases:
        by = {p: evaluate(case, pooling=p, readings="both") for p in ("mean", "max")}  # the same layer's best
        line = []
        for choice, choose in CHOICES.items():
            pooling = choose(by["mean"], by["max"])
            e, other = by[pooling], by["max" if pooling == "mean" else "mean"]
            miss = misses(e, len(case.y))
            c = counts.setdefault((choice, kind),
                                  dict.fromkeys(("rows", "comb", "P/R", "export", "clean", "max", "worse"), 0))
            c["rows"] += 1
            for goal in ("comb", "P/R", "export"):
                c[goal] += goal not in miss
            c["clean"] += "clean" not in miss
            c["max"] += pooling == "max"
            c["worse"] += e["combined_auc"] <= other["combined_auc"] - WORSE
            line.append(f"{choice} {pooling} {e['combined_auc']:.3f} {e['precision']:.2f}/{e['recall']:.2f} "
                        f"rm {e['n_removed']} {','.join(sorted(miss - {'clean'})) or '-'}")
        if show:
            print(f"{name} | oracle {by['mean']['oracle_auc']:.3f} | " + " | ".join(line), flush=True)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "held-out", "all"], default="dev")
    ap.add_argument("--fresh", type=int, choices=sorted(FRESH_BATCHES), help="a fresh batch's families instead")
    ap.add_argument("--fraction", type=float, action="append", help="prevalence (default 0.02, 0.1, 0.4)")
    ap.add_argument("--layers", type=int, choices=[1, 2], default=2)
    ap.add_argument("--clean", action="store_true", help="the clean models' rows (clean, and 10%% unlearned)")
    ap.add_argument("--family", action="append", help="only families whose name contains this")
    ap.add_argument("--rows", action="store_true", help="a line per row")
    args = ap.parse_args()
    if args.clean:
        cases = [(f"{f.name} clean {x:g}", "clean", prepare_clean(f, x, 1000)) for f in CLEAN_FAMILIES
                 for x in (0.0, 0.1)]
    else:
        batch = FAMILIES if args.fresh is None else FRESH_BATCHES[args.fresh]
        families = [f for f in batch if args.split in ("all", f.split)
                    and (not args.family or any(s in f.name for s in args.family))]
        cases = [(f"{f.name} {layer} {x * 100:g}%", "last" if depth == 0 else "earlier", prepare(f, layer, x, 1000))
                 for f in families for depth, layer in enumerate(default_layers(f.arch)[:args.layers])
                 for x in args.fraction or [0.02, 0.1, 0.4]]
    counts = screen(cases, args.rows)
    print(f"\n{'pooling':<17} {'layer':<8} {'rows':>4} {'comb':>5} {'P/R':>5} {'export':>6} {'<=1%':>5} {'max':>4} "
          f"{'worse':>5}")
    for (choice, kind), c in counts.items():
        print(f"{choice:<17} {kind:<8} {c['rows']:4d} {c['comb']:5d} {c['P/R']:5d} {c['export']:6d} {c['clean']:5d} "
              f"{c['max']:4d} {c['worse']:5d}")
    print("(goals against the layer's best neuron read from its mean or its peak; <=1%: rows removing at most "
          "1% of the images as confident, the clean-model goal; max: rows where the choice took the peak; worse: "
          f"rows where the reading taken scores a combined AUC {WORSE} or more below the other reading's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
