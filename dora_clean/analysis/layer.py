"""Steps 1-4 together: the data-agnostic analysis of one layer (no dataset needed)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..device import prepare_model, resolve_device
from ..errors import DoraError
from ..models import LayerModel, weights_hash
from .outliers import OutlierResult, OutlierSettings, find_infected
from .representations import collect_representations, ea_distance, self_activation
from .sams import IMAGENET_MEAN, IMAGENET_STD, SamsConfig, cache_root, generate_sams, sams_key

__all__ = ["AnalysisOptions", "LayerAnalysis", "analyse_layer", "check_neurons", "layer_width"]


@dataclass(frozen=True)
class AnalysisOptions:
    """How :func:`analyse_layer` feeds the model and where it runs (none of it changes what it finds
    but ``mean`` and ``std``, the model's input normalisation).

    Attributes:
        mean, std: the normalisation the model expects of [0, 1] RGB pixels.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        cache_dir: the cache's root (default :func:`~dora_clean.analysis.sams.cache_root`).
        progress: show a progress bar.
        prefix_tokens: a transformer layer's class and register tokens, where the model does not say
            (``--prefix-tokens``; None: read from the model).
    """

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    device: str | torch.device = "auto"
    cache_dir: str | Path | None = None
    progress: bool = True
    prefix_tokens: int | None = None


@dataclass
class LayerAnalysis:
    """What DORA finds in one layer.

    Attributes:
        layer: the layer's dotted name.
        neurons: the analysed neuron ids.
        sams: uint8 [k, n, 3, S, S] s-AMS.
        A: [k, C, n] the layer's activations on every s-AMS.
        distance: [k, k] EA distance (of the standardised responses by default).
        self_act: [k] each neuron's activation on its own s-AMS.
        outliers: the outlier ranking, infected and dead neurons, and the atlas.
        sams_dir: where the s-AMS PNG files are cached.
        config: the s-AMS settings.
    """

    layer: str
    neurons: list[int]
    sams: torch.Tensor
    A: torch.Tensor
    distance: np.ndarray
    self_act: np.ndarray
    outliers: OutlierResult
    sams_dir: Path
    config: SamsConfig

    @property
    def infected(self) -> list[int]:
        return self.outliers.infected


def layer_width(layer_model: LayerModel, size: int) -> tuple[int, int, int]:
    """(channels, height, width) of the layer's output for a size x size input."""
    with torch.no_grad():
        out = layer_model(torch.zeros(1, 3, size, size, device=next(_params_or_buffers(layer_model)).device))
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def _params_or_buffers(module: torch.nn.Module):
    yield from module.parameters()
    yield from module.buffers()
    yield torch.empty(0)


def check_neurons(neurons: Sequence[int] | None, n_channels: int) -> list[int]:
    """All channels by default; out-of-range ids give a clear error."""
    if neurons is None:
        return list(range(n_channels))
    neurons = [int(i) for i in neurons]
    bad = [i for i in neurons if not 0 <= i < n_channels]
    if bad:
        raise DoraError(f"neuron index {bad[0]} is out of range: the layer has {n_channels} neurons (0-{n_channels - 1})")
    if len(set(neurons)) != len(neurons):
        raise DoraError("neuron indices repeat: give each neuron once")
    return neurons


def analyse_layer(
    model: torch.nn.Module,
    layer: str,
    neurons: Sequence[int] | None = None,
    config: SamsConfig = SamsConfig(),
    outliers: OutlierSettings = OutlierSettings(),
    options: AnalysisOptions = AnalysisOptions(),
) -> LayerAnalysis:
    """Run DORA on one layer: s-AMS, representations, EA distance, infected neurons.

    ``config``: the s-AMS; ``outliers``: how the infected neurons are found
    (``outliers.representation``: how the EA distance sees the layer's
    responses, :data:`~dora_clean.analysis.representations.REPRESENTATIONS`);
    ``options``: the model's input normalisation, the device, the cache and
    the progress bar.

    Example:
        >>> from dora_clean.demo import load_demo_model
        >>> model, info = load_demo_model()
        >>> result = analyse_layer(model, info["layer"])  # doctest: +SKIP
        >>> result.infected  # doctest: +SKIP
        [37]
    """
    mean, std = options.mean, options.std
    device = resolve_device(options.device)
    layer_model = LayerModel(model, layer, prefix_tokens=options.prefix_tokens)
    key = sams_key(weights_hash(model), layer_model.view_key, config, mean, std)
    layer_model = prepare_model(layer_model, device)
    n_channels = layer_width(layer_model, config.size)[0]
    neurons = check_neurons(neurons, n_channels)
    sams_dir = Path(options.cache_dir or cache_root()) / "sams" / key
    sams = generate_sams(layer_model, neurons, config, sams_dir, mean, std, device, options.progress)
    A = collect_representations(layer_model, sams, mean, std, device, config.batch_size)
    distance = ea_distance(A, outliers.representation).numpy()
    self_act = self_activation(A, neurons).numpy()
    found = find_infected(distance, self_act, neurons, outliers, representations=A.mean(dim=2).numpy(),
                          seed=config.seed)
    return LayerAnalysis(layer, neurons, sams, A, distance, self_act, found, sams_dir, config)
