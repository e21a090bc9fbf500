"""s-AMS generation, representations and the EA distance on a model whose answer is known."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dora_clean.errors import DoraError
from dora_clean.models import LayerModel, freeze
from dora_clean.analysis.representations import (
    collect_representations,
    ea_distance,
    self_activation,
    standardised_responses,
)
from dora_clean.analysis.sams import SamsConfig, generate_sams, optimise, render, spectrum_scale


def colour_detectors() -> nn.Module:
    """Channel c fires on pure colour c (red, green, blue) and on a vertical stripe pattern (3)."""
    conv = nn.Conv2d(3, 4, 5, padding=2, bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, :, 2, 2] = -1.0
            conv.weight[c, c, 2, 2] = 2.0
        conv.weight[3, :, :, 0::2] = 0.02
        conv.weight[3, :, :, 1::2] = -0.02
        conv.bias.fill_(0.05)
    return freeze(nn.Sequential(conv, nn.ReLU()))


CFG = SamsConfig(n_signals=2, steps=40, size=24, lr=0.3, batch_size=8)
RAW = {"mean": (0, 0, 0), "std": (1, 1, 1)}  # the model takes [0, 1] pixels


def test_sams_excite_their_own_neuron_far_more_than_the_others():
    lm = LayerModel(colour_detectors(), "1")
    sams = optimise(lm, [0, 1, 2, 3], CFG, **RAW)
    assert sams.shape == (4, 2, 3, 24, 24) and sams.dtype == torch.uint8
    A = collect_representations(lm, sams, mean=(0, 0, 0), std=(1, 1, 1))
    assert A.shape == (4, 4, 2)
    R = A.mean(dim=2)
    for i in range(4):
        # each neuron's own s-AMS excite it more than any other neuron's s-AMS do
        assert R[i, i] == R[:, i].max(), (i, R[:, i])
    for i in range(3):
        # and the colour neurons' s-AMS excite their neuron far more than the layer's other neurons
        others = torch.cat([R[i, :i], R[i, i + 1 :]])
        assert R[i, i] > 3 * others.max(), (i, R[i])
    # the colour neurons' s-AMS are dominated by their colour
    for c in range(3):
        mean_rgb = sams[c].float().mean(dim=(0, 2, 3))
        assert mean_rgb.argmax() == c, (c, mean_rgb)


def test_ea_distance_properties():
    A = torch.rand(10, 16, 3)
    A[3] = A[4] * 2  # same direction: distance 0
    d = ea_distance(A, "raw")
    assert torch.allclose(d, d.T)
    assert torch.all(d.diagonal() == 0)
    assert d.min() >= 0 and d.max() <= 1
    assert d[3, 4] < 1e-3
    opposite = ea_distance(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert abs(opposite[0, 1] - 1.0) < 1e-6
    s = ea_distance(A)  # standardised
    assert torch.allclose(s, s.T) and torch.all(s.diagonal() == 0) and s.min() >= 0 and s.max() <= 1


def test_standardised_distance_is_not_ruled_by_the_loudest_neuron():
    """One responding neuron with 100x the activations hides, in the raw responses,
    the neuron whose s-AMS excite what no other s-AMS does; standardised, it stands out."""
    g = torch.Generator().manual_seed(0)
    A = torch.rand(20, 8, 2, generator=g)
    A[:, 0] = 100 * torch.rand(20, 2, generator=g)  # a loud neuron, which every s-AMS moves a lot
    A[7, 5] += 3.0  # neuron 7's s-AMS, and only these, excite neuron 5
    for representation, expect_outlier in (("raw", False), ("standardised", True)):
        knn = ea_distance(A, representation).sort(dim=1).values[:, 1:4].mean(dim=1)
        assert (int(knn.argmax()) == 7) is expect_outlier, (representation, knn)
    Z = standardised_responses(torch.cat([A, torch.zeros(20, 1, 2)], dim=1))
    assert torch.all(Z[:, -1] == 0)  # a neuron no s-AMS moves is left out


def test_unknown_representation_is_a_clear_error():
    with pytest.raises(DoraError, match="unknown representation 'zscore'"):
        ea_distance(torch.rand(4, 4), "zscore")


def test_self_activation_picks_each_neurons_own_channel():
    A = torch.zeros(2, 5, 3)
    A[0, 3] = 7.0
    A[1, 1] = 2.0
    assert self_activation(A, [3, 1]).tolist() == [7.0, 2.0]


def test_render_is_in_unit_range_and_has_a_1_over_f_spectrum():
    scale = spectrum_scale(32, 32)
    assert scale[0, 0] == 32 and scale[0, 1] > scale[0, 8]
    img = render(torch.randn(2, 3, 32, 17, 2), scale, 32)
    assert img.shape == (2, 3, 32, 32) and img.min() > 0 and img.max() < 1


def test_deterministic_and_independent_of_batching():
    lm = LayerModel(colour_detectors(), "1")
    a = optimise(lm, [0, 1, 2, 3], CFG, **RAW)
    b = optimise(lm, [0, 1, 2, 3], CFG, **RAW)
    assert torch.equal(a, b)
    c = optimise(lm, [2], CFG, **RAW)
    assert (a[2].int() - c[0].int()).abs().max() <= 1


def test_cache_is_reused_and_missing_neurons_only_are_made(tmp_path, monkeypatch):
    import dora_clean.analysis.sams as sams_module

    lm = LayerModel(colour_detectors(), "1")
    cfg = SamsConfig(n_signals=2, steps=60, size=24, lr=0.1, batch_size=4)
    optimised: list[list[int]] = []
    real_optimise = sams_module.optimise

    def counting_optimise(layer_model, neurons, *args, **kwargs):
        optimised.append(list(neurons))
        return real_optimise(layer_model, neurons, *args, **kwargs)

    monkeypatch.setattr(sams_module, "optimise", counting_optimise)
    first = generate_sams(lm, [0, 1], cfg, tmp_path, mean=(0, 0, 0), std=(1, 1, 1), progress=False)
    assert optimised == [[0, 1]]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["0_0.png", "0_1.png", "1_0.png", "1_1.png"]
    stamp = (tmp_path / "0_0.png").stat().st_mtime_ns
    again = generate_sams(lm, [0, 1], cfg, tmp_path, mean=(0, 0, 0), std=(1, 1, 1), progress=False)
    assert torch.equal(first, again)
    assert optimised == [[0, 1]]  # read from the cache: nothing optimised again
    more = generate_sams(lm, [1, 2, 3], cfg, tmp_path, mean=(0, 0, 0), std=(1, 1, 1), progress=False)
    assert optimised == [[0, 1], [2, 3]]  # only the missing neurons
    assert (tmp_path / "0_0.png").stat().st_mtime_ns == stamp
    assert torch.equal(more[0], first[1])
    assert len(list(tmp_path.glob("*.png"))) == 8


def test_objectives_key_the_cache_by_name_and_custom_ones_not_at_all():
    import dataclasses

    from dora_clean.analysis.sams import objective_name
    from dora_clean.objectives import ChannelMaxObjective, ChannelObjective

    default = SamsConfig()
    assert default.key_fields() == {k: v for k, v in dataclasses.asdict(default).items() if k != "batch_size"}
    for built_in in (ChannelObjective(), ChannelObjective, "channel"):
        assert SamsConfig(objective=built_in).key_fields() == default.key_fields()
    assert objective_name(ChannelMaxObjective()) == "channel_max"

    class Renamed(ChannelObjective):  # inherits the name "channel", but is not the built-in
        pass

    for custom in (Renamed(), lambda act, targets: act.sum(dim=(1, 2, 3))):
        cfg = SamsConfig(objective=custom)
        assert objective_name(custom) is None and not cfg.cacheable
        with pytest.raises(DoraError, match="no cache key"):
            cfg.key_fields()
    with pytest.raises(DoraError, match="unknown objective 'nope'"):
        SamsConfig(objective="nope")
    with pytest.raises(DoraError, match="neither a name"):
        SamsConfig(objective=3)


def test_generate_sams_with_a_custom_objective_writes_nothing(tmp_path):
    lm = LayerModel(colour_detectors(), "1")
    cfg = SamsConfig(n_signals=2, steps=20, size=24, lr=0.3, batch_size=4,
                     objective=lambda act, targets: -act[torch.arange(len(targets)), targets].mean(dim=(1, 2)))
    sams = generate_sams(lm, [0, 3], cfg, tmp_path / "sams", progress=False, **RAW)
    assert torch.equal(sams, optimise(lm, [0, 3], cfg, **RAW))
    assert not (tmp_path / "sams").exists()


def _torch_floor() -> tuple[int, ...]:
    """The lowest torch that pyproject.toml allows (its ``torch>=X.Y`` requirement)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    try:
        import tomllib

        deps = tomllib.loads(text)["project"]["dependencies"]
    except ImportError:  # Python 3.10
        deps = re.findall(r'"([^"]+)"', text)
    (spec,) = [d for d in deps if re.match(r"torch\s*[><=]", d)]
    m = re.search(r">=\s*([0-9.]+)", spec)
    assert m, f"the torch requirement {spec!r} has no floor"
    return tuple(int(x) for x in m.group(1).split("."))


def test_the_torch_floor_supports_the_adam_the_cpu_optimisation_uses(monkeypatch):
    """On the CPU the s-AMS optimisation asks for the fused Adam, which torch has there from
    FUSED_ADAM_CPU_SINCE (2.4) on: pyproject.toml must not allow an older torch."""
    import dora_clean.analysis.sams as sams_module

    asked = []
    real_adam = torch.optim.Adam

    def recording_adam(params, **kwargs):
        asked.append(kwargs.get("fused"))
        return real_adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    optimise(LayerModel(colour_detectors(), "1"), [0], SamsConfig(n_signals=1, steps=2, size=16), device="cpu", **RAW)
    assert len(asked) == 1
    if asked[0]:  # the fused path: the floor must be a torch that has it on the CPU
        assert sams_module.FUSED_ADAM_CPU_SINCE == (2, 4)  # torch 2.4's release notes: fused Adam/AdamW on CPU
        assert _torch_floor()[:2] >= sams_module.FUSED_ADAM_CPU_SINCE, _torch_floor()
    import importlib

    supported = getattr(importlib.import_module("torch.optim.optimizer"), "_get_fused_kernels_supported_devices", None)
    if supported is not None:  # the installed torch agrees where the code asks for it
        assert set(sams_module.FUSED_ADAM_DEVICES) <= set(supported())
