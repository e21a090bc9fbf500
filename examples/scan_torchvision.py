"""Scan a folder of images with a torchvision architecture and a local weights file.

    python examples/scan_torchvision.py DATASET WEIGHTS.pth [--arch resnet50] [--labels labels.csv]

The same as

    dora-clean scan DATASET --model resnet50 --weights WEIGHTS.pth [--labels labels.csv]

Without a weights file at hand, make one to try it (random weights find nothing
meaningful, but the whole pipeline runs):

    python -c "import torch, torchvision; torch.save(torchvision.models.resnet18().state_dict(), 'r18.pth')"
    python examples/scan_torchvision.py dora-demo/dataset r18.pth --arch resnet18 --image-size 64
"""
import argparse

from dora_clean.pipeline import ScanSettings, scan_dataset
from dora_clean.analysis.sams import SamsConfig

ap = argparse.ArgumentParser()
ap.add_argument("dataset")
ap.add_argument("weights")
ap.add_argument("--arch", default="resnet50")
ap.add_argument("--layer", default=None, help="default: the last layer with a spatial output (layer4)")
ap.add_argument("--labels", default=None)
ap.add_argument("--image-size", type=int, default=224)
ap.add_argument("--neurons", type=int, default=None, help="analyse only the first N neurons (faster on CPU)")
args = ap.parse_args()

settings = ScanSettings(
    model=args.arch,
    weights=args.weights,
    layer=args.layer,
    labels=args.labels,
    image_size=args.image_size,
    neurons=None if args.neurons is None else range(args.neurons),
    sams=SamsConfig(size=0, n_signals=4, steps=128),  # size 0: the image size, at most 128
    fiftyone=False,
)
summary = scan_dataset(args.dataset, settings, log=print)
print("infected neurons:", summary["infected_neurons"])
print("flagged:", summary["n_flagged"], "of", summary["n_images"])
if "auc" in summary:
    print("combined AUC:", round(summary["auc"]["combined"], 3))
