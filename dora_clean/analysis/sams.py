"""Step 1: synthetic activation maximisation signals (s-AMS).

For each neuron (channel) of a layer, n images that maximise it, made with the
feature-visualisation recipe of lucid/lucent: a Fourier parameterisation with
a 1/f spectrum, decorrelated colour, a sigmoid, and small random jitter, scale
and rotation at every step. All images of a chunk are optimised together in
one batch (one forward and backward pass a step); Adam's state is per element
and the loss a sum, so every image is optimised independently.

The images are cached as PNG files keyed by the model weights, the layer and
the settings: a second call reuses them, and neurons already made are not
made again. A custom objective (any callable, not one of :data:`OBJECTIVES`)
has no cache key: its s-AMS are made afresh on every call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import atomic_save, atomic_write, locked, remove_stale_temps
from ..device import autocast, resolve_device
from ..errors import DoraError
from ..models.loading import IMAGENET_MEAN, IMAGENET_STD
from ..objectives import ChannelMaxObjective, ChannelObjective

__all__ = [
    "FUSED_ADAM_CPU_SINCE", "FUSED_ADAM_DEVICES", "IMAGENET_MEAN", "IMAGENET_STD", "OBJECTIVES", "RECIPE_VERSION",
    "REDIRECTED_STEPS", "SamsCache", "SamsConfig", "augment", "cache_root", "generate_sams", "initial_state",
    "model_input", "objective_function", "objective_name", "optimise", "redirected_relus", "render", "sams_key",
    "spectrum_scale",
]


# lucid's colour correlation (square root of the ImageNet colour covariance).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


#: Bumped when the optimisation recipe changes (it keys the cache).
RECIPE_VERSION = 4
#: The first steps use redirected ReLU gradients (lucid's recipe), enough to wake silent neurons.
REDIRECTED_STEPS = 16

#: The built-in objectives by name (they key the cache by their name).
OBJECTIVES = {o.name: o for o in (ChannelObjective, ChannelMaxObjective)}

#: The torch release from which ``torch.optim.Adam(fused=True)`` runs on the CPU (on CUDA it has since 1.13):
#: pyproject.toml's floor of torch must not be lower while the CPU is in :data:`FUSED_ADAM_DEVICES`.
FUSED_ADAM_CPU_SINCE = (2, 4)
#: The device types on which the optimisation uses the fused Adam (elsewhere torch's default).
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def objective_name(objective) -> str | None:
    """The name of a built-in objective, given as its name, its class or an instance of exactly that class.

    None for any other callable (a custom objective, also a subclass of a built-in one);
    an unknown name, or something that cannot be called, is a :class:`DoraError`.
    """
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise DoraError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)} or a callable")
        return objective
    for name, cls in OBJECTIVES.items():
        if objective is cls or type(objective) is cls:
            return name
    if not callable(objective):
        raise DoraError(f"the objective {objective!r} is neither a name ({', '.join(OBJECTIVES)}) nor a callable")
    return None


def objective_function(objective) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The callable ``(act [B, C, H, W], targets [B]) -> [B]`` that ``objective`` (a name or a callable) stands for."""
    name = objective_name(objective)
    return OBJECTIVES[name]() if name is not None else objective


@dataclass(frozen=True)
class SamsConfig:
    """Settings of s-AMS generation (all of them key the cache but ``batch_size``).

    ``objective``: a built-in objective's name (:data:`OBJECTIVES`), or any
    callable ``(act, targets) -> [B]`` to maximise (:mod:`dora_clean.objectives`);
    a custom one has no cache key (``cacheable`` is False).
    """

    n_signals: int = 4
    steps: int = 128
    size: int = 64
    lr: float = 0.05
    seed: int = 0
    decay_power: float = 1.0
    jitter: float = 0.06
    scale: float = 0.1
    rotate: float = 10.0
    batch_size: int = 256
    objective: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "channel"

    def __post_init__(self):
        objective_name(self.objective)  # an unknown name or a non-callable fails here

    @property
    def cacheable(self) -> bool:
        """Whether the s-AMS can be cached: the objective is a built-in one."""
        return objective_name(self.objective) is not None

    def key_fields(self) -> dict:
        """The settings that key the cache (the objective by its name)."""
        name = objective_name(self.objective)
        if name is None:
            raise DoraError("s-AMS of a custom objective have no cache key: they are made afresh, never cached")
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "batch_size"}
        d["objective"] = name
        return d


def cache_root() -> Path:
    """``$DORA_CLEAN_CACHE``, or ``~/.cache/dora-clean``."""
    return Path(os.environ.get("DORA_CLEAN_CACHE") or Path.home() / ".cache" / "dora-clean")


def sams_key(weights_hash: str, layer: str, config: SamsConfig, mean: Sequence[float], std: Sequence[float]) -> str:
    """The cache key of a set of s-AMS."""
    blob = json.dumps(
        {"recipe": RECIPE_VERSION, "weights": weights_hash, "layer": layer, "mean": list(mean), "std": list(std), **config.key_fields()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """The 1/f amplitude of each Fourier coefficient, [h, w // 2 + 1]."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power


def _logits(spectrum: torch.Tensor, scale: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier parameters -> colour-correlated image logits [B, 3, h, w].

    The colour decorrelation is linear per pixel and the 1/f ``scale`` per
    frequency, so both are applied to the Fourier coefficients (half the size
    of the image), as real arithmetic on their (re, im) pairs, before the
    inverse FFT.
    """
    b, c, h, w, _ = spectrum.shape
    mixed = torch.matmul(_COLOR_SQRT.to(spectrum.device, spectrum.dtype), spectrum.reshape(b, c, -1))
    coeffs = mixed.view(b, c, h, w, 2) * scale[..., None]
    return torch.fft.irfftn(torch.view_as_complex(coeffs), s=(size, size), norm="ortho")


def render(spectrum: torch.Tensor, scale: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier parameters [B, 3, h, w//2+1, 2] -> RGB images in (0, 1), [B, 3, h, w] (fp32).

    ``scale`` is the 1/f amplitude (``spectrum_scale``); lucid's ``/ 4`` and a
    sigmoid follow the inverse FFT.
    """
    return torch.sigmoid(_logits(spectrum, scale / 4.0, size))


def _affine_grid(u: torch.Tensor, shape: list[int], config: SamsConfig) -> torch.Tensor:
    """Sampling grids for per-image random rotation, scale and jitter, from uniforms ``u`` [B, 4].

    The same grids as ``F.affine_grid(theta, shape, align_corners=False)``, as one batched matmul.
    """
    angle = (u[:, 0] * 2 - 1) * math.radians(config.rotate)
    scale = 1 + (u[:, 1] * 2 - 1) * config.scale
    tx = (u[:, 2] * 2 - 1) * config.jitter * 2
    ty = (u[:, 3] * 2 - 1) * config.jitter * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    b, _, h, w = shape
    return torch.matmul(_base_grid(h, w, u.device), theta.transpose(1, 2)).view(b, h, w, 2)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """The identity grid's homogeneous pixel coordinates [1, h * w, 3] (pixel centres, as ``align_corners=False``)."""
    identity = torch.eye(2, 3, device=device)[None]
    xy = F.affine_grid(identity, [1, 1, h, w], align_corners=False).view(1, h * w, 2)
    return torch.cat([xy, torch.ones(1, h * w, 1, device=device)], dim=2)


def augment(img: torch.Tensor, u: torch.Tensor, config: SamsConfig) -> torch.Tensor:
    """Per-image random rotation, scale and jitter (one affine warp each, a single
    ``grid_sample`` for the batch); the border is filled with grey, like lucent's
    constant padding."""
    grid = _affine_grid(u, list(img.shape), config)
    return F.grid_sample(img - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def model_input(
    spectrum: torch.Tensor, scale: torch.Tensor, u: torch.Tensor, config: SamsConfig, mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """``(augment(render(spectrum)) - mean) / std`` in three passes over the images.

    The warp is linear, fills with zero and acts on each channel alike, and
    ``sigmoid(z) - 0.5 == tanh(z / 2) / 2``, so
    ``(warp(img - 0.5) + 0.5 - mean) / std == warp(tanh(z / 2)) * (0.5 / std) + (0.5 - mean) / std``
    (the ``/ 2`` goes into the Fourier scale).
    """
    size = config.size
    centred = torch.tanh(_logits(spectrum, scale / 8.0, size))
    grid = _affine_grid(u, list(centred.shape), config)
    warped = F.grid_sample(centred, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.addcmul((0.5 - mean) / std, warped, 0.5 / std)


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient, for an image where no gradient gets through, is redirected.

    lucid's "redirected ReLU": where an image's whole ReLU gradient is zero
    (a neuron silent on the starting image, common in trained networks), let
    the gradient through except where it would push an already negative
    input lower. Without it such neurons never move from the start and look
    dead.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        relu_grad = grad * (x > 0)
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
        through = relu_grad.flatten(1).abs().amax(dim=1) > 0
        return torch.where(through.view(-1, *([1] * (x.ndim - 1))), relu_grad, redirected)


class _RedirectedReLUModule(torch.nn.Module):
    def forward(self, x):
        return _RedirectedReLU.apply(x)


def _redirected_relu(x, inplace: bool = False):
    return _RedirectedReLU.apply(x)


@contextlib.contextmanager
def redirected_relus(module: torch.nn.Module):
    """Within the block, the ReLUs of ``module`` (modules, and ``relu`` calls of fx graphs) redirect gradients.

    The forward pass is unchanged; everything is restored on exit.
    """
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    graphs: list[tuple[torch.fx.GraphModule, list[tuple[torch.fx.Node, object]]]] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.ReLU:
                swapped.append((parent, name, child))
                setattr(parent, name, _RedirectedReLUModule())
        if isinstance(parent, torch.fx.GraphModule):
            nodes = [(n, n.target) for n in parent.graph.nodes
                     if n.op == "call_function" and n.target in (torch.relu, F.relu, torch.relu_)]
            for n, _ in nodes:
                n.target = _redirected_relu
            if nodes:
                parent.recompile()
                graphs.append((parent, nodes))
    try:
        yield module
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for gm, nodes in graphs:
            for n, target in nodes:
                n.target = target
            gm.recompile()


def _neuron_seed(seed: int, neuron: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{neuron}".encode()).digest()[:7], "little")


def initial_state(neuron: int, config: SamsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial spectrum [n, 3, h, w//2+1, 2] and the transform draws [steps, n, 4] of one neuron.

    Drawn from a generator seeded by (seed, neuron), so a neuron's s-AMS do not
    depend on which other neurons share its batch.
    """
    g = torch.Generator().manual_seed(_neuron_seed(config.seed, neuron))
    n, s = config.n_signals, config.size
    spectrum = torch.randn(n, 3, s, s // 2 + 1, 2, generator=g) * 0.01
    draws = torch.rand(config.steps, n, 4, generator=g)
    return spectrum, draws


def optimise(
    layer_model: torch.nn.Module,
    neurons: Sequence[int],
    config: SamsConfig,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Optimise the s-AMS of ``neurons`` in one batch; returns uint8 [k, n, 3, size, size]."""
    device = resolve_device(device)
    n, size = config.n_signals, config.size
    states = [initial_state(i, config) for i in neurons]
    spectrum = torch.cat([s for s, _ in states]).to(device).requires_grad_(True)
    draws = torch.cat([d for _, d in states], dim=1).to(device)
    scale = spectrum_scale(size, size, config.decay_power).to(device)
    run = _Run(
        layer_model=layer_model,
        spectrum=spectrum,
        scale=scale,
        draws=draws,
        targets=torch.tensor(neurons, device=device).repeat_interleave(n),
        objective=objective_function(config.objective),
        opt=torch.optim.Adam([spectrum], lr=config.lr, foreach=False, fused=_adam_fused(device)),
        config=config,
        mean=torch.tensor(mean, device=device).view(1, 3, 1, 1),
        std=torch.tensor(std, device=device).view(1, 3, 1, 1),
        device=device,
        on_step=on_step,
    )
    redirect = min(REDIRECTED_STEPS, config.steps)
    with redirected_relus(layer_model):
        _steps(run, range(redirect))
    _steps(run, range(redirect, config.steps))
    with torch.no_grad():
        img = render(spectrum, scale, size)
    img = (img * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    return img.view(len(neurons), n, 3, size, size)


def _adam_fused(device: torch.device) -> bool | None:
    """``fused`` for Adam on ``device``: True on :data:`FUSED_ADAM_DEVICES`, else None (torch's choice)."""
    return True if device.type in FUSED_ADAM_DEVICES else None


@dataclass
class _Run:
    """What every step of one batch's optimisation uses."""

    layer_model: torch.nn.Module
    spectrum: torch.Tensor  # the parameters, [B, 3, h, w//2+1, 2]
    scale: torch.Tensor  # the 1/f amplitude
    draws: torch.Tensor  # the transform draws, [steps, B, 4]
    targets: torch.Tensor  # each image's neuron, [B]
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    opt: torch.optim.Optimizer
    config: SamsConfig
    mean: torch.Tensor  # [1, 3, 1, 1]
    std: torch.Tensor  # [1, 3, 1, 1]
    device: torch.device
    on_step: Callable[[], None] | None


def _steps(run: _Run, steps: range) -> None:
    for step in steps:
        x = model_input(run.spectrum, run.scale, run.draws[step], run.config, run.mean, run.std)
        if run.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(run.device):
            act = run.layer_model(x)
        objective = run.objective(act, run.targets)
        run.opt.zero_grad(set_to_none=True)
        (-objective.sum()).backward()
        run.opt.step()
        if run.on_step is not None:
            run.on_step()


class SamsCache:
    """The PNG files of one (weights, layer, settings) key: ``NEURON_SAMPLE.png``."""

    def __init__(self, directory: str | Path, config: SamsConfig):
        self.dir = Path(directory)
        self.config = config

    def path(self, neuron: int, sample: int) -> Path:
        return self.dir / f"{neuron}_{sample}.png"

    def has(self, neuron: int) -> bool:
        return all(self.path(neuron, j).is_file() for j in range(self.config.n_signals))

    def save(self, neuron: int, images: torch.Tensor) -> None:
        """Save one neuron's s-AMS [n, 3, H, W] uint8, each file atomically."""
        for j, img in enumerate(images):
            arr = img.permute(1, 2, 0).numpy()
            atomic_save(self.path(neuron, j), lambda p, a=arr: Image.fromarray(a).save(p, format="PNG"))

    def load(self, neurons: Sequence[int]) -> torch.Tensor:
        """uint8 [k, n, 3, H, W]."""
        out = [
            [torch.from_numpy(np.array(Image.open(self.path(i, j)).convert("RGB"))).permute(2, 0, 1)
             for j in range(self.config.n_signals)]
            for i in neurons
        ]
        return torch.stack([torch.stack(row) for row in out])


def generate_sams(
    layer_model: torch.nn.Module,
    neurons: Sequence[int],
    config: SamsConfig,
    cache_dir: str | Path | None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """The s-AMS of ``neurons``, uint8 [k, n, 3, size, size], made or read from the cache.

    Neurons missing from ``cache_dir`` are optimised in chunks of at most
    ``config.batch_size`` images (whole neurons per chunk); each chunk is
    saved as soon as it is done, so an interrupted run resumes where it
    stopped. Without a ``cache_dir``, or with a custom objective (which has
    no cache key, :attr:`SamsConfig.cacheable`), all are made afresh and
    nothing is read or written.
    """
    if cache_dir is None or not config.cacheable:
        return _generate(layer_model, neurons, config, None, mean, std, device, progress)
    cache = SamsCache(cache_dir, config)
    with locked(cache.dir):
        remove_stale_temps(cache.dir)
        return _generate(layer_model, neurons, config, cache, mean, std, device, progress)


def _generate(layer_model, neurons, config, cache: SamsCache | None, mean, std, device, progress) -> torch.Tensor:
    made: dict[int, torch.Tensor] = {}
    if cache is None:
        todo = list(dict.fromkeys(neurons))
    else:
        with atomic_write(cache.dir / "settings.json") as f:
            json.dump(config.key_fields() | {"mean": list(mean), "std": list(std)}, f, indent=1)
        todo = [i for i in neurons if not cache.has(i)]
    per_chunk = max(1, config.batch_size // config.n_signals)
    chunks = [todo[a : a + per_chunk] for a in range(0, len(todo), per_chunk)]
    bar = tqdm(
        total=len(chunks) * config.steps, desc="s-AMS", unit="step", disable=not progress or not todo, leave=False
    )
    for chunk in chunks:
        images = optimise(layer_model, chunk, config, mean, std, device, on_step=lambda: bar.update())
        for i, imgs in zip(chunk, images):
            if cache is None:
                made[i] = imgs
            else:
                cache.save(i, imgs)
    bar.close()
    return cache.load(neurons) if cache is not None else torch.stack([made[i] for i in neurons])
