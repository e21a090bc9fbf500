"""Steps 2-3: the layer's response to the s-AMS, and the Extreme-Activation distance."""
from __future__ import annotations

from typing import Sequence

import torch

from ..device import autocast, resolve_device
from ..errors import DoraError
from ..models.loading import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["REPRESENTATIONS", "collect_representations", "ea_distance", "layer_activations", "mean_responses",
           "self_activation", "standardised_responses"]


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


def mean_responses(A: torch.Tensor) -> torch.Tensor:
    """The layer's mean response to each neuron's s-AMS, in float64: [k, C, n] (or already [k, C]) -> [k, C]."""
    return (A.mean(dim=2) if A.ndim == 3 else A).double()


def standardised_responses(A: torch.Tensor) -> torch.Tensor:
    """The layer's responses to the s-AMS with every responding neuron on one scale: [k, C, n] -> [k, C].

    Row i is the layer's mean response to neuron i's s-AMS; each column (a
    responding neuron) is z-scored over the k rows, and a column that barely
    varies (a neuron that no s-AMS moves) is set to 0. Raw responses are
    dominated by the few neurons with the largest activations, so the
    distance between two rows says mostly how those respond; standardised,
    a response counts by how unusual it is for that neuron.
    """
    R = mean_responses(A)
    sd = R.std(dim=0)
    varies = sd > 1e-3 * sd.median().clamp_min(1e-12)
    return torch.where(varies, (R - R.mean(dim=0)) / torch.where(varies, sd, 1.0), 0.0)


#: How the EA distance sees the representations: "standardised" (each responding
#: neuron z-scored over the s-AMS: chosen on the planted-artifact benchmark) or
#: "raw" (the layer's activations as they are, as in the DORA paper).
REPRESENTATIONS = ("standardised", "raw")


def ea_distance(A: torch.Tensor, representation: str = "standardised") -> torch.Tensor:
    """Extreme-Activation distance between neurons: sqrt((1 - cos(A_i, A_j)) / 2).

    ``A`` is [k, C, n] (averaged over the n signals) or already [k, C];
    ``representation``: see :data:`REPRESENTATIONS` (with fewer than three
    neurons the raw responses: z-scores over one or two rows say nothing).
    Symmetric, zero on the diagonal, within [0, 1].
    """
    if representation not in REPRESENTATIONS:
        raise DoraError(f"unknown representation {representation!r}: use one of {', '.join(REPRESENTATIONS)}")
    if representation == "standardised" and len(A) >= 3:
        R = standardised_responses(A)
    else:
        R = mean_responses(A)
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
