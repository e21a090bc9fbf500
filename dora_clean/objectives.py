"""Objectives for s-AMS: what an image should excite.

An objective maps the layer's activations ``act`` [B, C, H, W] and each
image's target neuron ``targets`` [B] to one value per image [B], to be
maximised.
"""
from __future__ import annotations

import torch

__all__ = ["ChannelMaxObjective", "ChannelObjective"]


class ChannelObjective:
    """The mean activation of the image's own channel (DORA's default)."""

    name = "channel"

    def __call__(self, act: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(targets), device=act.device)
        return act[rows, targets].float().mean(dim=(1, 2))


class ChannelMaxObjective:
    """The strongest activation of the image's own channel, anywhere in the map."""

    name = "channel_max"

    def __call__(self, act: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(targets), device=act.device)
        return act[rows, targets].float().amax(dim=(1, 2))
