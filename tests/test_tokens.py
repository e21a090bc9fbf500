"""Transformer layers (tokens [B, 1 + T, C]), channels-last maps [B, H, W, C], and models by name (torchvision,
timm) with local weights files."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

from dora_clean.analysis.cost import estimate_sams, format_duration
from dora_clean.analysis.sams import SamsConfig
from dora_clean.errors import DoraError
from dora_clean.models import (LayerModel, default_layer, fixed_input_size, load_model,
                               weights_hash)
from dora_clean.models.zoo import classifier_outputs


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=3).eval()


def tiny_swin() -> nn.Module:
    torch.manual_seed(0)
    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2],
                           num_classes=3).eval()


def tiny_convnext() -> nn.Module:
    torch.manual_seed(0)
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3).eval()


def module_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    got = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: got.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return got[0]


class Prepends(nn.Module):
    """A tiny transformer that prepends a class token and register tokens (named as timm/DINOv2 do) or
    unnamed extra tokens (a buffer the structure does not tell of)."""

    def __init__(self, n_register: int = 4, named: bool = True, n_unnamed: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 16, 8, stride=8)
        if named:
            self.cls_token = nn.Parameter(torch.randn(1, 1, 16))
            self.register_tokens = nn.Parameter(torch.randn(1, n_register, 16))
        self.register_buffer("extra", torch.randn(1, n_unnamed, 16))
        self.blocks = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, batch_first=True) for _ in range(2)])
        self.head = nn.Linear(16, 3)
        self.eval()

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        b = len(t)
        parts = [self.cls_token.expand(b, -1, -1), self.register_tokens.expand(b, -1, -1)] if hasattr(
            self, "cls_token") else []
        t = torch.cat([*parts, self.extra.expand(b, -1, -1), t], dim=1)
        return self.head(self.blocks(t)[:, 0])


# --- tokens -------------------------------------------------------------------------------------------------


def test_class_token_block_gives_its_patch_tokens_as_a_map():
    m, x = tiny_vit(), torch.rand(2, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_1"
    assert default_layer(m, 32) == layer
    assert fixed_input_size(m) == 32
    tokens = module_output(m, layer, x)  # [2, 1 + 16, 16]
    lm = LayerModel(m, layer)
    assert lm.token_layout.prefix == 1 and lm.token_layout.has_class
    got = lm(x)
    assert got.shape == (2, 16, 4, 4)
    torch.testing.assert_close(got, tokens[:, 1:].transpose(1, 2).reshape(2, 16, 4, 4))
    torch.testing.assert_close(got[:, :, 1, 2], tokens[:, 1 + 4 * 1 + 2])  # row-major patch grid
    cls = LayerModel(m, layer, tokens="cls")
    torch.testing.assert_close(cls(x), tokens[:, 0, :, None, None])
    assert cls.view_key != lm.view_key == layer
    assert LayerModel(m, "conv_proj")(x).shape == (2, 16, 4, 4)  # a conv map before the class token, as is


def test_register_tokens_are_left_out_of_the_map():
    m, x = Prepends(n_register=4), torch.rand(2, 3, 32, 32)
    assert default_layer(m, 32) == "blocks.1"
    tokens = module_output(m, "blocks.1", x)  # [2, 1 + 4 + 16, 16]
    lm = LayerModel(m, "blocks.1")
    assert lm.token_layout.prefix == 5
    torch.testing.assert_close(lm(x), tokens[:, 5:].transpose(1, 2).reshape(2, 16, 4, 4))
    torch.testing.assert_close(LayerModel(m, "blocks.1", tokens="cls")(x), tokens[:, 0, :, None, None])


def test_prefix_tokens_are_inferred_from_the_count_or_given(tmp_path):
    x = torch.rand(2, 3, 32, 32)
    m = Prepends(named=False, n_unnamed=3)  # 3 + 16 tokens, the model says nothing
    tokens = module_output(m, "blocks.1", x)
    torch.testing.assert_close(LayerModel(m, "blocks.1")(x), tokens[:, 3:].transpose(1, 2).reshape(2, 16, 4, 4))
    many = Prepends(named=False, n_unnamed=19)  # 19 + 16 = 35 tokens: 35 - 25 = 10 is too many to guess
    with pytest.raises(DoraError, match=r"--prefix-tokens N"):
        LayerModel(many, "blocks.1")(torch.rand(1, 3, 32, 32))
    want = module_output(many, "blocks.1", x)[:, 19:].transpose(1, 2).reshape(2, 16, 4, 4)
    torch.testing.assert_close(LayerModel(many, "blocks.1", prefix_tokens=19)(x), want)
    # how the scan passes --prefix-tokens to the s-AMS stage: the analysis's own LayerModel takes it
    from dora_clean.analysis import AnalysisOptions, analyse_layer

    options = AnalysisOptions(device="cpu", progress=False, cache_dir=tmp_path, prefix_tokens=19)
    found = analyse_layer(many, "blocks.1", [0, 1], SamsConfig(n_signals=1, steps=2, size=32, batch_size=2),
                          options=options)
    assert found.A.shape[:2] == (2, 16)  # the patch tokens' 16 channels, on each neuron's s-AMS
    with pytest.raises(DoraError, match="do not form a square grid"):
        LayerModel(many, "blocks.1", prefix_tokens=5)(x)


def test_pooling_cls_needs_a_class_token():
    with pytest.raises(DoraError, match="--pooling cls needs a transformer layer"):
        LayerModel(torchvision.models.resnet18(num_classes=3).eval(), "layer4", tokens="cls")(torch.rand(1, 3, 32, 32))
    with pytest.raises(DoraError, match="unknown token view"):
        LayerModel(tiny_vit(), "encoder", tokens="register")


def test_timm_class_and_register_tokens():
    timm = pytest.importorskip("timm")
    kw = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    x = torch.rand(2, 3, 32, 32)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, reg_tokens=2, **kw).eval()
    assert default_layer(m, 32) == "blocks.1" and fixed_input_size(m) == 32
    tokens = module_output(m, "blocks.1", x)
    lm = LayerModel(m, "blocks.1")
    assert lm.token_layout.prefix == 3
    torch.testing.assert_close(lm(x), tokens[:, 3:].transpose(1, 2).reshape(2, 16, 4, 4))
    torch.testing.assert_close(LayerModel(m, "blocks.1", tokens="cls")(x), tokens[:, 0, :, None, None])
    no_cls = timm.create_model("vit_tiny_patch16_224", pretrained=False, reg_tokens=2, class_token=False,
                               global_pool="avg", **kw).eval()
    assert LayerModel(no_cls, "blocks.1")(x).shape == (2, 16, 4, 4)
    with pytest.raises(DoraError, match="has no class token"):
        LayerModel(no_cls, "blocks.1", tokens="cls")(x)


# --- channels-last ------------------------------------------------------------------------------------------


def test_swin_stages_are_channels_last_and_the_last_stage_is_the_default():
    m, x = tiny_swin(), torch.rand(2, 3, 32, 32)
    assert default_layer(m, 32) == "features.3"
    for layer in ("features.3", "features.0", "norm"):
        out = module_output(m, layer, x)  # [B, H, W, C]
        lm = LayerModel(m, layer)
        torch.testing.assert_close(lm(x), out.permute(0, 3, 1, 2), msg=layer)
        assert lm._kind == "channels_last", layer
    # features.0 gives [2, 8, 8, 8]: only its modules (Conv, Permute, LayerNorm) tell that it is channels-last
    assert module_output(m, "features.0", x).shape == (2, 8, 8, 8)
    torch.testing.assert_close(LayerModel(m, "permute")(x), module_output(m, "permute", x))  # back to [B, C, H, W]
    assert LayerModel(m, "features.0.0")._output_kind(module_output(m, "features.0.0", x), x) == "map"


def test_convnext_inner_modules_are_channels_last_its_blocks_channels_first():
    m, x = tiny_convnext(), torch.rand(2, 3, 32, 32)
    assert default_layer(m, 32) == "features"  # a CNN: the layer that feeds the classifier, as before
    for layer, kind in [("features.3.0.block.3", "channels_last"), ("features.3.0.block", "map"), ("features.3", "map")]:
        out = module_output(m, layer, x)
        lm = LayerModel(m, layer)
        got = lm(x)
        assert lm._kind == kind, layer
        torch.testing.assert_close(got, out.permute(0, 3, 1, 2) if kind == "channels_last" else out, msg=layer)


class Reshape(nn.Module):
    """A module without children that tells nothing of the layout."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(len(x), *self.shape)


def opaque(*shape, channels=8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), Reshape(*shape)).eval()


def test_layout_from_the_shape_where_the_modules_do_not_say():
    x, m = torch.rand(2, 3, 4, 4), opaque(2, 2, 32)
    torch.testing.assert_close(LayerModel(m, "1")(x), m(x).permute(0, 3, 1, 2))  # H == W before C
    assert LayerModel(opaque(32, 2, 2), "1")(x).shape == (2, 32, 2, 2)  # C before H == W
    assert LayerModel(opaque(32, 4, 1), "1")(x).shape == (2, 32, 4, 1)  # no square grid: channels-first, as before
    with pytest.raises(DoraError, match=r"\(2, 4, 4, 4\), which may be \[B, C, H, W\] or \[B, H, W, C\]"):
        LayerModel(opaque(4, 4, 4, channels=4), "1")(x)


# --- models by name -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,key", [("vit_b_16", "heads.head.weight"), ("swin_t", "head.weight"),
                                      ("convnext_tiny", "classifier.2.weight"), ("efficientnet_b0", "classifier.1.weight"),
                                      ("mobilenet_v3_large", "classifier.3.weight"), ("regnet_y_400mf", "fc.weight"),
                                      ("squeezenet1_0", "classifier.1.weight")])
def test_the_class_count_is_read_from_the_classifier(name, key):
    def factory(**kw):
        return torchvision.models.get_model(name, weights=None, **kw)

    with torch.device("meta"):
        try:
            state = factory(num_classes=5).state_dict()
        except NotImplementedError:  # regnet computes its widths with tensors
            state = None
    state = state if state is not None else factory(num_classes=5).state_dict()
    assert state[key].shape[0] == 5
    assert classifier_outputs(factory, state) == 5


def test_a_model_by_name_without_weights_is_random_and_says_so():
    loaded = load_model("squeezenet1_0")
    assert any("random" in w for w in loaded.info["warnings"])


def test_timm_model_with_a_local_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    src = timm.create_model("test_vit", pretrained=False, num_classes=3)  # timm's tiny test ViT (160 px)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pth")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = load_model("timm:test_vit", weights=tmp_path / name)
        assert weights_hash(loaded.model) == weights_hash(src), name
        assert loaded.model.get_classifier().out_features == 3
        assert loaded.info["image_size"] == 160 and "warnings" not in loaded.info
        assert not loaded.model.training
    random = load_model("timm:test_vit")
    assert any("random" in w for w in random.info["warnings"])
    with pytest.raises(DoraError, match="timm has no model 'test_vitt'.*test_vit"):
        load_model("timm:test_vitt")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DoraError, match="not a readable safetensors file"):
        load_model("timm:test_vit", weights=tmp_path / "bad.safetensors")


# --- the cost estimate and the scan ----------------------------------------------------------------------------


def test_the_sams_cost_is_estimated_from_one_step(tmp_path):
    lm = LayerModel(tiny_vit(), "encoder.layers.encoder_layer_1")
    cost = estimate_sams(lm, list(range(16)), SamsConfig(n_signals=2, steps=10, size=32, batch_size=8), tmp_path)
    assert (cost.neurons, cost.chunk, cost.chunks) == (16, 4, 4)
    assert cost.step_seconds > 0 and cost.seconds == pytest.approx(cost.step_seconds * 10 * 4)
    assert str(cost).startswith("s-AMS: 16 neurons x 2 signals x 10 steps at 32 px (4 chunks of 8 images")
    assert format_duration(30) == "30 s" and format_duration(3600) == "60 min" and format_duration(7200) == "2.0 h"


def test_on_a_cpu_a_part_of_a_large_chunk_is_timed_and_scaled(monkeypatch, tmp_path):
    from dora_clean.analysis import cost as cost_mod

    timed = []

    def fake_optimise(layer_model, neurons, config, mean, std, device, on_step):
        timed.append(len(neurons))
        on_step()
        on_step()

    monkeypatch.setattr(cost_mod, "optimise", fake_optimise)
    cost = estimate_sams(nn.Identity(), list(range(768)), SamsConfig(n_signals=4, steps=128, size=224), tmp_path)
    assert timed == [cost_mod.CPU_TIMED_IMAGES // 4] and cost.chunk == 64 and cost.chunks == 12
    assert "768 neurons x 4 signals x 128 steps at 224 px (12 chunks of 256 images" in str(cost)
    for i in range(3):  # cached neurons cost nothing
        (tmp_path / f"{i}_0.png").touch()
    assert estimate_sams(nn.Identity(), [0, 1, 2], SamsConfig(n_signals=1), tmp_path) is None


def _images(root, n=12, size=32):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


VIT_FILE = textwrap.dedent("""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    def make():
        torch.manual_seed(0)
        return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                 mlp_dim=32, num_classes=3)
""")


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_scan_a_tiny_vit_through_the_cli(tmp_path, cache_dir, pooling):
    from click.testing import CliRunner

    from dora_clean.cli import main

    data = _images(tmp_path / "data")
    (tmp_path / "vit.py").write_text(VIT_FILE)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["scan", str(data), "--model", f"{tmp_path / 'vit.py'}:make", "--image-size", "32",
                                  "--out", str(run), "--no-fiftyone", "--signals", "2", "--steps", "3",
                                  "--pooling", pooling, "--flag-top", "3", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    assert "s-AMS: 16 neurons x 2 signals x 3 steps at 32 px" in r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["layer"] == "encoder.layers.encoder_layer_1" and summary["n_neurons"] == 16
    assert summary["n_images"] == 12 and summary["n_flagged"] == 3 and summary["pooling"] == pooling
    heat = np.load(run / "heatmaps.npy")
    assert heat.shape[1:] == ((4, 4) if pooling == "mean" else (1, 1))
