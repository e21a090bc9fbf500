"""Train the bundled demo model, or check that every planted case learns an artifact detector.

    python benchmarks/train_demo_model.py            # writes dora_clean/assets/demo_model.{pt,json}
    python benchmarks/train_demo_model.py --check    # 2 archs x 3 artifacts: accuracy,
                                                     # reliance and the oracle AUC

The oracle is the best single channel of the default layer used as an
artifact detector on a scan set (write_scan_set, 20% artifact images): the
AUC of the channel's spatial mean (and spatial max) against the artifact
labels. DORA can only find what this oracle shows is there.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torchvision.models.feature_extraction import create_feature_extractor

import planted
from dora_clean import demo
from dora_clean.demo import nets
from dora_clean.atomic import atomic_save, atomic_write

DEMO_ARCH = "tiny_resnet"
DEMO_ARTIFACT = "text"


@torch.no_grad()
def layer_activations(
    model: torch.nn.Module, layer: str, images: np.ndarray, batch_size: int = 200
):
    """Spatial mean and spatial max of every channel of ``layer``: two (N, C) arrays."""
    fx = create_feature_extractor(model.eval(), return_nodes={layer: "feat"})
    means, maxes = [], []
    for i in range(0, len(images), batch_size):
        f = fx(planted.to_tensor(images[i:][:batch_size]))["feat"]
        means.append(f.mean(dim=(2, 3)).numpy())
        maxes.append(f.amax(dim=(2, 3)).numpy())
    return np.concatenate(means), np.concatenate(maxes)


def read_scan_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    images = np.stack([np.asarray(Image.open(root / r["filepath"]).convert("RGB")) for r in rows])
    return images, np.array([int(r["artifact"]) for r in rows])


def oracle(model: torch.nn.Module, layer: str, images: np.ndarray, labels: np.ndarray) -> dict:
    """The best channel's AUC (and its index) for spatial-mean and spatial-max pooling."""
    out = {}
    for name, acts in zip(("mean", "max"), layer_activations(model, layer, images)):
        aucs = np.array(
            [
                roc_auc_score(labels, acts[:, c]) if acts[:, c].std() > 0 else 0.5
                for c in range(acts.shape[1])
            ]
        )
        best = int(np.argmax(aucs))
        out[name] = {
            "auc": float(aucs[best]),
            "channel": best,
            "n_channels_over_0.9": int((aucs > 0.9).sum()),
            "second_auc": float(np.sort(aucs)[-2]),
        }
    return out


def check(args) -> int:
    cache = Path(args.cache) if args.cache else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for artifact in planted.ARTIFACTS:
            scan = planted.write_scan_set(
                Path(tmp) / artifact, artifact, args.scan_images, 0.2, seed=1
            )
            images, labels = read_scan_set(scan)
            for arch in nets.ARCHITECTURES:
                t0 = time.perf_counter()
                model, metrics = planted.load_planted_model(
                    arch, artifact, cache_dir=cache, progress=args.progress
                )
                wall = time.perf_counter() - t0
                o = oracle(model, nets.default_layer(arch), images, labels)
                rows.append((arch, artifact, metrics, o, wall))
                print(
                    f"{arch:12s} {artifact:6s} clean {metrics['clean_accuracy']:.3f} "
                    f"reliance {metrics['reliance']:.3f} "
                    f"oracle mean {o['mean']['auc']:.4f} (ch {o['mean']['channel']}) "
                    f"max {o['max']['auc']:.4f} (ch {o['max']['channel']}) "
                    f"train {metrics['train_seconds']:.0f} s",
                    flush=True,
                )
    print()
    hdr = (
        "arch",
        "artifact",
        "clean acc",
        "others acc",
        "A w/o art",
        "reliance",
        "train-dist",
        "AUC mean",
        "ch",
        "#>0.9",
        "AUC max",
        "ch",
        "#>0.9",
        "train s",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    ok = True
    for arch, artifact, m, o, _ in rows:
        print(
            f"| {arch} | {artifact} | {m['clean_accuracy']:.3f} | "
            f"{m['clean_accuracy_others']:.3f} | "
            f"{m['artifact_class_accuracy_without_artifact']:.3f} | {m['reliance']:.3f} | "
            f"{m['train_distribution_accuracy']:.3f} | {o['mean']['auc']:.4f} | "
            f"{o['mean']['channel']} | {o['mean']['n_channels_over_0.9']} | "
            f"{o['max']['auc']:.4f} | {o['max']['channel']} | "
            f"{o['max']['n_channels_over_0.9']} | {m['train_seconds']:.0f} |"
        )
        ok &= o["mean"]["auc"] >= 0.95 and m["reliance"] >= 0.8
    print(
        "\nall cases meet the target (oracle AUC with mean pooling >= 0.95, reliance >= 0.8):", ok
    )
    return 0 if ok else 1


def train_demo(args) -> int:
    model, metrics = planted.train_model(
        DEMO_ARCH, args.artifact, progress=True, **{k: v for k, v in planted.TRAIN_DEFAULTS.items()}
    )
    pt, js = demo.demo_asset_paths()
    with tempfile.TemporaryDirectory() as tmp:
        scan = planted.write_scan_set(
            Path(tmp) / "scan", args.artifact, args.scan_images, 0.2, seed=1
        )
        images, labels = read_scan_set(scan)
    o = oracle(model, nets.default_layer(DEMO_ARCH), images, labels)
    metrics["oracle"] = o
    info = planted.demo_description(DEMO_ARCH, args.artifact, metrics)
    atomic_save(pt, lambda p: torch.save(model.state_dict(), p))
    with atomic_write(js) as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    js.chmod(0o644)  # package data: readable by all (the temporary file was private)
    print(json.dumps(info, indent=2))
    print(f"wrote {pt} ({pt.stat().st_size / 1e3:.0f} kB) and {js}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--check", action="store_true", help="train/load all 6 cases and print the oracle table"
    )
    p.add_argument("--artifact", default=DEMO_ARTIFACT, choices=planted.ARTIFACTS)
    p.add_argument("--scan-images", type=int, default=600)
    p.add_argument(
        "--cache", default=None, help="cache dir for --check (default: $DORA_CLEAN_CACHE)"
    )
    p.add_argument("--progress", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    return check(args) if args.check else train_demo(args)


if __name__ == "__main__":
    sys.exit(main())
