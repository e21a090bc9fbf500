"""The families benchmark's data: the dev / held-out split, and images of every kind drawn as described."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import families as F

SIZE = 64


def _pair(family: F.Family, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same image without and with the family's artifact."""
    clean = F.draw(family, np.random.default_rng(seed), "square", False)
    rng = np.random.default_rng(seed)
    bg, base = F._background(rng, family.background, SIZE)
    img = F._content(rng, family.content, bg, base, 1)
    assert np.array_equal(img, clean)  # draw is background, then content, then the artifact
    return clean, F.add_family_artifact(img, family.artifact, rng)


def test_the_split_holds_out_whole_kinds_and_every_family_knows_its_side():
    dev, held = F.SPLIT["dev"], F.SPLIT["held-out"]
    for kind in ("background", "content", "artifact", "arch"):
        assert not set(dev[kind]) & set(held[kind])  # a kind is dev or held out, never both
    assert held["artifact"] and held["arch"]  # at least one artifact kind and one architecture held out
    assert F.Family("texture", "shapes", "text", "tiny_resnet").split == "dev"
    assert F.Family("texture", "shapes", "ruler", "tiny_resnet").split == "held-out"
    assert F.Family("photo", "shapes", "text", "tiny_resnet").split == "held-out"
    splits = [f.split for f in F.FAMILIES]
    assert splits.count("dev") >= 4 and splits.count("held-out") >= 4
    fresh = [f for batch in F.FRESH_BATCHES.values() for f in batch]  # held out
    assert all(f.split == "held-out" for f in fresh)
    assert all(f in F.FAMILIES for k, batch in F.FRESH_BATCHES.items() if k < 7 for f in batch)
    assert not (set(F.FRESH_7_FAMILIES) | set(F.FRESH_8_FAMILIES) | set(F.FRESH_9_FAMILIES)
                | set(F.FRESH_10_FAMILIES) | set(F.FRESH_11_FAMILIES) | set(F.FRESH_12_FAMILIES)
                | set(F.FRESH_13_FAMILIES) | set(F.FRESH_14_FAMILIES)) & set(F.FAMILIES)  # kept out for the next rules
    assert all(f.split == "dev" and f in F.FAMILIES for f in F.DEV_2_FAMILIES)


@pytest.mark.parametrize("background", F.BACKGROUNDS)
@pytest.mark.parametrize("content", F.CONTENTS)
def test_every_background_and_content_draws_a_deterministic_image(background, content):
    family = F.Family(background, content, "text", "tiny_cnn")
    a = F.draw(family, np.random.default_rng(3), "circle", False)
    b = F.draw(family, np.random.default_rng(3), "circle", False)
    c = F.draw(family, np.random.default_rng(4), "circle", False)
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 5  # not blank


@pytest.mark.parametrize("content", ["textures", "digits"])
def test_classes_differ_in_content(content):
    family = F.Family("flat", content, "text", "tiny_cnn")
    imgs = [F.draw(family, np.random.default_rng(0), cls, False) for cls in ("circle", "square")]
    assert not np.array_equal(*imgs)


# where each artifact may change pixels (rows, columns of a 64 px image); the rest must not change
REGIONS = {
    "sticker": (slice(40, 64), slice(0, 24)),
    "timestamp": (slice(0, 16), slice(0, 64)),
    "logo": (slice(0, 24), slice(40, 64)),
    "tag": (slice(0, 18), slice(0, 64)),
    "stamp": (slice(21, 64), slice(0, 64)),
    "barcode": (slice(38, 64), slice(30, 64)),
    "caption": (slice(52, 64), slice(0, 64)),
}


@pytest.mark.parametrize("artifact", sorted(REGIONS))
@pytest.mark.parametrize("seed", range(4))
def test_artifacts_stay_in_their_corner(artifact, seed):
    clean, marked = _pair(F.Family("flat", "shapes", artifact, "tiny_cnn"), seed)
    changed = np.any(clean != marked, axis=2)
    assert changed.sum() > 15
    outside = changed.copy()
    outside[REGIONS[artifact]] = False
    assert not outside.any()


@pytest.mark.parametrize("artifact", ["arrow", "marks"])
def test_arrows_and_calliper_marks_are_light_strokes_anywhere_in_the_image(artifact):
    centres = []
    for seed in range(6):
        clean, marked = _pair(F.Family("flat", "shapes", artifact, "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 15 < changed.sum() < 0.15 * changed.size  # a stroke, not a patch
        assert marked[changed].min(axis=1).mean() > 150 or artifact == "arrow"  # callipers: near white
        assert marked[changed][:, :2].min(axis=1).mean() > 180  # red and green high: yellow or white
        centres.append(np.argwhere(changed).mean(axis=0))
    assert np.ptp(np.array(centres), axis=0).min() > 10  # not in one corner: they move about


def test_ink_strokes_are_dark_curves_and_scanlines_cross_the_whole_image():
    centres = []
    for seed in range(6):
        clean, marked = _pair(F.Family("flat", "shapes", "ink", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 15 < changed.sum() < 0.15 * changed.size  # a stroke, not a patch
        assert marked[changed].mean() < clean[changed].mean()  # ink darkens the image
        rows, cols = np.nonzero(changed)
        assert np.ptp(rows) > 3 and np.ptp(cols) > 3  # a curve, not a straight horizontal or vertical line
        centres.append([rows.mean(), cols.mean()])
    assert np.ptp(np.array(centres), axis=0).min() > 10  # they move about
    heights = []
    for seed in range(6):
        clean, marked = _pair(F.Family("flat", "shapes", "scanline", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows = np.nonzero(changed.any(axis=1))[0]
        assert len(rows) <= 3 and changed[rows].any(axis=0).mean() > 0.9  # a thin line across the whole width
        heights.append(rows.mean())
    assert np.ptp(heights) > 10


@pytest.mark.parametrize("seed", range(6))
def test_the_ruler_is_a_band_along_the_bottom_or_the_left_edge(seed):
    clean, marked = _pair(F.Family("texture", "shapes", "ruler", "tiny_cnn"), seed)
    changed = np.any(clean != marked, axis=2)
    bottom, left = changed[-5:].mean(), changed[:, :5].mean()
    assert max(bottom, left) > 0.9 and changed[10:50, 10:50].sum() == 0


def test_tiny_mobilenet_gives_an_8x8_map_at_its_default_layer():
    from dora_clean.models import LayerModel

    model = F.build("tiny_mobilenet", 4).eval()
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 4)
    for layer, side in zip(F.default_layers("tiny_mobilenet"), (8, 16)):
        assert LayerModel(model, layer)(torch.zeros(1, 3, SIZE, SIZE)).shape[2:] == (side, side)
    assert any(m.groups > 1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # depthwise


def test_tiny_vit_is_a_held_out_token_model_whose_layers_read_as_an_8x8_patch_grid():
    from dora_clean.models import LayerModel

    model = F.build("tiny_vit", 4).eval()
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 4)
    for layer in F.default_layers("tiny_vit"):  # 1 class token + 64 patch tokens of width 64
        assert LayerModel(model, layer)(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 64, 8, 8)
    assert F.Family("texture", "shapes", "text", "tiny_vit").split == "held-out"


def test_a_family_scan_set_has_the_artifact_on_its_share_of_every_class(tmp_path, monkeypatch):
    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path))
    family = F.Family("photo", "digits", "timestamp", "tiny_mobilenet")
    root = F.write_family_scan_set(family, 40, 0.25)
    rows = [line.split(",") for line in (root / "labels.csv").read_text().splitlines()[1:]]
    assert len(rows) == 40 and sum(int(a) for _, a in rows) == 10
    assert len({p.split("/")[0] for p, _ in rows}) == 4
    assert F.write_family_scan_set(family, 40, 0.25) == root  # cached


def test_two_artifact_families_name_both_artifacts_and_are_held_out_when_either_is():
    dev = F.TwoArtifactFamily("texture", "shapes", ("text", "sticker"), "tiny_resnet")
    assert dev.name == "texture/shapes/text+sticker/tiny_resnet" and dev.split == "dev"
    assert F.TwoArtifactFamily("texture", "shapes", ("text", "logo"), "tiny_resnet").split == "held-out"
    assert dev.shortcut_classes == ("circle", "square")
    with pytest.raises(ValueError):
        F.TwoArtifactFamily("texture", "shapes", ("text", "text"), "tiny_resnet")
    splits = [f.split for f in F.TWO_ARTIFACT_FAMILIES]
    assert splits.count("dev") >= 1 and splits.count("held-out") >= 1


def test_two_artifact_training_arrays_put_each_artifact_on_its_own_class_only():
    family = F.TwoArtifactFamily("flat", "textures", ("patch", "sticker"), "tiny_cnn")
    asked: list[tuple[str, str | None]] = []

    def record(rng, cls, artifact, size):
        asked.append((cls, artifact))
        return np.zeros((size, size, 3), np.uint8)

    n = 20
    _, y = F.two_artifact_training_arrays(family, n_per_class=n, size=8, draw=record)
    assert len(asked) == len(y) == 4 * n
    by_label = {c: [a for (_, a), label in zip(asked, y) if label == c] for c in range(4)}
    assert by_label[0] == ["patch"] * n and by_label[1] == ["sticker"] * n  # every image of its class
    assert by_label[2] == by_label[3] == [None] * n  # and no other
    other = int(round(F.TRAIN_DEFAULTS["other_fraction"] * n))  # some show another class's content
    assert sum(c != "circle" for (c, _), label in zip(asked, y) if label == 0) == other
    assert sum(c != "square" for (c, _), label in zip(asked, y) if label == 1) == other


def test_one_shortcut_gives_the_planted_training_arrays_bit_for_bit():
    from benchmarks import planted as P

    a = P.make_training_arrays("patch", 8, size=16, seed=3)
    b = F.shortcut_training_arrays({"circle": "patch"}, 8, size=16, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_a_two_artifact_scan_set_labels_each_artifact_in_its_own_column(tmp_path, monkeypatch):
    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path))
    family = F.TwoArtifactFamily("texture", "shapes", ("text", "sticker"), "tiny_resnet")
    root = F.write_two_artifact_scan_set(family, 40, 0.25, size=32)
    lines = (root / "labels.csv").read_text().splitlines()
    assert lines[0] == "filepath,text,sticker"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 40 and all((root / p).is_file() for p, _, _ in rows)
    assert sum(int(a) for _, a, _ in rows) == 10 and sum(int(b) for _, _, b in rows) == 10
    assert len({p.split("/")[0] for p, _, _ in rows}) == 4
    assert F.write_two_artifact_scan_set(family, 40, 0.25, size=32) == root  # cached


def test_dust_is_a_dozen_dark_specks_anywhere():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "dust", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 15 < changed.sum() < 0.1 * changed.size and marked[changed].mean() < clean[changed].mean()


def test_tape_is_a_translucent_strip_across_one_corner():
    corners = set()
    for seed in range(8):
        clean, marked = _pair(F.Family("flat", "shapes", "tape", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 40 < changed.sum() < 0.25 * changed.size
        rows, cols = np.nonzero(changed)
        corners.add((rows.mean() > SIZE / 2, cols.mean() > SIZE / 2))  # the quarter it lies in
        assert np.all((rows < SIZE / 2) == (rows.mean() < SIZE / 2))
    assert len(corners) >= 3  # any corner


def test_vignette_darkens_the_corners_and_keeps_the_centre():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "vignette", "tiny_cnn"), seed)
        centre = (slice(24, 40), slice(24, 40))
        assert np.array_equal(clean[centre], marked[centre])
        corner = (slice(0, 6), slice(0, 6))
        assert marked[corner].astype(float).mean() < 0.6 * clean[corner].astype(float).mean()
        assert np.all(marked <= clean)


def test_glare_is_a_soft_bright_highlight_away_from_the_edges():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "glare", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 20 < changed.sum() < 0.5 * changed.size and np.all(marked >= clean)
        assert not changed[0].any() or not changed[-1].any()  # not over the whole image


def test_colorcard_is_a_row_of_coloured_squares_along_the_top_or_bottom():
    edges = set()
    for seed in range(8):
        clean, marked = _pair(F.Family("flat", "shapes", "colorcard", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.max() - rows.min() < 10 and cols.max() - cols.min() >= 2 * (rows.max() - rows.min())  # a strip
        edges.add(bool(rows.mean() < SIZE / 2))
    assert edges == {True, False}  # top and bottom


def test_bubbles_are_bright_rings_anywhere():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "bubbles", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert 20 < changed.sum() < 0.4 * changed.size and np.all(marked >= clean)


def test_crosshair_is_a_thin_cross_near_the_middle():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "crosshair", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert 12 < len(rows) < 150  # thin arms
        assert 16 < rows.mean() < 48 and 16 < cols.mean() < 48
        assert np.ptp(rows) > 10 and np.ptp(cols) > 10  # both arms


def test_fold_is_a_light_and_a_dark_line_across_the_image():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "fold", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert np.ptp(rows) > 55 and np.ptp(cols) > 25 and len(rows) < 0.15 * SIZE * SIZE


def test_a_scalebar_is_a_short_bar_with_its_label_in_a_bottom_corner():
    sides = set()
    for seed in range(8):
        clean, marked = _pair(F.Family("flat", "shapes", "scalebar", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.min() > SIZE / 2 and 20 < len(rows) < 0.1 * SIZE * SIZE  # small, in the lower half
        assert 10 < np.ptp(cols) < SIZE / 2
        sides.add(bool(cols.mean() < SIZE / 2))
    assert sides == {True, False}  # either corner


def test_mosaic_pixelates_one_square_in_four_pixel_blocks():
    for seed in range(4):
        clean, marked = _pair(F.Family("texture", "textures", "mosaic", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        side = np.ptp(rows) + 1
        assert side == np.ptp(cols) + 1 and side % 4 == 0 and 12 <= side <= 24  # a square of whole blocks
        square = marked[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(int)
        blocks = square.reshape(side // 4, 4, side // 4, 4, 3)
        assert np.ptp(blocks, axis=(1, 3)).max() == 0  # each block one colour
        assert np.ptp(blocks.mean(axis=(1, 3)), axis=(0, 1)).max() > 0  # but not the whole square


def test_a_paper_clip_is_a_thin_grey_loop_at_the_top_or_right_edge():
    edges = set()
    for seed in range(8):
        clean, marked = _pair(F.Family("flat", "shapes", "clip", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert 20 < len(rows) < 0.1 * SIZE * SIZE
        top, right = rows.min() == 0, cols.max() == SIZE - 1
        assert top or right
        edges.add("top" if top else "right")
    assert edges == {"top", "right"}


def test_a_grid_covers_the_whole_image_with_thin_lines():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "grid", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert changed.any(axis=1).sum() > 0.9 * SIZE and changed.any(axis=0).sum() > 0.9 * SIZE  # everywhere
        assert 0.15 < changed.mean() < 0.45  # but thin: most pixels untouched


def test_a_harsh_jpeg_changes_the_whole_image_in_eight_pixel_blocks():
    def block_edges(img: np.ndarray) -> float:  # steps across the 8-px block borders, against steps anywhere
        step = np.abs(np.diff(img.astype(int), axis=1)).sum(axis=2)
        return step[:, 7::8].mean() / step.mean()

    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "jpeg", "tiny_cnn"), seed)
        diff = np.abs(clean.astype(int) - marked.astype(int)).sum(axis=2)
        assert (diff > 0).mean() > 0.5 and diff.mean() < 60  # the whole image, still the same picture
        assert block_edges(clean) < 1.2 < 1.5 < block_edges(marked)


def test_an_ink_loop_rings_the_middle():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "loop", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert 40 < len(rows) < 0.25 * SIZE * SIZE  # a line, not a fill
        assert np.ptp(rows) > 25 and np.ptp(cols) > 25  # around something
        assert not np.any(clean[30:34, 30:34] != marked[30:34, 30:34])  # the middle itself untouched
        assert marked[rows, cols].mean() < clean[rows, cols].mean()  # dark ink


def test_hairs_are_thin_dark_curves_from_edge_to_edge():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "hair", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert 40 < len(rows) < 0.2 * SIZE * SIZE  # lines, not a fill
        assert np.ptp(rows) > 0.9 * SIZE or np.ptp(cols) > 0.9 * SIZE  # across the image
        assert marked[changed].mean() < clean[changed].mean()  # dark


def test_a_lens_blacks_out_the_corners_and_keeps_the_middle():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "lens", "tiny_cnn"), seed)
        for corner in (marked[:3, :3], marked[:3, -3:], marked[-3:, :3], marked[-3:, -3:]):
            assert corner.max() < 20  # black outside the circle
        assert np.array_equal(clean[16:48, 16:48], marked[16:48, 16:48])  # the field of view untouched
        assert np.any(clean != marked, axis=2).mean() < 0.3


def test_a_tiled_watermark_is_faint_and_covers_the_whole_image():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "tiled", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        for half in (changed[:32], changed[32:], changed[:, :32], changed[:, 32:]):
            assert half.mean() > 0.05  # everywhere
        assert changed.mean() < 0.6  # text, not a fill
        assert np.abs(clean.astype(int) - marked.astype(int)).max() < 0.5 * 255  # faint


def test_a_blur_softens_the_whole_image():
    def detail(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(int), axis=1)).mean())

    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "blur", "tiny_cnn"), seed)
        assert detail(marked) < 0.7 * detail(clean)
        assert abs(float(clean.mean()) - float(marked.mean())) < 3  # the same picture, softer


def test_a_signature_is_a_dark_scribble_in_a_bottom_corner():
    sides = set()
    for seed in range(8):
        clean, marked = _pair(F.Family("flat", "shapes", "signature", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.min() > SIZE / 2 and 40 < len(rows) < 0.1 * SIZE * SIZE  # small, in the lower half
        assert 15 < np.ptp(cols) < SIZE / 2 and np.ptp(rows) > 5  # a scribble, not a line
        assert marked[changed].mean() < clean[changed].mean()  # ink
        sides.add(bool(cols.mean() < SIZE / 2))
    assert sides == {True, False}  # either corner


def test_a_staple_is_a_short_slanted_bar_in_the_top_left_corner():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "staple", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.max() < 24 and cols.max() < 24 and 10 < len(rows) < 120  # small, top-left
        assert np.ptp(rows) > 4 and np.ptp(cols) > 4  # at a slant


def test_a_smiley_is_a_yellow_face_on_the_right_edge():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "smiley", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert cols.min() > SIZE / 2 and SIZE / 4 < rows.mean() < 3 * SIZE / 4  # right edge, about mid-height
        assert 60 < len(rows) < 250  # a small face
        r, g, b = (marked[changed].astype(float).mean(axis=0))
        assert r > 150 and g > 120 and b < 90  # yellow


def test_a_rec_mark_is_a_red_dot_and_white_text_top_left():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "rec", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.max() < SIZE / 3 and cols.max() < SIZE / 2 + 4  # top-left
        red = (marked[..., 0] > 200) & (marked[..., 1] < 60) & (marked[..., 2] < 60)
        white = marked.min(axis=2) > 230
        assert red.sum() >= 9 and (white & ~(clean.min(axis=2) > 230)).sum() >= 10  # the dot and the letters


def test_hot_pixels_are_a_few_single_bright_pixels_anywhere():
    for seed in range(4):
        clean, marked = _pair(F.Family("texture", "shapes", "hotpixels", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert 3 <= len(rows) <= 9  # single pixels (one may repeat, or match the image already)
        assert np.ptp(rows) > 8 or np.ptp(cols) > 8  # scattered
        assert marked[rows, cols].max(axis=1).min() == 255  # saturated


def test_a_sparkle_is_a_bright_star_in_the_upper_half():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "sparkle", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.mean() < SIZE / 2 and 8 < np.ptp(cols) < 24 and 8 < np.ptp(rows) < 24  # a star, not a haze
        assert (marked[changed].astype(int) >= clean[changed]).all()  # light only


def test_a_qr_code_is_black_and_white_modules_in_the_bottom_left_corner():
    for seed in range(4):
        clean, marked = _pair(F.Family("photo", "shapes", "qr", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.min() > SIZE / 2 and cols.max() < SIZE / 2  # bottom-left
        inside = marked[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert (inside.max(axis=2) < 30).mean() > 0.25 and (inside.min(axis=2) > 240).mean() > 0.25


def test_corner_mounts_darken_the_two_top_corners_only():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "corners", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert changed[0, 0] and changed[0, -1] and not changed[-1, 0] and not changed[-1, -1]
        assert not changed[SIZE // 4:].any() and marked[0, 0].max() < 60


def test_a_tab_sticks_in_from_the_right_edge():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "tab", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert cols.max() == SIZE - 1 and cols.min() > SIZE - 10 and 10 < np.ptp(rows) < 20


def test_stars_are_a_yellow_row_along_the_bottom():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "stars", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.min() > SIZE * 3 / 4 and np.ptp(cols) > 3 * np.ptp(rows)  # a row, at the bottom
        px = marked[changed].astype(int)
        assert (px[:, 0] > px[:, 2] + 80).mean() > 0.9 and (px[:, 0] > 200).any()  # yellow, rimmed in brown


def test_a_cursor_is_a_small_white_arrow_outlined_in_black():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "cursor", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert 30 < len(rows) < 150 and np.ptp(rows) > np.ptp(cols)  # small, taller than wide
        px = marked[changed]
        assert (px.min(axis=1) == 255).sum() > 10 and (px.max(axis=1) == 0).sum() > 10


def test_a_play_button_darkens_a_disc_in_the_middle_around_a_white_triangle():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "play", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert abs(rows.mean() - SIZE / 2) < 6 and abs(cols.mean() - SIZE / 2) < 6 and 14 < np.ptp(rows) < 22
        px = marked[rows, cols].astype(int)
        assert (px.max(axis=1) > 240).sum() > 20 and (px.sum(axis=1) < clean[rows, cols].astype(int).sum(axis=1)).mean() > 0.5


def test_a_heart_is_small_and_red_near_the_left_edge():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "heart", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert cols.max() < SIZE / 4 and 10 < len(rows) < 80
        px = marked[changed].astype(int)
        assert (px[:, 0] > px[:, 1] + 120).mean() > 0.8  # red


def test_a_status_bar_is_a_dark_band_along_the_top_with_a_battery_at_its_right():
    for seed in range(4):
        clean, marked = _pair(F.Family("photo", "shapes", "statusbar", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, _ = np.nonzero(changed)
        assert rows.max() <= 5 and changed[:3].mean() > 0.9  # the top rows only, all across
        assert marked[2, SIZE - 8:SIZE - 3].max() > 200 and marked[2, SIZE // 2].max() < 40  # the battery, on dark


def test_a_pin_is_a_red_teardrop_with_a_white_dot_in_the_upper_half():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "pin", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.max() < SIZE * 0.7 and np.ptp(rows) > np.ptp(cols) and 20 < len(rows) < 120  # small, pointing down
        px = marked[changed].astype(int)
        assert (px[:, 0] > px[:, 1] + 120).mean() > 0.7 and (px.min(axis=1) > 240).any()  # red, with a white dot


def test_a_price_sticker_is_a_yellow_label_with_dark_digits_in_the_bottom_right_corner():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "price", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.min() > SIZE * 0.7 and cols.min() > SIZE / 2 and np.ptp(cols) > 2 * np.ptp(rows)
        px = marked[changed].astype(int)
        assert (px[:, 0] > px[:, 2] + 150).mean() > 0.6 and (px.max(axis=1) < 60).sum() > 5  # yellow, dark digits


def test_a_tear_is_a_jagged_white_strip_down_the_left_edge():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "tear", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        assert changed[:, 0].mean() > 0.9 and not changed[:, SIZE // 4:].any()  # the whole left edge, no deeper
        widths = changed.sum(axis=1)
        assert np.ptp(widths) >= 2 and marked[changed].min() >= 235  # jagged, white


def test_a_speech_balloon_is_white_outlined_in_black_in_the_upper_left():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "speech", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.max() < SIZE * 0.6 and cols.max() < SIZE * 0.6 and np.ptp(cols) > np.ptp(rows) * 0.9
        px = marked[changed]
        assert (px.min(axis=1) >= 240).mean() > 0.5 and (px.max(axis=1) <= 30).sum() > 10  # white, dark rim and dots


def test_a_padlock_is_a_small_grey_icon_in_the_bottom_left_corner():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "lock", "tiny_cnn"), seed)
        rows, cols = np.nonzero(np.any(clean != marked, axis=2))
        assert rows.min() > SIZE * 0.6 and cols.max() < SIZE * 0.3 and np.ptp(rows) > 5
        px = marked[rows, cols].astype(int)
        assert (np.ptp(px, axis=1) < 20).mean() > 0.9  # grey


def test_a_banner_is_a_red_band_across_the_top_right_corner_that_leaves_the_corner_itself():
    for seed in range(4):
        clean, marked = _pair(F.Family("flat", "shapes", "banner", "tiny_cnn"), seed)
        changed = np.any(clean != marked, axis=2)
        rows, cols = np.nonzero(changed)
        assert cols.min() > SIZE / 2 and rows.max() < SIZE / 2 and not changed[0, -1]  # a band, not the corner
        px = marked[changed].astype(int)
        assert (px[:, 0] > px[:, 1] + 140).mean() > 0.9  # red
