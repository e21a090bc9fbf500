"""The GPU paths, checked and timed in one run: for a session that is lent a GPU machine.

dora-clean's GPU paths (bf16 autocast, channels-last, JPEG decoding with
nvjpeg) are built and tested on CPU only. This script checks each against
the CPU/fp32 path on the same input and prints one table:

1. **bf16 + channels-last**: ResNet-50 ``layer4`` (random weights) on 64
   images at 224 px, ``prepare_model`` + ``autocast`` on the GPU against fp32
   on the CPU: the relative error of the pooled activations and how well the
   neurons' rankings of the images agree (Spearman, the median over neurons).
2. **nvjpeg**: 64 JPEGs decoded in one batch on the GPU (``decode_jpegs``)
   against Pillow on the CPU (``load_image``): the largest difference in
   pixel values (0-1).
3. **The s-AMS of a real layer**: ResNet-50 ``layer4``, all 2,048 neurons,
   default settings (4 signals, 128 steps, 128 px), timed end to end
   (``generate_sams``); the issue's target is under 5 minutes on one H200.
   ``--neurons N`` times N neurons and extrapolates.
4. **The scan**: ``benchmarks/bench_scan.py``'s rows for ResNet-50 at 224 px
   on JPEGs, run separately (its command is printed at the end).

    python benchmarks/gpu_check.py                    # on the GPU machine (about 5-10 minutes)
    python benchmarks/gpu_check.py --device cpu --quick   # a dry run of the script on CPU
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from scipy.stats import spearmanr

from dora_clean.analysis.sams import SamsConfig, generate_sams
from dora_clean.device import autocast, prepare_model, resolve_device
from dora_clean.models import IMAGENET_MEAN, IMAGENET_STD, LayerModel, freeze
from dora_clean.scanning.decode import decode_jpegs, load_image, read_plain_jpeg


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return freeze(torchvision.models.resnet50(weights=None).eval())


def _photos(n: int, size: int) -> list[bytes]:
    """n JPEGs of smooth random images (a natural image's spectrum, roughly), at ``size``."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        low = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, float) + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def check_bf16(device: torch.device, n: int) -> dict:
    x = torch.rand(n, 3, 224, 224)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    ref_model = LayerModel(_model(), "layer4")
    with torch.no_grad():
        ref = ref_model(x).mean(dim=(2, 3)).numpy()
        gpu_model = prepare_model(LayerModel(_model(), "layer4"), device)
        with autocast(device):
            got = gpu_model(x.to(device).contiguous(memory_format=torch.channels_last))
        got = got.float().mean(dim=(2, 3)).cpu().numpy()
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    live = [c for c in range(ref.shape[1]) if np.ptp(ref[:, c]) > 0]
    rho = float(np.median([spearmanr(ref[:, c], got[:, c])[0] for c in live]))
    return {"relative error": f"{rel:.4f}", "median Spearman over neurons": f"{rho:.4f}"}


def _unit(images: torch.Tensor) -> torch.Tensor:
    """Pixel values in 0-1, from uint8 or float images."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def check_nvjpeg(device: torch.device, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(_photos(n, 256)):
            p = Path(tmp) / f"{i}.jpg"
            p.write_bytes(data)
            paths.append(p)
        raw = [read_plain_jpeg(p, 224) for p in paths]
        if any(r is None for r in raw):
            return {"result": "a test JPEG was not plain: nothing checked"}
        t = time.perf_counter()
        got = decode_jpegs(raw, 224, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        got = _unit(got.cpu())
        ref = _unit(torch.stack([load_image(p, 224) for p in paths]))
    return {"largest pixel difference (0-1)": f"{float((got - ref).abs().max()):.4f}",
            "mean pixel difference": f"{float((got - ref).abs().mean()):.5f}", "batch decode s": f"{seconds:.3f}"}


def time_sams(device: torch.device, neurons: int, config: SamsConfig) -> dict:
    layer_model = prepare_model(LayerModel(_model(), "layer4"), device)
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        generate_sams(layer_model, list(range(neurons)), config, Path(tmp), IMAGENET_MEAN, IMAGENET_STD, device,
                      progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    whole = seconds * 2048 / neurons
    return {"neurons timed": neurons, "seconds": f"{seconds:.1f}", "whole layer (2,048)": f"{whole / 60:.1f} min",
            "target (< 5 min on one H200)": "met" if whole < 300 else "missed"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--neurons", type=int, default=2048, help="s-AMS neurons to time (default: all 2,048)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the script")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
              f"torchvision {torchvision.__version__}")
    n = 4 if args.quick else 64
    config = SamsConfig(n_signals=1, steps=2, size=64) if args.quick else SamsConfig(size=128)
    rows = [("bf16 + channels-last (ResNet-50 layer4)", check_bf16(device, n)),
            ("nvjpeg batch decode", check_nvjpeg(device, n)),
            ("s-AMS, ResNet-50 layer4, " + ("quick settings" if args.quick else "default settings (128 px)"),
             time_sams(device, 2 if args.quick else args.neurons, config))]
    for name, values in rows:
        print(f"{name}:")
        for k, v in values.items():
            print(f"  {k:<32} {v}")
    print("the scan: python benchmarks/bench_scan.py --model resnet50 --image-size 224 --formats jpg "
          "--device cuda --workers 4 8 --batch-size 256")
    return 0


if __name__ == "__main__":
    sys.exit(main())
