"""Choosing the device, and mixed precision where it is safe."""
from __future__ import annotations

import contextlib

import torch

from .errors import DoraError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present; ``cpu``, ``cuda`` and ``cuda:i`` as asked."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise DoraError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DoraError(f"device {spec} asked for, but CUDA is not available here: use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DoraError(f"device {spec} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise DoraError(f"device {spec!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for the model on CUDA; nothing on CPU (fp32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the model to the device; channels_last on CUDA, where it helps convolutions."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
