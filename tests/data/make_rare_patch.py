"""Writes rare_patch.npz: a real layer where Otsu's split of the combined score is too wide.

The planted benchmark's tiny ResNet trained with seed 1 on the patch artifact
(4 classes), its scan set with the patch on 5% of 1000 images (draw 7): the
last conv stage's mean-pooled activations [1000, 64] (float32), the artifact
labels, the class folders and DORA's infected neurons. Run from the repository
root (trains the model, about a minute on two CPU cores, unless cached):

    python tests/data/make_rare_patch.py

The committed file (30 Nov 2026) also holds ``neighbours``, the infected
neurons' 8 nearest neurons in EA distance, which no test reads since the
neighbourhood seeds went. A new run can give another layer and other infected
neurons (training and s-AMS are not bit-reproducible across versions).
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import planted_benchmark as pb  # noqa: E402

from dora_clean.analysis.outliers import find_infected  # noqa: E402
from dora_clean.analysis.sams import SamsConfig  # noqa: E402

torch.manual_seed(0)
case = pb.prepare("tiny_resnet", "patch", 1000, SamsConfig(n_signals=4, steps=128, size=64), progress=False,
                  train={"num_classes": 4, "widths": None, "seed": 1}, fraction=0.05)
a = case.analysis
o = find_infected(a.distance, a.self_act, a.neurons, with_atlas=False)
np.savez_compressed(
    Path(__file__).with_name("rare_patch.npz"),
    layer=case.mean_act.astype(np.float32), artifact=case.y.astype(bool), classes=np.array(case.classes),
    infected=np.array(o.infected),
)
