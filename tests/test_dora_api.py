"""The original DORA API, as its README uses it."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms as transforms

from dora_clean import Dora
from dora_clean.analysis.representations import self_activation
from dora_clean.objectives import ChannelObjective
from test_sams import colour_detectors


@pytest.mark.slow
def test_seed_readme_flow(tmp_path, cache_dir):
    model = colour_detectors()
    neuron_indices = [0, 1, 2, 3]
    my_transforms = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])]
    )
    d = Dora(model=model, image_transforms=my_transforms, device="cpu")
    sams = d.generate_signals(
        neuron_idx=neuron_indices, layer=model[1], objective_fn=ChannelObjective(), lr=0.3, width=24, height=24,
        iters=40, experiment_name="model.1", overwrite_experiment=True, n_signals=2,
    )
    assert sams.shape == (4, 2, 3, 24, 24)
    A = d.collect_encodings(layer=model[1], experiment_name="model.1")
    assert A.shape == (4, 4, 2)
    result = d.run_outlier_detection(experiment_name="model.1", neuron_idx=neuron_indices, method="PCA",
                                     outliers_fraction=0.1)
    assert len(result.outlier_neuron_idx) == 1 and result.outlier_neuron_idx[0] in neuron_indices
    assert result.embeddings.shape == (4, 2)
    ranked = d.run_outlier_detection(experiment_name="model.1", method="kNN", outliers_fraction=1.0)
    assert sorted(ranked.outlier_neuron_idx) == neuron_indices
    both = d.run_outlier_detection(experiment_name="model.1", method="kNN+group", outliers_fraction=0.5)
    assert len(both.outlier_neuron_idx) == 2 and set(both.outlier_neuron_idx) <= set(neuron_indices)
    path = result.visualize(tmp_path / "atlas.png")
    assert path.stat().st_size > 1000
    # a second generation with the same settings reuses the cache (no new files)
    n_files = len(list(cache_dir.rglob("*.png")))
    d.generate_signals(neuron_idx=neuron_indices, layer=model[1], lr=0.3, width=24, height=24, iters=40,
                       experiment_name="model.1", overwrite_experiment=True, n_signals=2)
    assert len(list(cache_dir.rglob("*.png"))) == n_files == 8


class Silence:
    """A custom objective: the image's own channel as low as it goes."""

    def __call__(self, act, targets):
        return -ChannelObjective()(act, targets)


class NextChannel(ChannelObjective):
    """A subclass that keeps the built-in's name ("channel") but targets the next channel."""

    def __call__(self, act, targets):
        return super().__call__(act, (targets + 1) % act.shape[1])


def test_a_custom_objective_is_optimised_not_replaced_by_the_channel_objective(cache_dir):
    model = colour_detectors()
    raw = transforms.Normalize(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    d = Dora(model=model, image_transforms=raw, device="cpu")
    kw = dict(neuron_idx=[0, 1, 2], layer=model[1], lr=0.3, width=24, height=24, iters=40, n_signals=2)
    channel = d.generate_signals(objective_fn=ChannelObjective(), experiment_name="channel", **kw)
    n_cached = len(list(cache_dir.rglob("*.png")))
    assert n_cached == 6
    silenced = d.generate_signals(objective_fn=Silence(), experiment_name="silenced", **kw)
    nxt = d.generate_signals(objective_fn=NextChannel(), experiment_name="next", **kw)
    assert not torch.equal(silenced, channel) and not torch.equal(nxt, channel)
    own = {name: self_activation(d.collect_encodings(model[1], name), [0, 1, 2])
           for name in ("channel", "silenced", "next")}
    assert torch.all(own["silenced"] < own["channel"])  # minimised: their own channel stays lower
    A = d.collect_encodings(model[1], "next").mean(dim=2)  # [k, C]
    assert [int(A[i].argmax()) for i in range(3)] == [1, 2, 3]  # each drove the next channel
    # a custom objective has no cache key: nothing of it is cached, so nothing stale can come back
    assert len(list(cache_dir.rglob("*.png"))) == n_cached
    again = d.generate_signals(objective_fn=Silence(), experiment_name="silenced", overwrite_experiment=True, **kw)
    assert torch.equal(again, silenced)  # made afresh, deterministically
