"""s-AMS speed against its limit: a bare forward+backward of the truncated model.

Prints, for one model and one batch (k neurons x n signals), the steps per
second of dora-clean's s-AMS optimisation and of a bare forward+backward pass
through the truncated model on the same batch, measured side by side
(alternating rounds, best of each), and their ratio.

    python benchmarks/bench_sams.py                     # tiny_resnet, 64 neurons x 4, 64 px
    python benchmarks/bench_sams.py --arch tiny_cnn --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch

from dora_clean.device import autocast, prepare_model, resolve_device
from dora_clean.models import LayerModel, freeze
from dora_clean.nets import build, default_layer
from dora_clean.sams import SamsConfig, optimise


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="tiny_resnet")
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--signals", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    model = freeze(build(args.arch, 4))
    lm = prepare_model(LayerModel(model, default_layer(args.arch)), device)
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

    def sams() -> None:
        optimise(lm, neurons, cfg, device=device)

    bare(), sams()  # warm-up
    best = {"bare": float("inf"), "sams": float("inf")}
    for _ in range(args.rounds):
        for name, fn in (("bare", bare), ("sams", sams)):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    sps = {k: args.steps / v for k, v in best.items()}
    print(f"\n{args.arch}, layer {default_layer(args.arch)}, batch {batch} = {args.neurons} neurons x "
          f"{args.signals} signals, {args.size}px, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'':<36} {'steps/s':>8} {'images/s':>9}")
    print(f"{'bare forward+backward (the limit)':<36} {sps['bare']:8.2f} {sps['bare'] * batch:9.0f}")
    print(f"{'dora-clean s-AMS':<36} {sps['sams']:8.2f} {sps['sams'] * batch:9.0f}")
    print(f"{'ratio':<36} {sps['sams'] / sps['bare']:8.3f}")


if __name__ == "__main__":
    main()
