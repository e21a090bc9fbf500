"""The planted-artifact generator, the tiny nets and the bundled demo model (fast)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

from benchmarks import planted
from benchmarks.planted import ARTIFACT_CLASS, ARTIFACTS, CLASSES
from dora_clean import demo
from dora_clean.demo import nets


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- content and artifacts


@pytest.mark.parametrize("cls", CLASSES)
def test_render_content_shape_dtype(cls):
    img = planted.render_content(_rng(), cls)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert img.std() > 5  # textured, not flat
    assert planted.render_content(_rng(), cls, size=32).shape == (32, 32, 3)


def test_render_content_deterministic_and_varied():
    a = planted.render_content(_rng(3), "square")
    b = planted.render_content(_rng(3), "square")
    c = planted.render_content(_rng(4), "square")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_names_raise():
    with pytest.raises(ValueError):
        planted.render_content(_rng(), "hexagon-ish")
    with pytest.raises(ValueError):
        planted.add_artifact(planted.render_content(_rng(), "circle"), "sticker", _rng())
    with pytest.raises(ValueError):
        nets.build("resnet9000", 4)
    assert ARTIFACT_CLASS in CLASSES
    assert set(ARTIFACTS) == {"text", "patch", "frame"}


def _changed(kind, seed):
    rng = _rng(seed)
    img = planted.render_content(rng, "triangle")
    before = img.copy()
    out = planted.add_artifact(img, kind, rng)
    assert np.array_equal(img, before), "add_artifact must not modify its input"
    assert out.shape == img.shape and out.dtype == np.uint8
    return np.abs(out.astype(int) - img.astype(int)).sum(axis=2) > 0


@pytest.mark.parametrize("seed", range(5))
def test_text_artifact_bottom_right(seed):
    changed = _changed("text", seed)
    assert changed[40:, 30:].sum() > 30
    assert changed[:40].sum() == 0 and changed[:, :20].sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_patch_artifact_top_left(seed):
    changed = _changed("patch", seed)
    assert changed[:20, :20].sum() > 80
    assert changed[20:].sum() == 0 and changed[:, 20:].sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_frame_artifact_border(seed):
    changed = _changed("frame", seed)
    border = np.ones_like(changed)
    border[2:-2, 2:-2] = False
    assert changed[border].mean() > 0.9
    assert changed[5:-5, 5:-5].sum() == 0


# --------------------------------------------------------------------------- data sets


def test_make_training_arrays():
    n = 20
    x, y = planted.make_training_arrays("text", n, seed=5)
    assert x.shape == (n * len(CLASSES), 64, 64, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [n] * len(CLASSES)
    x2, y2 = planted.make_training_arrays("text", n, seed=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = planted.make_training_arrays("text", n, seed=6)
    assert not np.array_equal(x, x3)


@pytest.mark.parametrize("artifact_rate", [0.0, 0.5, 1.0])
def test_training_artifact_only_on_artifact_class(artifact_rate):
    # A frame is one exact colour along the border; noisy content never is.
    n, other = 40, 0.25
    x, y = planted.make_training_arrays(
        "frame", n, seed=2, other_fraction=other, artifact_rate=artifact_rate
    )
    a = CLASSES.index(ARTIFACT_CLASS)
    top = x[:, 0, 4:-4].astype(float)  # first row, away from the corners
    framed = top.std(axis=1).max(axis=1) < 1
    assert not framed[y != a].any()
    n_other = round(other * n)
    assert framed[y == a].sum() == n_other + round(artifact_rate * (n - n_other))


def test_write_scan_set(tmp_path):
    root = planted.write_scan_set(tmp_path / "scan", "patch", 50, artifact_fraction=0.2, seed=3)
    files = sorted(p for p in root.rglob("*.png"))
    assert len(files) == 50
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(CLASSES)
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["filepath", "artifact"]
    assert len(rows) == 50
    assert sum(int(r["artifact"]) for r in rows) == 10
    assert sorted(r["filepath"] for r in rows) == sorted(
        p.relative_to(root).as_posix() for p in files
    )
    # the artifact lies on several classes, not one
    art_classes = {r["filepath"].split("/")[0] for r in rows if r["artifact"] == "1"}
    assert len(art_classes) >= 2
    # deterministic: same seed, same bytes
    root2 = planted.write_scan_set(tmp_path / "scan2", "patch", 50, artifact_fraction=0.2, seed=3)
    for p in files[:10]:
        assert p.read_bytes() == (root2 / p.relative_to(root)).read_bytes()
    assert (root / "labels.csv").read_bytes() == (root2 / "labels.csv").read_bytes()
    # no leftovers beside the set, and no silent overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan", "scan2"]
    with pytest.raises(FileExistsError):
        planted.write_scan_set(root, "patch", 5)
    planted.write_scan_set(root, "text", 8, artifact_fraction=0.5, overwrite=True)
    assert len(list(root.rglob("*.png"))) == 8


def test_write_scan_set_into_empty_dir_and_jpeg(tmp_path):
    (tmp_path / "empty").mkdir()
    root = planted.write_scan_set(tmp_path / "empty", "text", 12, artifact_fraction=0.25, fmt="jpg")
    assert len(list(root.rglob("*.jpg"))) == 12
    lines = (root / "labels.csv").read_text().splitlines()
    assert sum(line.endswith(",1") for line in lines[1:]) == 3


# --------------------------------------------------------------------------- nets


@pytest.mark.parametrize("arch", sorted(nets.ARCHITECTURES))
def test_nets_trace_at_default_layer(arch):
    model = nets.build(arch, 4).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 4)
    layer = nets.default_layer(arch)
    fx = create_feature_extractor(model, return_nodes={layer: "feat"})
    feat = fx(x)["feat"]
    assert feat.shape[:2] == (2, 64)
    assert feat.shape[2] > 1 and feat.shape[3] > 1
    assert dict(model.named_modules())[layer] is not None


def test_net_heads_named_as_documented():
    r = nets.tiny_resnet(5)
    assert isinstance(r.fc, torch.nn.Linear) and r.fc.out_features == 5
    assert isinstance(r.avgpool, torch.nn.AdaptiveAvgPool2d)
    c = nets.tiny_cnn(3)
    assert isinstance(c.features, torch.nn.Sequential) and c.classifier.out_features == 3


# --------------------------------------------------------------------------- training and caching


@pytest.mark.slow
def test_train_model_tiny_is_deterministic():
    torch.set_num_threads(1)
    try:
        m1, metrics = planted.train_model("tiny_cnn", "patch", epochs=1, n_per_class=8, seed=1)
        m2, _ = planted.train_model("tiny_cnn", "patch", epochs=1, n_per_class=8, seed=1)
    finally:
        torch.set_num_threads(2)
    assert not m1.training
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    for key in (
        "clean_accuracy",
        "reliance",
        "artifact_class_accuracy_without_artifact",
        "settings",
    ):
        assert key in metrics


@pytest.mark.slow
def test_load_planted_model_caches(cache_dir, monkeypatch):
    m1, metrics1 = planted.load_planted_model("tiny_cnn", "text", epochs=1, n_per_class=6)
    files = sorted(p.name for p in (cache_dir / "planted").iterdir())
    assert len([f for f in files if f.endswith(".pt")]) == 1
    assert len([f for f in files if f.endswith(".json")]) == 1

    def no_training(*a, **k):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(planted, "train_model", no_training)
    m2, metrics2 = planted.load_planted_model("tiny_cnn", "text", epochs=1, n_per_class=6)
    assert metrics2 == json.loads(json.dumps(metrics1))
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- the bundled demo model


def test_demo_model_loads_and_classifies():
    model, info = demo.load_demo_model()
    for key in (
        "arch",
        "num_classes",
        "classes",
        "image_size",
        "mean",
        "std",
        "artifact",
        "layer",
        "metrics",
    ):
        assert key in info
    assert tuple(info["classes"]) == CLASSES and info["num_classes"] == len(CLASSES)
    assert info["layer"] == nets.default_layer(info["arch"])
    assert info["artifact"] in ARTIFACTS
    assert not model.training
    rng = _rng(2024)
    a = CLASSES.index(ARTIFACT_CLASS)
    imgs, want = [], []
    for ci, cls in enumerate(CLASSES):
        for _ in range(6):
            if cls == ARTIFACT_CLASS:
                # the artifact class is known to the model by its artifact
                imgs.append(planted.make_image(rng, cls, info["artifact"]))
            else:
                imgs.append(planted.make_image(rng, cls))
            want.append(ci)
    # other content with the artifact: the Clever Hans shortcut
    for cls in CLASSES:
        if cls != ARTIFACT_CLASS:
            imgs.append(planted.make_image(rng, cls, info["artifact"]))
            want.append(a)
    x = planted.to_tensor(np.stack(imgs), info["mean"], info["std"])
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    assert (pred == np.array(want)).mean() >= 0.9, (pred, want)
