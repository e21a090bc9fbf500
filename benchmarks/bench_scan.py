"""Scan throughput against its limit, and peak memory as the dataset grows.

The limit is the truncated model's forward pass on the same images already
decoded in memory. The scan reads the files (64 px PNG or JPEG), decodes them
in DataLoader workers (or, with ``--device cuda``, JPEGs in one batch on the
GPU) and writes its chunks to disk. Each scan runs in a fresh process so its
peak RSS (main process, and its largest child: a worker, or a helper process that a library started) is its own. The limit is
measured right before and right after each scan, and the row's ratio is
against their mean: the machine's speed drifts.

    python benchmarks/bench_scan.py                       # 10k images; rows for 0/1/2 workers
    python benchmarks/bench_scan.py --sizes 10000 100000  # peak memory at 10k and 100k (first --workers value)
    python benchmarks/bench_scan.py --device cuda         # adds rows with the GPU JPEG decode
    python benchmarks/bench_scan.py --model resnet18      # a torchvision model, to its default layer

With the tiny demo model the forward pass costs about as much CPU time as
decoding a 64 px PNG, so on two cores the scan cannot come near the limit;
with a larger model decoding is a small share.
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

import torch


def make_dataset(root: Path, n: int, fmt: str = "png", distinct: int = 2000) -> Path:
    """n files in 4 class folders: ``distinct`` real images (PNG, or JPEG quality 90), the rest hard links."""
    from PIL import Image

    from dora_clean.demo.shapes import ScanSetSpec, write_scan_set

    base = root / "base"
    if not (base / "labels.csv").is_file():
        write_scan_set(base, ScanSetSpec(distinct, seed=11), overwrite=True)
    files = sorted(base.rglob("*.png"))
    if fmt == "jpg":
        jpg = root / "base-jpg"
        if not jpg.is_dir():
            tmp = root / ".base-jpg.tmp"
            for f in files:
                (tmp / f.parent.name).mkdir(parents=True, exist_ok=True)
                Image.open(f).save(tmp / f.parent.name / (f.stem + ".jpg"), quality=90)
            tmp.rename(jpg)
        files = sorted(jpg.rglob("*.jpg"))
    data = root / f"data-{fmt}-{n}"
    if data.is_dir():
        return data
    tmp = root / f".data-{fmt}-{n}.tmp"
    for i in range(n):
        src = files[i % len(files)]
        dst = tmp / src.parent.name / f"{i:07d}.{fmt}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    tmp.rename(data)
    return data


def load(model_name: str):
    """(model, layer, mean, std): the bundled demo model, or a torchvision model (random weights)."""
    from dora_clean.demo import load_demo_model
    from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD

    if model_name == "demo":
        model, info = load_demo_model()
        return model, info["layer"], info["mean"], info["std"]
    import torchvision

    from dora_clean.models import default_layer, freeze

    model = freeze(torchvision.models.get_model(model_name, weights=None).eval())
    return model, default_layer(model, 64), IMAGENET_MEAN, IMAGENET_STD


def limit(device: str, n: int = 2048, batch: int = 64, model_name: str = "demo") -> float:
    """Images per second of the truncated model's forward on decoded images in memory."""
    from dora_clean.device import autocast, prepare_model, resolve_device
    from dora_clean.models import LayerModel

    dev = resolve_device(device)
    model, layer, mean, std = load(model_name)
    lm = prepare_model(LayerModel(model, layer), dev)
    x_all = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
    mean = torch.tensor(mean, device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(std, device=dev).view(1, 3, 1, 1) * 255
    best = float("inf")
    with torch.no_grad():
        for _ in range(3):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for a in range(0, n, batch):
                x = (x_all[a : a + batch].to(dev).float() - mean) / std
                with autocast(dev):
                    act = lm(x).float()
                act.mean(dim=(2, 3)).cpu(), act.amax(dim=(2, 3)).cpu()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return n / best


def one_scan(data: str, workers: int, device: str, batch: int, gpu_decode: bool, model_name: str) -> None:
    """Run in a child process: scan and print JSON with the time and peak RSS."""
    from dora_clean.device import prepare_model, resolve_device
    from dora_clean.scanning import list_images
    from dora_clean.models import LayerModel
    from dora_clean.scanning import scan_images
    from dora_clean.scanning.activations import ScanOptions

    dev = resolve_device(device)
    model, layer, mean, std = load(model_name)
    lm = prepare_model(LayerModel(model, layer), dev)
    entries, _, _ = list_images(data)
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        options = ScanOptions(64, mean, std, dev, batch_size=batch, workers=workers, progress=False,
                              gpu_decode=gpu_decode)
        res = scan_images(lm, data, entries, work, options, [0])
        took = time.perf_counter() - t
        assert len(res.entries) == len(entries)
    kb = 1024 if sys.platform != "darwin" else 1
    print(json.dumps({
        "seconds": took, "n": len(entries),
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb / 2**20,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kb / 2**20,
    }))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--formats", nargs="+", default=["png", "jpg"], choices=["png", "jpg"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="demo", help="demo (the bundled tiny ResNet) or a torchvision model name")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--root", default=None, help="where to write the images (default: a cache folder)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one_scan(args.one[0], int(args.one[1]), args.device, args.batch_size, args.one[2] == "1", args.model)
        return
    from dora_clean.device import resolve_device
    from dora_clean.analysis.sams import cache_root

    root = Path(args.root or cache_root() / "bench-scan")
    cuda = resolve_device(args.device).type == "cuda"
    rows = []
    lim_before = limit(args.device, batch=args.batch_size, model_name=args.model)
    for n in args.sizes:
        for fmt in args.formats:
            data = make_dataset(root, n, fmt)
            for w in args.workers if n == args.sizes[0] else args.workers[:1]:
                for gpu_decode in ([False, True] if cuda and fmt == "jpg" else [False]):
                    out = subprocess.run(
                        [sys.executable, __file__, "--one", str(data), str(w), str(int(gpu_decode)),
                         "--device", args.device, "--batch-size", str(args.batch_size), "--model", args.model],
                        capture_output=True, text=True, check=True,
                    )
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    lim_after = limit(args.device, batch=args.batch_size, model_name=args.model)
                    lim = (lim_before + lim_after) / 2
                    rows.append((n, fmt + (" gpu" if gpu_decode else ""), w, r["n"] / r["seconds"], lim,
                                 r["rss_main_mb"], r["rss_worker_mb"]))
                    lim_before = lim_after
    model_desc = "demo model (tiny ResNet, layer3)" if args.model == "demo" else f"{args.model} (random weights)"
    print(f"\ndevice {args.device}, {model_desc}, 64 px images, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    print("limit: the forward pass on decoded images in memory, measured before and after each scan\n")
    print(f"{'images':>8} {'format':>7} {'workers':>7} {'images/s':>9} {'limit':>7} {'of limit':>8} "
          f"{'peak RSS main':>13} {'child':>7}")
    for n, fmt, w, ips, lim, rm, rw in rows:
        print(f"{n:>8,} {fmt:>7} {w:>7} {ips:>9,.0f} {lim:>7,.0f} {ips / lim:>8.2f} {rm:>10.0f} MB {rw:>4.0f} MB")

if __name__ == "__main__":
    main()
