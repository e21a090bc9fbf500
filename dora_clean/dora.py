"""The API of the original DORA package, on top of dora-clean's functions.

    >>> from dora_clean import Dora
    >>> from dora_clean.objectives import ChannelObjective
    >>> d = Dora(model=model, image_transforms=my_transforms, device=device)   # doctest: +SKIP
    >>> d.generate_signals(neuron_idx=range(64), layer=model.layer3, objective_fn=ChannelObjective(),
    ...                    lr=0.05, width=64, height=64, iters=128, experiment_name="layer3")  # doctest: +SKIP
    >>> d.collect_encodings(layer=model.layer3, experiment_name="layer3")  # doctest: +SKIP
    >>> result = d.run_outlier_detection(experiment_name="layer3", neuron_idx=range(64),
    ...                                  method="PCA", outliers_fraction=0.1)  # doctest: +SKIP
    >>> result.outlier_neuron_idx  # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .device import prepare_model, resolve_device
from .errors import DoraError
from .models import LayerModel, freeze, weights_hash
from .objectives import ChannelObjective
from .analysis.outliers import METHODS, atlas, find_dead, outlier_scores
from .analysis.representations import collect_representations, ea_distance, self_activation
from .analysis.sams import IMAGENET_MEAN, IMAGENET_STD, SamsConfig, cache_root, generate_sams, sams_key

__all__ = ["Dora", "OutlierDetectionResult"]


def _normalisation(transforms) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std of the first Normalize found in ``transforms`` (else no normalisation)."""
    if transforms is None:
        return IMAGENET_MEAN, IMAGENET_STD
    todo = [transforms]
    while todo:
        t = todo.pop(0)
        if hasattr(t, "mean") and hasattr(t, "std") and type(t).__name__ == "Normalize":
            return tuple(float(x) for x in t.mean), tuple(float(x) for x in t.std)
        todo += list(getattr(t, "transforms", []) or [])
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@dataclass
class _Experiment:
    layer: str
    neurons: list[int]
    config: SamsConfig
    sams: torch.Tensor
    A: torch.Tensor | None = None


@dataclass
class OutlierDetectionResult:
    """What ``Dora.run_outlier_detection`` returns.

    Attributes:
        outlier_neuron_idx: outlier neuron ids, most anomalous first.
        embeddings: [len(neuron_idx), 2] atlas coordinates (UMAP of the EA distance).
        scores: outlier score per analysed neuron.
        neuron_idx: the analysed neuron ids (the rows of ``embeddings``).
        distance: the EA distance matrix.
    """

    outlier_neuron_idx: list[int]
    embeddings: np.ndarray
    scores: np.ndarray
    neuron_idx: list[int]
    distance: np.ndarray
    sams: torch.Tensor = field(repr=False, default=None)
    dead: list[int] = field(default_factory=list)

    def visualize(self, path: str | Path | None = None) -> Path:
        """Draw the atlas (outliers marked, their s-AMS beside) to a PNG; returns its path."""
        from .report import plot_atlas

        path = Path(path or "dora-atlas.png")
        plot_atlas(path, self.embeddings, self.neuron_idx, self.scores, self.outlier_neuron_idx, self.dead,
                   None if self.sams is None else self.sams.numpy())
        print(f"atlas written to {path}")
        return path


class Dora:
    """DORA on a model: generate s-AMS, collect their encodings, find outlier neurons.

    Args:
        model: the network (any ``nn.Module``); its parameters are frozen.
        image_transforms: the transforms used for the model's inputs; the mean
            and std of their ``Normalize`` are applied to the s-AMS.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        cache_dir: where s-AMS are cached (default ``$DORA_CLEAN_CACHE``).
    """

    def __init__(self, model: nn.Module, image_transforms=None, device: str | torch.device = "auto",
                 cache_dir: str | Path | None = None):
        self.model = freeze(model)
        self.mean, self.std = _normalisation(image_transforms)
        self.device = resolve_device(device)
        self.cache_dir = Path(cache_dir or cache_root())
        self.experiments: dict[str, _Experiment] = {}

    def _layer_name(self, layer: nn.Module | str) -> str:
        if isinstance(layer, str):
            return layer
        for name, module in self.model.named_modules():
            if module is layer and name:
                return name
        raise DoraError("the layer given is not a sub-module of the model")

    def generate_signals(
        self,
        neuron_idx: Sequence[int],
        layer: nn.Module | str,
        objective_fn=None,
        lr: float = 0.05,
        width: int = 64,
        height: int = 64,
        iters: int = 128,
        n_signals: int = 4,
        batch_size: int = 256,
        experiment_name: str = "default",
        overwrite_experiment: bool = False,
        seed: int = 0,
    ) -> torch.Tensor:
        """Make the s-AMS of ``neuron_idx``: uint8 [k, n_signals, 3, height, width].

        ``objective_fn``: what the s-AMS maximise, a callable ``(act [B, C, H, W],
        targets [B]) -> [B]`` (default :class:`~dora_clean.objectives.ChannelObjective`).
        With a built-in objective the s-AMS are cached on disk by weights, layer
        and settings: what exists is reused (also with ``overwrite_experiment=True``,
        as in DORA). Any other objective has no cache key: its s-AMS are made
        afresh on every call and not cached.
        """
        if width != height:
            raise DoraError("dora-clean makes square s-AMS: give width == height")
        objective_fn = ChannelObjective() if objective_fn is None else objective_fn
        if experiment_name in self.experiments and not overwrite_experiment:
            raise DoraError(f"experiment {experiment_name!r} exists: pass overwrite_experiment=True")
        name = self._layer_name(layer)
        config = SamsConfig(n_signals=n_signals, steps=iters, size=width, lr=lr, seed=seed, batch_size=batch_size,
                            objective=objective_fn)
        layer_model = prepare_model(LayerModel(self.model, name), self.device)
        neurons = [int(i) for i in neuron_idx]
        cache = None
        if config.cacheable:  # a built-in objective; a custom one is made afresh
            cache = self.cache_dir / "sams" / sams_key(weights_hash(self.model), name, config, self.mean, self.std)
        sams = generate_sams(layer_model, neurons, config, cache, self.mean, self.std, self.device)
        self.experiments[experiment_name] = _Experiment(name, neurons, config, sams)
        return sams

    def collect_encodings(self, layer: nn.Module | str, experiment_name: str = "default") -> torch.Tensor:
        """The layer's activations on the experiment's s-AMS: [k, C, n]."""
        exp = self._experiment(experiment_name)
        layer_model = prepare_model(LayerModel(self.model, self._layer_name(layer)), self.device)
        exp.A = collect_representations(layer_model, exp.sams, self.mean, self.std, self.device)
        return exp.A

    def _experiment(self, name: str) -> _Experiment:
        if name not in self.experiments:
            raise DoraError(f"no experiment {name!r}: call generate_signals(..., experiment_name={name!r}) first")
        return self.experiments[name]

    def run_outlier_detection(
        self,
        experiment_name: str = "default",
        neuron_idx: Sequence[int] | None = None,
        method: str = "LOF",
        outliers_fraction: float = 0.1,
        representation: str = "standardised",
    ) -> OutlierDetectionResult:
        """Rank ``neuron_idx`` by how far their representations lie from the rest.

        ``method``: LOF, kNN, group, kNN+group (dora-clean's default), PCA or IForest (any case); the top
        ``outliers_fraction`` of the live neurons are returned as outliers.
        ``representation``: "standardised" (dora-clean's default) or "raw" (the
        DORA paper's), as :func:`~dora_clean.representations.ea_distance` takes it.
        """
        exp = self._experiment(experiment_name)
        if exp.A is None:
            self.collect_encodings(exp.layer, experiment_name)
        neurons = exp.neurons if neuron_idx is None else [int(i) for i in neuron_idx]
        missing = [n for n in neurons if n not in exp.neurons]
        if missing:
            raise DoraError(f"neuron {missing[0]} has no s-AMS in experiment {experiment_name!r}")
        rows = [exp.neurons.index(n) for n in neurons]
        A = exp.A[rows]
        distance = ea_distance(A, representation).numpy()
        m = method.lower()
        if m not in METHODS:
            raise DoraError(f"unknown method {method!r}: use one of LOF, kNN, group, kNN+group, PCA, IForest")
        dead = find_dead(self_activation(A, neurons).numpy())
        live = np.flatnonzero(~dead)
        scores = np.full(len(neurons), np.nan)
        scores[live] = outlier_scores(distance[np.ix_(live, live)], m, representations=A.mean(dim=2).numpy()[live])
        n_out = max(1, math.ceil(outliers_fraction * len(live)))
        order = live[np.argsort(-scores[live], kind="stable")][:n_out]
        return OutlierDetectionResult(
            outlier_neuron_idx=[neurons[i] for i in order],
            embeddings=atlas(distance),
            scores=scores,
            neuron_idx=neurons,
            distance=distance,
            sams=exp.sams[rows],
            dead=[neurons[i] for i in np.flatnonzero(dead)],
        )
