"""s-AMS speed against its limit: a bare forward+backward of the truncated model.

Prints, for one model and one batch (k neurons x n signals), the steps per
second of dora-clean's s-AMS optimisation (plain steps, redirected-ReLU steps, and
the default recipe's mix of the two) and of a bare forward+backward pass
through the truncated model on the same batch, measured side by side
(alternating rounds, best of each), and their ratio.

    python benchmarks/bench_sams.py                     # tiny_resnet, 64 neurons x 4, 64 px
    python benchmarks/bench_sams.py --arch tiny_cnn --device cuda
    python benchmarks/bench_sams.py --arch resnet18 --layer layer3   # a torchvision model (random weights)

The tiny nets are the worst case: their forward+backward is so cheap that
the image parameterisation (inverse FFT, warp, normalisation, Adam) is a
large share of a step. On a real model the same overhead is a small share.
"""
from __future__ import annotations

import argparse
import time

import torch

from dora_clean.device import autocast, prepare_model, resolve_device
from dora_clean.models import LayerModel, freeze
from dora_clean.demo.nets import ARCHITECTURES, build, default_layer
from dora_clean.analysis import sams as sams_mod
from dora_clean.analysis.sams import SamsConfig, optimise


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="tiny_resnet", help="a dora_clean.nets name or a torchvision model name")
    ap.add_argument("--layer", default=None, help="default: the tiny net's last stage; for torchvision, layer3")
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--signals", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.arch in ARCHITECTURES:
        model, layer = build(args.arch, 4), args.layer or default_layer(args.arch)
    else:
        import torchvision

        model, layer = torchvision.models.get_model(args.arch, weights=None), args.layer or "layer3"
    lm = prepare_model(LayerModel(freeze(model.eval()), layer), device)
    neurons = list(range(args.neurons))
    batch = args.neurons * args.signals
    cfg = SamsConfig(n_signals=args.signals, steps=args.steps, size=args.size, batch_size=batch)
    x = torch.rand(batch, 3, args.size, args.size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        xi = x.clone().requires_grad_(True)
        for _ in range(args.steps):
            with autocast(device):
                act = lm(xi)
            act.float().mean(dim=(2, 3)).sum().backward()

    def sams(redirected: bool):
        def run() -> None:
            # Time plain steps and redirected-ReLU steps apart: the recipe runs REDIRECTED_STEPS of the latter.
            saved = sams_mod.REDIRECTED_STEPS
            sams_mod.REDIRECTED_STEPS = args.steps if redirected else 0
            try:
                optimise(lm, neurons, cfg, device=device)
            finally:
                sams_mod.REDIRECTED_STEPS = saved
        return run

    runs = {"bare": bare, "plain": sams(False), "redirected": sams(True)}
    for fn in runs.values():  # warm-up
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, fn in runs.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    sec = {k: v / args.steps for k, v in best.items()}  # seconds per step
    steps, red = SamsConfig().steps, min(sams_mod.REDIRECTED_STEPS, SamsConfig().steps)
    sec["recipe"] = (red * sec["redirected"] + (steps - red) * sec["plain"]) / steps
    print(f"\n{args.arch}, layer {layer}, batch {batch} = {args.neurons} neurons x "
          f"{args.signals} signals, {args.size}px, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'':<44} {'steps/s':>8} {'images/s':>9} {'of limit':>8}")
    rows = [
        ("bare forward+backward (the limit)", "bare"),
        ("s-AMS step", "plain"),
        ("s-AMS step with redirected ReLU", "redirected"),
        (f"s-AMS, default recipe ({red} of {steps} redirected)", "recipe"),
    ]
    for label, k in rows:
        print(f"{label:<44} {1 / sec[k]:8.2f} {batch / sec[k]:9.0f} {sec['bare'] / sec[k]:8.3f}")

if __name__ == "__main__":
    main()
