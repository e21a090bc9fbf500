"""Model specs, layers and truncation."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

from dora_clean.errors import DoraError
from dora_clean.models import LayerModel, default_layer, get_layer, load_model, weights_hash


def small_resnet() -> nn.Module:
    return torchvision.models.resnet18(num_classes=3).eval()


def test_torchvision_name_with_weights_file(tmp_path):
    src = small_resnet()
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    loaded = load_model("resnet18", weights=path)
    assert weights_hash(loaded.model) == weights_hash(src)
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training


def test_weights_of_another_architecture_names_the_keys(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(), path)
    with pytest.raises(DoraError, match=r"do not fit this model \(missing .*conv1.weight"):
        load_model("resnet18", weights=path)


def test_python_file_attr_and_module_attr(tmp_path):
    f = tmp_path / "mymodel.py"
    f.write_text(textwrap.dedent("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(8, 2)
            def forward(self, x):
                return self.fc(self.pool(self.features(x)).flatten(1))
        instance = Net()
        NOT_A_MODEL = 3
    """))
    m = load_model(f"{f}:Net").model
    assert default_layer(m, 32) == "features"
    assert isinstance(load_model(f"{f}:instance").model, nn.Module)
    with pytest.raises(DoraError, match="not a torch nn.Module"):
        load_model(f"{f}:NOT_A_MODEL")
    with pytest.raises(DoraError, match="has no attribute 'Nope'"):
        load_model(f"{f}:Nope")
    sys.path.insert(0, str(tmp_path))
    try:
        assert isinstance(load_model("mymodel:Net").model, nn.Module)
    finally:
        sys.path.remove(str(tmp_path))
    assert isinstance(load_model("torchvision.models:resnet18").model, nn.Module)


def test_torchscript_and_export_files_truncate_like_the_module(tmp_path):
    m = small_resnet()
    x = torch.rand(3, 3, 64, 64)
    want = LayerModel(m, "layer3")(x)
    torch.jit.script(m).save(str(tmp_path / "m.ts"))
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(m, (torch.rand(2, 3, 64, 64),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    for name in ("m.ts", "m.pt2"):
        model = load_model(str(tmp_path / name)).model
        assert default_layer(model, 64) == "layer4"
        got = LayerModel(model, "layer3")(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_full_pickle_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(small_resnet(), path)
    with pytest.raises(DoraError, match="--trust-model-file"):
        load_model(str(path))
    assert isinstance(load_model(str(path), trust_model_file=True).model, nn.Module)


def test_clear_errors(tmp_path):
    with pytest.raises(DoraError, match="unknown model 'resnet81'.*resnet18"):
        load_model("resnet81")
    with pytest.raises(DoraError, match="does not exist"):
        load_model(f"{tmp_path}/missing.py:Net")
    with pytest.raises(DoraError, match="weights file .* does not exist"):
        load_model("resnet18", weights=tmp_path / "missing.pt")
    (tmp_path / "sd.pt").write_bytes(b"")
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(DoraError, match="holds weights .* --weights"):
        load_model(str(tmp_path / "sd.pt"))
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(DoraError, match="not a model file torch can read"):
        load_model(str(tmp_path / "junk.pt"))
    with pytest.raises(DoraError, match="no layer 'layer5'.*nearest: layer"):
        get_layer(small_resnet(), "layer5")


def test_layer_model_stops_at_the_layer():
    m = small_resnet()
    calls = []
    m.fc.register_forward_hook(lambda *a: calls.append(1))
    lm = LayerModel(m, "layer4")
    assert lm.traced
    out = lm(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 512, 2, 2)
    assert not calls


def test_hook_fallback_for_untraceable_models():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
                x = x * 2
            y = self.conv(x)
            return self.head(y.mean((2, 3)))

    m = Branchy().eval()
    lm = LayerModel(m, "conv")
    assert not lm.traced
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(lm(x), m.conv(x * 2))
