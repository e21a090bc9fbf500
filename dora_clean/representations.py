"""Steps 2-3: the layer's response to the s-AMS, and the Extreme-Activation distance."""
from __future__ import annotations

from typing import Sequence

import torch

from .device import autocast, resolve_device
from .sams import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def layer_activations(
    layer_model: torch.nn.Module,
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Spatially averaged activations of the whole layer on uint8 images [N, 3, H, W] -> [N, C] (fp32, CPU)."""
    device = resolve_device(device)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = []
    for a in range(0, len(images), batch_size):
        x = (images[a : a + batch_size].to(device).float() / 255 - mean_t) / std_t
        with autocast(device):
            act = layer_model(x)
        out.append(act.float().mean(dim=(2, 3)).cpu())
    return torch.cat(out)


def collect_representations(
    layer_model: torch.nn.Module,
    sams: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """The layer's activations on every s-AMS: uint8 [k, n, 3, H, W] -> A [k, C, n].

    ``A[i, :, j]`` is how the whole layer responds to neuron i's j-th s-AMS
    (C = k when all neurons of the layer are analysed).
    """
    k, n = sams.shape[:2]
    act = layer_activations(layer_model, sams.flatten(0, 1), mean, std, device, batch_size)
    return act.view(k, n, -1).permute(0, 2, 1).contiguous()


def ea_distance(A: torch.Tensor) -> torch.Tensor:
    """Extreme-Activation distance between neurons: sqrt((1 - cos(A_i, A_j)) / 2).

    ``A`` is [k, C, n] (averaged over the n signals) or already [k, C].
    Symmetric, zero on the diagonal, within [0, 1].
    """
    R = A.mean(dim=2) if A.ndim == 3 else A
    R = R.double()
    R = R / R.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (R @ R.T).clamp(-1, 1)
    d = torch.sqrt(((1 - cos) / 2).clamp(0, 1))
    d = (d + d.T) / 2
    d.fill_diagonal_(0)
    return d.float()


def self_activation(A: torch.Tensor, neurons: Sequence[int]) -> torch.Tensor:
    """How much neuron i's own s-AMS excite neuron i, averaged over the signals: [k]."""
    idx = torch.as_tensor(list(neurons))
    return A[torch.arange(len(idx)), idx].mean(dim=1)
