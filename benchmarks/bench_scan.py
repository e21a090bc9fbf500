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
    python benchmarks/bench_scan.py --model resnet18 --workers 0 --repeats 3   # best of 3 scans a row

The limit is the best of three passes; ``--repeats N`` times each scan N
times (each in a fresh process) and keeps the best, against the better of
the limits measured before and after: on a shared machine other programs only
slow either down, so best against best is measured alike.

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


def make_photos(root: Path, distinct: int = 400) -> list[Path]:
    """ImageNet-sized JPEGs (500 x 375 or 375 x 500, quality 90, about ImageNet's mean size): random crops of
    the colour photographs that ship with scikit-image and scikit-learn (nothing is downloaded)."""
    import numpy as np
    from PIL import Image

    photos = root / "base-photo"
    if not photos.is_dir():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from families import _photos

        rng = np.random.default_rng(5)
        sources = _photos()
        tmp = root / ".base-photo.tmp"
        for i in range(distinct):
            src = sources[i % len(sources)]
            h, w = src.shape[:2]
            side = int(min(h, w) * rng.uniform(0.6, 1.0))
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side * 3 // 4 + 1)
            crop = Image.fromarray(src[y : y + side, x : x + side * 3 // 4])
            out = crop.resize((375, 500) if i % 3 == 0 else (500, 375), Image.BICUBIC)
            (tmp / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
            out.save(tmp / f"c{i % 4}" / f"{i:05d}.jpg", quality=90)
        tmp.rename(photos)
    return sorted(photos.rglob("*.jpg"))


def make_dataset(root: Path, n: int, fmt: str = "png", distinct: int = 2000) -> Path:
    """n files in 4 class folders: ``distinct`` real images (64 px shapes as PNG or JPEG quality 90, or
    ``photo``: ImageNet-sized JPEG photos, :func:`make_photos`), the rest hard links."""
    from PIL import Image

    from dora_clean.demo.shapes import ScanSetSpec, write_scan_set

    if fmt == "photo":
        return _linked(root, n, fmt, make_photos(root))
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
    return _linked(root, n, fmt, files)


def _linked(root: Path, n: int, fmt: str, files: list[Path]) -> Path:
    """``root/data-FMT-N``: n hard links to ``files``, in their class folders."""
    data = root / f"data-{fmt}-{n}"
    if data.is_dir():
        return data
    tmp = root / f".data-{fmt}-{n}.tmp"
    for i in range(n):
        src = files[i % len(files)]
        dst = tmp / src.parent.name / f"{i:07d}{src.suffix}"
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


def limit(device: str, n: int = 2048, batch: int = 64, model_name: str = "demo", size: int = 64) -> float:
    """Images per second of the truncated model's forward on decoded images in memory."""
    from dora_clean.device import autocast, prepare_model, resolve_device
    from dora_clean.models import LayerModel

    dev = resolve_device(device)
    model, layer, mean, std = load(model_name)
    lm = prepare_model(LayerModel(model, layer), dev)
    n = n if size <= 64 else max(4 * batch, n * 64 * 64 // (size * size))  # about as long as at 64 px
    x_all = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
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


def one_scan(data: str, o: dict) -> None:
    """Run in a child process: scan and print JSON with the time and peak RSS.

    ``o``: workers, device, batch, gpu_decode, model, size, and ray (an address, or None: the local scan).
    With Ray, the runtime is started (or joined) before the clock starts; the actors' start is timed.
    """
    from dora_clean.device import prepare_model, resolve_device
    from dora_clean.scanning import list_images
    from dora_clean.models import LayerModel
    from dora_clean.scanning import scan_images
    from dora_clean.scanning.activations import ScanOptions

    dev = resolve_device(o["device"] if not o["ray"] else "cpu")
    model, layer, mean, std = load(o["model"])
    lm = prepare_model(LayerModel(model, layer), dev)
    entries, _, _ = list_images(data)
    if o["ray"]:
        from dora_clean.scanning.distributed import connect, scan_images_ray

        connect(o["ray"])
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        options = ScanOptions(o["size"], mean, std, dev, batch_size=o["batch"], workers=o["workers"],
                              progress=False, gpu_decode=o["gpu_decode"])
        if o["ray"]:
            import dataclasses

            res = scan_images_ray(lm, data, entries, work, dataclasses.replace(options, device=o["device"]), [0],
                                  address=o["ray"])
        else:
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000],
                    help="dataset sizes (images); rows for every --workers value at the first size only")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers, one row each")
    ap.add_argument("--formats", nargs="+", default=["png", "jpg"], choices=["png", "jpg", "photo"],
                    help="64 px shapes as png or jpg, or photo: ImageNet-sized JPEG photos (500 x 375)")
    ap.add_argument("--image-size", type=int, default=64, help="the model's input side (224 for ImageNet)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="demo", help="demo (the bundled tiny ResNet) or a torchvision model name")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="scans per row (fresh processes); the best is kept")
    ap.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="also a row per format for the scan on Ray (local: a runtime on this machine)")
    ap.add_argument("--root", default=None, help="where to write the images (default: a cache folder)")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one_scan(args.one[0], json.loads(args.one[1]))
        return
    from dora_clean.device import resolve_device
    from dora_clean.analysis.sams import cache_root

    root = Path(args.root or cache_root() / "bench-scan")
    cuda = resolve_device(args.device).type == "cuda"
    size = args.image_size
    rows = []

    def measure_limit() -> float:
        return limit(args.device, batch=args.batch_size, model_name=args.model, size=size)

    lim_before = measure_limit()
    for n in args.sizes:
        for fmt in args.formats:
            data = make_dataset(root, n, fmt)
            runs_of_row = [(w, gpu, None) for w in (args.workers if n == args.sizes[0] else args.workers[:1])
                           for gpu in ([False, True] if cuda and fmt != "png" else [False])]
            if args.ray:
                runs_of_row.append((0, False, args.ray))
            for w, gpu_decode, ray in runs_of_row:
                o = {"workers": w, "device": args.device, "batch": args.batch_size, "gpu_decode": gpu_decode,
                     "model": args.model, "size": size, "ray": ray}
                runs = [json.loads(subprocess.run(
                    [sys.executable, __file__, "--one", str(data), json.dumps(o)],
                    capture_output=True, text=True, check=True,
                ).stdout.strip().splitlines()[-1]) for _ in range(max(1, args.repeats))]
                r = min(runs, key=lambda x: x["seconds"])
                lim_after = measure_limit()
                # one scan: against the mean of the limits around it; the best of several: against the best limit
                lim = max(lim_before, lim_after) if args.repeats > 1 else (lim_before + lim_after) / 2
                rows.append((n, fmt + (" gpu" if gpu_decode else ""), "ray" if ray else w, r["n"] / r["seconds"],
                             lim, max(x["rss_main_mb"] for x in runs), max(x["rss_worker_mb"] for x in runs)))
                lim_before = lim_after
    model_desc = "demo model (tiny ResNet, layer3)" if args.model == "demo" else f"{args.model} (random weights)"
    print(f"\ndevice {args.device}, {model_desc}, {size} px model input, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, best of {max(1, args.repeats)} scan(s)")
    print("limit: the forward pass on decoded images in memory, measured before and after each row "
          + ("(the better of the two)" if args.repeats > 1 else "(their mean)"))
    if args.ray:
        print(f"ray: the scan on Ray ({args.ray}; the runtime started before the clock, the actors' start timed)")
    print(f"\n{'images':>8} {'format':>7} {'workers':>7} {'images/s':>9} {'limit':>7} {'of limit':>8} "
          f"{'peak RSS main':>13} {'child':>7}")
    for n, fmt, w, ips, lim, rm, rw in rows:
        print(f"{n:>8,} {fmt:>7} {w:>7} {ips:>9,.0f} {lim:>7,.0f} {ips / lim:>8.2f} {rm:>10.0f} MB {rw:>4.0f} MB")


if __name__ == "__main__":
    main()
