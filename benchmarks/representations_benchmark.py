"""Can another view of the s-AMS make DORA's outlier step find the layer's artifact detectors?

For every family and layer of the families benchmark (10% prevalence), the
rank of the layer's best detector (any neuron within 0.02 AUC of the best)
in the outlier ranking, under several representations of the layer's
response to the s-AMS, each ranked by ``knn+group`` (the default) and by
LOF. A rank marked ``*`` is inside the infected set (5% of the layer). The
s-AMS are the cached ones; only how the layer's response is summarised
changes:

- ``std-mean``: today's (the spatial mean, each responding neuron z-scored over the s-AMS);
- ``raw-mean``: the spatial mean as it is (the DORA paper's);
- ``std-max``: the spatial maximum (a small artifact excites a few positions);
- ``std-q90``: the 90th percentile over positions;
- ``std-cat``: the n signals side by side instead of averaged.

The last column is a label-free reference that uses the data, not the
s-AMS: the rank of the best detector by the absolute skewness of its
activations over the scan set (what the findings' skewed seeds use).

    python benchmarks/representations_benchmark.py [--family NAME]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import skew

from dora_clean.analysis.outliers import OutlierSettings, find_infected
from dora_clean.analysis.representations import ea_distance, standardised_responses
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD, LayerModel
from families import FAMILIES, default_layers, load_family_model
from families_benchmark import prepare
from planted_benchmark import neuron_aucs


@torch.no_grad()
def response_maps(layer_model: torch.nn.Module, sams: torch.Tensor) -> torch.Tensor:
    """The layer's activation maps on every s-AMS: uint8 [k, n, 3, S, S] -> [k * n, C, H, W]."""
    x = sams.flatten(0, 1).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return torch.cat([layer_model((x[a : a + 256] - mean) / std).float() for a in range(0, len(x), 256)])


def distances(analysis, maps: torch.Tensor) -> dict[str, np.ndarray]:
    """The EA distance under each representation."""
    k, n = analysis.sams.shape[:2]

    def std(R: torch.Tensor) -> np.ndarray:  # [k, C, n] -> the standardised EA distance
        return ea_distance(standardised_responses(R).unsqueeze(2), "raw").numpy()

    per_signal = lambda v: v.view(k, n, -1).permute(0, 2, 1)  # noqa: E731  [k * n, C] -> [k, C, n]
    return {
        "std-mean": analysis.distance,
        "raw-mean": ea_distance(analysis.A, "raw").numpy(),
        "std-max": std(per_signal(maps.amax(dim=(2, 3)))),
        "std-q90": std(per_signal(maps.flatten(2).quantile(0.9, dim=2))),
        "std-cat": std(per_signal(maps.mean(dim=(2, 3))).permute(0, 2, 1).reshape(k, -1, 1)),
    }


def best_rank(ranking: list[int], good: list[int]) -> int | None:
    """1-based rank of the first of ``good`` in ``ranking`` (None: all of them dead)."""
    ranks = [ranking.index(g) + 1 for g in good if g in ranking]
    return min(ranks) if ranks else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", help="only families whose name contains this")
    ap.add_argument("--fraction", type=float, default=0.1)
    args = ap.parse_args()
    names = ["std-mean", "raw-mean", "std-max", "std-q90", "std-cat"]
    head = (f"{'family':<42} {'split':<8} {'layer':<10} {'best':>5} | "
            + " ".join(f"{n + ' knn/lof':>16}" for n in names) + f" | {'skew':>4}")
    print(head)
    print("-" * len(head))
    hits = {}
    for family in FAMILIES:
        if args.family and not any(f in family.name for f in args.family):
            continue
        model, _ = load_family_model(family)
        for layer in default_layers(family.arch):
            case = prepare(family, layer, args.fraction, 1000)
            a = case.analysis
            raw = neuron_aucs(case.y, case.mean_act)
            two_way = np.maximum(raw, 1 - raw)
            good = [int(i) for i in np.flatnonzero(two_way >= two_way.max() - 0.02)]
            n_infected = max(1, int(0.05 * len(a.neurons)))
            cells = []
            for name, d in distances(a, response_maps(LayerModel(model, layer).eval(), a.sams)).items():
                pair = []
                for method in ("knn+group", "lof"):
                    r = best_rank(find_infected(d, a.self_act, a.neurons, OutlierSettings(method),
                                                with_atlas=False).ranking, good)
                    hit = r is not None and r <= n_infected
                    tally = hits.setdefault((family.split, name, method), [0, 0])
                    tally[0] += hit
                    tally[1] += 1
                    pair.append("dead" if r is None else f"{r}{'*' if hit else ''}")
                cells.append(f"{'/'.join(pair):>16}")
            by_skew = list(np.argsort(-np.abs(skew(case.mean_act, axis=0))))
            skew_rank = min(by_skew.index(g) + 1 for g in good)
            short = layer.rsplit(".", 1)[-1][:10]
            print(f"{family.name:<42} {family.split:<8} {short:<10} {two_way.max():5.3f} | " + " ".join(cells)
                  + f" | {skew_rank:>4}", flush=True)
    print("\nrows whose infected set holds the best detector:")
    for (split, name, method), (hit, n) in sorted(hits.items()):
        print(f"  {split:<8} {name:<9} {method:<9} {hit} of {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
