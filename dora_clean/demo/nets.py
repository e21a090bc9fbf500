"""Two tiny architectures for 64x64 inputs: fast enough to train on a CPU.

They are the models the demo, the tests and the benchmarks train on planted
artifacts (see ``benchmarks/planted.py``). Both end their last convolutional
stage at 64 channels with a spatial map (8x8 at 64 px input), which is the
layer DORA analyses by default (:func:`default_layer`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["tiny_resnet", "tiny_cnn", "ARCHITECTURES", "build", "default_layer", "DEFAULT_LAYERS"]


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convolutions and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample: nn.Module = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class TinyResNet(nn.Module):
    """stem (64 -> 32 px) -> layer1 (32 px) -> layer2 (16 px) -> layer3 (8 px) -> avgpool -> fc."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(*_conv_bn(3, w1, stride=2), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyCNN(nn.Module):
    """A plain VGG-like net: ``features`` (three conv stages), avgpool, ``classifier``.

    ``features[i]`` is stage i: conv-bn-relu then a 2x2 max-pool; the last stage
    adds a conv-bn-relu after its pool, so the maps are 32, 16 and 8 px at 64 px input.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Sequential(*_conv_bn(3, w1), relu(), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn(w1, w2), relu(), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn(w2, w3), relu(), nn.MaxPool2d(2), *_conv_bn(w3, w3), relu()),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def tiny_resnet(num_classes: int, widths: Sequence[int] = (16, 32, 64)) -> nn.Module:
    """A small ResNet (one BasicBlock per stage) for 64x64 inputs.

    Modules: ``stem``, ``layer1``, ``layer2``, ``layer3`` (the last conv block:
    ``widths[2]`` channels, 8x8 at 64 px), ``avgpool``, ``fc``.
    """
    return TinyResNet(num_classes, widths)


def tiny_cnn(num_classes: int, widths: Sequence[int] = (16, 32, 64)) -> nn.Module:
    """A plain conv net: ``features`` (stages ``features.0`` .. ``features.2``), ``avgpool``,
    ``classifier``. ``features.2`` is the last conv stage (``widths[2]`` channels, 8x8 at 64 px).
    """
    return TinyCNN(num_classes, widths)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "tiny_resnet": tiny_resnet,
    "tiny_cnn": tiny_cnn,
}

DEFAULT_LAYERS: dict[str, str] = {"tiny_resnet": "layer3", "tiny_cnn": "features.2"}


def build(arch: str, num_classes: int, widths: Sequence[int] | None = None) -> nn.Module:
    """A freshly initialised model of one of :data:`ARCHITECTURES`.

    ``widths``: the channels of the three stages (default ``(16, 32, 64)``);
    the last one is the width of the layer DORA analyses.
    """
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None
    if widths is None:
        return factory(num_classes)
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"widths must be three positive channel counts, got {widths}")
    return factory(num_classes, widths)


def default_layer(arch: str) -> str:
    """The name of the last conv stage of ``arch`` (the layer DORA analyses by default)."""
    try:
        return DEFAULT_LAYERS[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {sorted(DEFAULT_LAYERS)}"
        ) from None
