"""What the s-AMS of a layer will cost: one optimisation step of one chunk, timed, times the steps to come.

A real layer is expensive (ViT-B/16's last block: 768 neurons x 4 signals x
128 steps at 224 px), so the scan says what it is about to spend before it
spends it, and how to spend less.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..device import resolve_device
from .sams import IMAGENET_MEAN, IMAGENET_STD, SamsCache, SamsConfig, optimise

__all__ = ["CPU_TIMED_IMAGES", "SamsCost", "estimate_sams", "format_duration"]

#: A first step faster than this is not trusted (warm-up dominates it): a second one is timed instead.
_WARM_SECONDS = 10.0
#: On a CPU, where a step's time grows in proportion to its images, at most this many are timed and the time
#: scaled to the chunk (a whole chunk of a large model can take minutes a step, and more memory than is there).
CPU_TIMED_IMAGES = 32


@dataclass(frozen=True)
class SamsCost:
    """The s-AMS still to make, and how long they should take."""

    neurons: int  # neurons still to make (not in the cache)
    signals: int
    steps: int
    size: int
    chunk: int  # neurons per chunk (one batch of the optimisation; the first chunk's)
    step_seconds: float  # one optimisation step of the first chunk (on a CPU: of a part of it, scaled)

    @property
    def chunks(self) -> int:
        return math.ceil(self.neurons / self.chunk)

    @property
    def seconds(self) -> float:
        """All steps of all chunks; a smaller last chunk counted by its share of images."""
        return self.step_seconds * self.steps * self.neurons / self.chunk

    def __str__(self) -> str:
        line = (f"s-AMS: {self.neurons} neurons x {self.signals} signals x {self.steps} steps at {self.size} px "
                f"({self.chunks} chunk{'s' if self.chunks > 1 else ''} of {self.chunk * self.signals} images, "
                f"{self.step_seconds:.2g} s a step): about {format_duration(self.seconds)}")
        if self.seconds > 600:
            line += "; --neurons, --signals, --steps, --sams-size or a GPU make it shorter"
        return line


def format_duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``3.5 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class _Enough(Exception):
    pass


def estimate_sams(
    layer_model: torch.nn.Module,
    neurons: Sequence[int],
    config: SamsConfig,
    cache_dir: str | Path | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
) -> SamsCost | None:
    """Time one optimisation step of the first chunk :func:`~dora_clean.analysis.sams.generate_sams` would make
    (a second where the first is quick, to leave out warm-up), and scale it to all its chunks and steps.

    On a CPU, only :data:`CPU_TIMED_IMAGES` of the chunk's images are timed, and the time scaled to the
    chunk. Neurons already in ``cache_dir`` cost nothing; None where nothing is left to make.
    """
    todo = list(dict.fromkeys(neurons))
    if cache_dir is not None and config.cacheable:
        cache = SamsCache(cache_dir, config)
        todo = [i for i in todo if not cache.has(i)]
    if not todo:
        return None
    chunk = todo[: max(1, config.batch_size // config.n_signals)]
    device = resolve_device(device)
    timed = chunk if device.type == "cuda" else chunk[: max(1, CPU_TIMED_IMAGES // config.n_signals)]
    marks = [time.perf_counter()]

    def on_step() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        if len(marks) == 3 or marks[-1] - marks[0] >= _WARM_SECONDS:
            raise _Enough

    try:
        optimise(layer_model, timed, dataclasses.replace(config, steps=2), mean, std, device, on_step=on_step)
    except _Enough:
        pass
    step = (marks[-1] - marks[-2]) * len(chunk) / len(timed)
    return SamsCost(len(todo), config.n_signals, config.steps, config.size, len(chunk), step)
