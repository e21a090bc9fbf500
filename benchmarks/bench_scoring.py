"""What scoring costs at size: the combined score alone against the findings, side by side.

A synthetic layer (memory-mapped float32 activations, as a scan writes them):
N images x C neurons of noise, two artifacts on 10% of the images each (eight
detectors each), four classes with a few neurons of class content, and 25
infected neurons (detectors of the first artifact, class neurons and noise).
Each row runs in a fresh process and prints its seconds and peak RSS:

- ``combined``: the scoring before findings, ``artifact_scores`` without the
  layer's own seeds (skewed and bimodal), and the winner's confidence (``assess``);
- ``skewed``: ``artifact_scores`` with the skewed seeds only, then ``find_findings``
  (every distinct candidate judged): the findings before the bimodal seeds;
- ``findings``: the same with the skewed and the bimodal seeds;
- ``scan, mean``: what a scan runs by default, ``--pooling mean`` (``score_findings``: the findings, and
  again centred within the class folders where the first answer goes with them);
- ``scan, auto``: the option ``--pooling auto``: the same on each neuron's mean and on its peak (a second
  array of the same size), and the choice between them.

    python benchmarks/bench_scoring.py                       # 100,000 x 1,024 (a few minutes on 2 cores)
    python benchmarks/bench_scoring.py --images 20000 --neurons 256
    python benchmarks/bench_scoring.py --variant "scan, mean" --code /tmp/before --code .   # two checkouts

``--code DIR`` (repeatable) runs each row with that checkout's ``dora_clean`` first on the path, the checkouts
one after the other on the same layer: a change's cost, side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_layer(path: Path, n: int, c: int, seed: int = 0) -> tuple[list[int], list[str]]:
    """Write the activations to ``path`` (.npy); returns the infected neurons and the classes (the same
    for every ``seed``: it draws the noise)."""
    rng = np.random.default_rng(0)
    noise = np.random.default_rng(seed)
    acts = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, c))
    a, b = rng.random(n) < 0.1, rng.random(n) < 0.1
    cls = rng.integers(0, 4, n)
    for start in range(0, n, 10_000):
        rows = slice(start, min(n, start + 10_000))
        block = noise.normal(size=(rows.stop - rows.start, c)).astype(np.float32)
        block[:, 0:8] += 5.0 * a[rows, None]
        block[:, 8:16] += 5.0 * b[rows, None]
        block[:, 16:20] += 3.0 * (cls[rows, None] == np.arange(4))
        acts[rows] = block
    acts.flush()
    infected = list(range(0, 8)) + list(range(16, 20)) + list(range(100, 113))
    return infected, [f"c{k}" for k in cls]


def one(path: str, infected: list[int], classes: list[str], variant: str) -> dict:
    from dora_clean.scoring import ScoringSettings, artifact_scores, assess, class_codes, find_findings, score_findings

    acts = np.load(path, mmap_mode="r")
    peaks = np.load(str(Path(path).with_name("peaks.npy")), mmap_mode="r")
    t = time.perf_counter()
    if variant.startswith("scan"):
        n_findings = len(score_findings(acts, peaks, infected, variant.split(", ")[1], classes)[1])
    elif variant == "combined":
        s = artifact_scores(acts, acts, infected, classes=classes,
                            settings=ScoringSettings(off=frozenset({"skewed", "bimodal"})))
        assess(acts, s.score > s.threshold, class_codes(classes))
        n_findings = 1
    else:
        off = frozenset({"bimodal"}) if variant == "skewed" else frozenset()
        s = artifact_scores(acts, acts, infected, classes=classes, settings=ScoringSettings(off=off))
        n_findings = len(find_findings(acts, s, class_codes(classes)))
    return {"seconds": time.perf_counter() - t, "findings": n_findings,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


#: The rows, in the order they are printed.
VARIANTS = ("combined", "skewed", "findings", "scan, mean", "scan, auto")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--variant", action="append", choices=VARIANTS, help="only these rows (default: all)")
    ap.add_argument("--code", action="append", type=Path, metavar="DIR",
                    help="a checkout whose dora_clean the rows run (repeatable; default: the installed one)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        path, meta, variant = args.one
        m = json.loads(Path(meta).read_text())
        print(json.dumps(one(path, m["infected"], m["classes"], variant)))
        return 0
    with tempfile.TemporaryDirectory(prefix="dora-bench-scoring-") as tmp:
        path, meta = Path(tmp) / "acts.npy", Path(tmp) / "meta.json"
        infected, classes = make_layer(path, args.images, args.neurons)
        make_layer(Path(tmp) / "peaks.npy", args.images, args.neurons, seed=1)  # the peaks: other noise
        meta.write_text(json.dumps({"infected": infected, "classes": classes}))
        print(f"{args.images:,} images x {args.neurons:,} neurons, {len(infected)} infected, 4 classes")
        print("| scoring | code | findings | seconds | peak RSS (MB) |")
        print("| --- | --- | ---: | ---: | ---: |")
        for variant in args.variant or VARIANTS:
            for code in args.code or [None]:
                env = None if code is None else dict(os.environ, PYTHONPATH=os.pathsep.join(
                    [str(code.resolve())] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
                r = subprocess.run([sys.executable, __file__, "--one", str(path), str(meta), variant],
                                   capture_output=True, text=True, env=env)
                if r.returncode:
                    sys.exit(f"{variant} failed:\n{r.stderr[-3000:]}")
                m = json.loads(r.stdout.strip().splitlines()[-1])
                print(f"| {variant} | {code or 'installed'} | {m['findings']} | {m['seconds']:.1f} | "
                      f"{m['peak_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
