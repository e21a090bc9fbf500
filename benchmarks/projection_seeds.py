"""Would weighted read-outs of the layer, found without labels, win the contest where the mean of neurons misses?

The families benchmark's linear probe (``families_benchmark.probe_auc``)
reads the artifact at AUC 0.95 or more in dev earlier-layer rows whose
combined score misses the comb goal (16 on the scan that read each neuron's
mean alone, 8 on today's): there the artifact is spread over many
neurons, each a weak detector, and the combined score, a mean of whole
neurons' z-scores, cannot weight them. This script asks whether independent
components of the layer (scikit-learn's FastICA, on the robust z-scores of
the activations the scan's answer was scored on: centred within the class
folders where it was) can stand in for the probe without labels: a rare
artifact makes a long tail in the direction that separates it.

Per row, the ``--top`` components of largest absolute skewness, each turned
so its tail is up, are split as a combined score is (``flag_threshold``) and
join the contest on the scan's winner's terms: a component counts as a
candidate of many neurons, it competes on its separation, and a flagged set
the class folders explain (class lambda >= 0.5) is set aside. The table gives, per number of components, the rows meeting the
comb and P/R goals with and without them. Offline only: the findings,
confidence and export do not see the components. Rows are scored as the
families benchmark scores them (the scan's pooling, the layer's best read
from each neuron's mean and peak); the components are taken from the reading
the winner was scored on. ``--reproduced``: a component may win only where
more of the layer's neurons reproduce its flagged set than the winner's
(``reproducing_neurons``; variant PC).

    python benchmarks/projection_seeds.py                        # dev, both layers, 8-64 components and half
    python benchmarks/projection_seeds.py --components half --seed 1
    python benchmarks/projection_seeds.py --split held-out --components half --reproduced   # variant PC
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from dora_clean.evaluate import auc, precision_recall
from dora_clean.scoring.classes import CLASS_LAMBDA, class_codes, class_lambda
from dora_clean.scoring.combine import MIN_NEURONS
from dora_clean.scoring.confidence import reproducing_neurons
from dora_clean.scoring.findings import DEFAULT_POOLING, PEAK_REASON, same_images
from dora_clean.scoring.recruiting import column_ranks
from dora_clean.scoring.stats import robust_z, skewness
from dora_clean.scoring.thresholds import flag_threshold, separation
from families import FAMILIES, default_layers
from families_benchmark import prepare
from planted_benchmark import evaluate


def component_candidates(activations: np.ndarray, ranks: np.ndarray, codes: np.ndarray, components: int, top: int,
                         seed: int, stable: bool = False) -> list[tuple[float, np.ndarray, float]]:
    """The most skewed independent components of the layer as (separation, score, threshold), the class rule kept.
    ``stable``: only those whose flagged set a decomposition from another random state also flags
    (each holds half of the other's images: :func:`~dora_clean.scoring.findings.same_images` both ways)."""
    out = _components(activations, ranks, codes, components, top, seed)
    if stable:
        again = [score > t for _, score, t in _components(activations, ranks, codes, components, top, seed + 1)]
        out = [c for c in out
               if any(same_images(c[1] > c[2], other) and same_images(other, c[1] > c[2]) for other in again)]
    return out


def _components(activations: np.ndarray, ranks: np.ndarray, codes: np.ndarray, components: int, top: int,
                seed: int) -> list[tuple[float, np.ndarray, float]]:
    """:func:`component_candidates` from one decomposition (FastICA's ``seed``)."""
    from sklearn.decomposition import FastICA

    z = robust_z(activations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastICA's convergence warnings: a component half found still counts
        sources = FastICA(n_components=min(components, z.shape[1]), whiten="unit-variance", random_state=seed,
                          max_iter=500).fit_transform(z)
    skew = skewness(sources)
    out = []
    for j in np.argsort(-np.abs(skew))[:top]:
        score = robust_z(sources[:, [j]] * np.sign(skew[j]))[:, 0]
        t = flag_threshold(score, ranks)
        if np.mean(score > t) > 0.5:
            score, t = -score, -t
        if class_lambda(score > t, codes) < CLASS_LAMBDA:
            out.append((separation(score, t), score, float(t)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dev", choices=["dev", "held-out"])
    ap.add_argument("--components", nargs="*", default=["8", "12", "16", "24", "32", "64", "half"],
                    help="numbers of components to try; 'half': half the layer's neurons")
    ap.add_argument("--top", type=int, default=4, help="components per row, by absolute skewness")
    ap.add_argument("--seed", type=int, default=0, help="FastICA's random state")
    ap.add_argument("--fraction", type=float, nargs="*", default=[0.02, 0.1, 0.4], help="prevalences")
    ap.add_argument("--stable", action="store_true",
                    help="only components whose flags a decomposition from the next random state also gives")
    ap.add_argument("--reproduced", action="store_true",
                    help="only components whose flagged set more of the layer's neurons reproduce than the winner's")
    args = ap.parse_args()
    rows = []
    for family in [f for f in FAMILIES if f.split == args.split]:
        for depth, layer in enumerate(default_layers(family.arch)[:2]):
            for fraction in args.fraction:
                case = prepare(family, layer, fraction, 1000)
                e = evaluate(case, pooling=DEFAULT_POOLING, readings="both")
                winner = e["findings"][0]
                peak = PEAK_REASON in winner.confidence.reasons  # the winner was read from each neuron's peak
                src = np.asarray(case.max_act if peak else case.mean_act, dtype=np.float64)
                codes = class_codes(case.classes)
                if winner.class_centres is not None:  # the scan's answer was scored centred: so are the components
                    for c in np.unique(codes):
                        src[codes == c] -= np.median(src[codes == c], axis=0)
                bar = reproducing_neurons(src, e["flagged"]) if args.reproduced else -1  # what a component must beat
                rows.append((depth, case, e, src, column_ranks(src), codes, winner, bar))
    print(f"{'components':>10} | {'last: comb':>10} {'P/R':>4} {'won':>4} | {'earlier: comb':>13} {'P/R':>4} {'won':>4}")
    for k in [None, *args.components]:
        cells = []
        for depth in (0, 1):
            comb = pr = won = 0
            for d, case, e, src, ranks, codes, winner, bar in rows:
                if d != depth:
                    continue
                cand = winner.candidate
                best = (len(cand.combined) >= MIN_NEURONS, cand.separation, e["score"], e["flagged"])
                if k is not None:
                    n = src.shape[1] // 2 if k == "half" else int(k)
                    for sep, score, t in component_candidates(src, ranks, codes, n, args.top, args.seed, args.stable):
                        if (True, sep) > best[:2] and (bar < 0 or reproducing_neurons(src, score > t) > bar):
                            best = (True, sep, score, score > t)
                    won += best[2] is not e["score"]
                score, flagged = best[2], best[3]
                p, r = precision_recall(case.y, flagged)
                comb += auc(case.y, score) >= max(0.95, e["oracle_auc"] - 0.01)
                pr += min(p, r) >= e["break_even"] - 0.05
            cells.append((comb, pr, won))
        (c0, p0, w0), (c1, p1, w1) = cells
        print(f"{'none' if k is None else k:>10} | {c0:>10} {p0:>4} {w0:>4} | {c1:>13} {p1:>4} {w1:>4}", flush=True)
    print(f"({sum(1 for r in rows if r[0] == 0)} rows a layer; 'won': rows where a component won the contest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
