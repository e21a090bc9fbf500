"""Choosing the device, and mixed precision where it is safe."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import torch

from .errors import DoraError

__all__ = ["autocast", "prepare_model", "resolve_device", "tune_allocator"]


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present; ``cpu``, ``cuda`` and ``cuda:i`` as asked.

    Also tunes the process's allocator for tensor work (:func:`tune_allocator`).
    """
    tune_allocator()
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


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache
def tune_allocator(mmap_threshold: int = 128 << 20) -> bool:
    """Keep freed memory in the heap for reuse instead of unmapping it (glibc only; once per process).

    By default glibc serves each allocation of more than 128 kB with a fresh
    ``mmap`` (raising that bound only as it sees large blocks freed), so a
    CPU forward pass, whose activations are a few MB each, first spends about
    half its time in page faults, zeroing new pages: measured on the demo
    model, 2,300-2,700 images/s before and 5,900 after. The same as starting
    Python with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set.
    Returns whether the setting took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name (find_library would start a subprocess)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold) == 1
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


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
