"""What the s-AMS of a real layer costs: time per step on this machine, extrapolated to a whole layer.

For ResNet-50 ``layer4``, ViT-B/16's last block and ConvNeXt-T's last stage
(random weights: the cost does not depend on them), runs dora-clean's s-AMS
optimisation (``optimise``: the Fourier images, the warp, the forward and
backward pass through the truncated model, Adam) on a small batch for a few
steps, takes the fastest step after the first (warm-up; on a shared machine
the others are slowed by other processes: the table gives their median too,
"median"), and extrapolates
linearly in images (true on a CPU; on a GPU a full chunk is cheaper per image
than a small batch) to all neurons of the layer:

- default: 4 signals x 128 steps at 128 px for the CNNs (the scan's default
  s-AMS side is the image side, at most 128) and at 224 px for ViT-B/16,
  which takes only 224 px;
- cheaper: ``--sams-size 64 --steps 32`` (ViT-B/16: 224 px, ``--steps 32``);
- and, for the record, the CNNs at 224 px with 128 steps.

    python benchmarks/bench_sams_cost.py                   # about 5-10 minutes on 2 CPU cores
    python benchmarks/bench_sams_cost.py --batch 4 --steps 2 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from dora_clean.analysis.cost import format_duration
from dora_clean.analysis.sams import SamsConfig, optimise
from dora_clean.device import prepare_model, resolve_device
from dora_clean.models import LayerModel, freeze

#: (name, torchvision architecture, layer, neurons)
MODELS = [
    ("ResNet-50", "resnet50", "layer4", 2048),
    ("ViT-B/16", "vit_b_16", "encoder.layers.encoder_layer_11", 768),
    ("ConvNeXt-T", "convnext_tiny", "features", 768),
]
#: (setting, s-AMS side for CNNs, for ViT-B/16, signals, steps)
SETTINGS = [
    ("default (4 signals, 128 steps)", 128, 224, 4, 128),
    ("224 px, 4 signals, 128 steps", 224, 224, 4, 128),
    ("--sams-size 64 --steps 32", 64, 224, 4, 32),
]


def seconds_per_image_step(
    lm: torch.nn.Module, size: int, batch: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """The fastest and the median time of one optimisation step (after the first), per image of the batch."""
    marks = [time.perf_counter()]

    def on_step() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())

    cfg = SamsConfig(n_signals=1, steps=steps + 1, size=size, batch_size=batch)
    optimise(lm, list(range(batch)), cfg, device=device, on_step=on_step)
    step_times = [b - a for a, b in zip(marks[1:], marks[2:])]
    return min(step_times) / batch, statistics.median(step_times) / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="images per measured step (default 8)")
    ap.add_argument("--steps", type=int, default=4, help="measured steps after a warm-up step (default 4)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, batch {args.batch}, "
          f"the fastest (and the median) of {args.steps} steps after a warm-up step\n")
    rows = []
    for name, arch, layer, neurons in MODELS:
        model = freeze(torchvision.models.get_model(arch, weights=None).eval())
        lm = prepare_model(LayerModel(model, layer), device)
        measured: dict[int, tuple[float, float]] = {}
        for setting, cnn_size, vit_size, signals, steps in SETTINGS:
            size = vit_size if arch.startswith("vit") else cnn_size
            if size not in measured:
                measured[size] = seconds_per_image_step(lm, size, args.batch, args.steps, device)
                fast, median = measured[size]
                print(f"  {name} at {size} px: {fast * 1000:.0f} ms per image and step (median {median * 1000:.0f})",
                      flush=True)
            fast, median = measured[size]
            scale = neurons * signals * steps
            rows.append((name, layer, neurons, setting, size, fast, fast * scale, median * scale))
    print()
    print("| model | layer | neurons | setting | px | ms / image-step | whole layer | (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, layer, neurons, setting, size, per, total, total_median in rows:
        print(f"| {name} | `{layer}` | {neurons} | {setting} | {size} | {per * 1000:.0f} | {format_duration(total)} "
              f"| {format_duration(total_median)} |")


if __name__ == "__main__":
    main()
