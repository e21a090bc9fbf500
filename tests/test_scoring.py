"""Scores: orientation, agreement among infected neurons, the combined score."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dora_clean.evaluate import auc
from dora_clean.scoring import (
    ScoringSettings, agreeing, artifact_scores, class_lambda, column_ranks, combined_score, add_near_recruits, flag_threshold, flagged_aucs,
    flag_images, mean_score, nested_thresholds, orientation, recruit_neurons, separation, tail_pursuit,
)

DATA = Path(__file__).with_name("data")


def _layer(seed: int = 0, n: int = 2000):
    """Artifact labels, two neurons that see the artifact (one it silences) and one that sees class content."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    detector = 3.0 * y + rng.normal(size=n)
    silenced = -2.5 * y + rng.normal(size=n)
    content = (rng.random(n) < 0.5) * 2.0 + rng.normal(size=n)
    return y, np.c_[detector, content, silenced]


def test_a_neuron_that_goes_with_no_other_is_left_out_of_the_combined_score():
    y, x = _layer()
    keep, orient = agreeing(x, orientation(x))
    assert keep.tolist() == [True, False, True]
    assert orient[0] == 1 and orient[2] == -1  # the silenced neuron counts turned round
    plain = combined_score(x, orientation(x))
    agreed = combined_score(x[:, keep], orient[keep])
    assert auc(y, agreed) > auc(y, plain) + 0.01
    assert auc(y, agreed) > max(auc(y, x[:, 0]), auc(y, -x[:, 2]))  # the two detectors confirm each other


def test_agreement_keeps_everything_when_there_is_nothing_to_vote_on():
    y, x = _layer(1)
    for cols in ([0, 1], [0]):  # fewer than three neurons
        keep, orient = agreeing(x[:, cols], orientation(x[:, cols]))
        assert keep.all() and np.array_equal(orient, orientation(x[:, cols]))
    keep, orient = agreeing(x, orientation(x), min_agreement=0)  # switched off
    assert keep.all() and np.array_equal(orient, orientation(x))
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(500, 4))  # no pair agrees: no anchor to trust
    assert agreeing(noise, orientation(noise))[0].all()
    flat = np.c_[x, np.ones(len(x))]  # a constant neuron has no correlation, and no NaN leaks out
    keep, orient = agreeing(flat, orientation(flat))
    assert keep.tolist() == [True, False, True, False] and np.isfinite(orient).all()


def _many_detectors(n: int = 3000):
    """Artifact labels and a layer: six detectors, two neurons the artifact silences, four for
    class content, and one that sees the artifact and a class."""
    rng = np.random.default_rng(3)
    y = rng.random(n) < 0.2
    cls = rng.integers(0, 4, n)
    detectors = 6.0 * y[:, None] + rng.normal(size=(n, 6))  # six clear detectors (as trained nets have)
    silenced = -6.0 * y[:, None] + rng.normal(size=(n, 2))
    content = 2.0 * (cls[:, None] == np.arange(4)) + rng.normal(size=(n, 4))
    mixed = 1.5 * y + 1.5 * (cls == 0) + rng.normal(size=n)  # sees the artifact and a class
    return y, np.c_[detectors, silenced, content, mixed]


def test_recruits_are_the_layers_other_detectors_not_its_content_neurons():
    y, layer = _many_detectors()
    n = len(y)
    infected = [0]
    s = artifact_scores(layer, layer, infected, settings=ScoringSettings(recruit_auc=None))
    assert s.combined == {0: 1}
    r = artifact_scores(layer, layer, infected)
    assert set(r.combined) == set(range(8)) and all(r.combined[i] == -1 for i in (6, 7))
    assert auc(y, r.score) > auc(y, s.score) and auc(y, r.score) > 0.9999
    assert recruit_neurons(layer, np.zeros(n))[0] == []  # nothing flagged, nothing to reproduce


def test_recruiting_decides_on_a_sample_and_scores_every_image(monkeypatch):
    import dora_clean.scoring.combine as scoring

    y, layer = _many_detectors()
    full = artifact_scores(layer, layer, [0])
    monkeypatch.setattr(scoring, "SELECT_ROWS", 500)  # decide on 500 of the 3000 images
    sampled = artifact_scores(layer, layer, [0])
    assert sampled.combined == full.combined and len(sampled.score) == len(y)
    assert np.allclose(sampled.score, full.score)  # the score itself covers every image
    # the threshold found on the sample flags (nearly) the images the full one does
    assert np.mean((sampled.score > sampled.threshold) != (full.score > full.threshold)) < 0.005
    rows = scoring.sample_rows(len(y), 500)
    assert len(rows) == 500 and np.all(np.diff(rows) > 0) and np.array_equal(rows, scoring.sample_rows(len(y), 500))
    assert scoring.sample_rows(len(y), len(y)) is None


def test_near_recruits_join_where_they_sharpen_a_loose_split():
    rng = np.random.default_rng(10)
    n = 4000
    y = rng.random(n) < 0.04
    cls = rng.integers(0, 4, n)
    texture = rng.exponential(1.0, n)  # in clean images; the artifact's detectors respond to it a little
    seed = np.where(y, 7.0 + rng.normal(size=n), texture + 0.5 * rng.exponential(1.0, n))  # a long clean tail
    others = 4.0 * y[:, None] + 0.6 * texture[:, None] + 0.3 * rng.normal(size=(n, 5))  # the other detectors
    texture_neuron = texture + 0.3 * rng.normal(size=n)
    content = 2.0 * (cls[:, None] == np.arange(3)) + rng.normal(size=(n, 3))
    layer = np.c_[seed, others, texture_neuron, content]
    alone = combined_score(layer[:, [0]], np.ones(1))
    assert y[flag_images(alone)].mean() < 0.45  # Otsu flags about twice as many clean images as artifact ones
    assert recruit_neurons(layer, alone)[0] == [0]  # so the other detectors miss recruit's bar
    s = artifact_scores(layer, layer, [0])
    assert set(s.combined) == {0, 1, 2, 3, 4, 5}  # they join; the texture and content neurons do not
    assert y[flag_images(s.score)].mean() > y[flag_images(alone)].mean() + 0.15 and flag_images(s.score)[y].mean() > 0.99
    assert auc(y, s.score) > auc(y, alone)
    unchanged = add_near_recruits(layer, np.zeros(n), {0: 1})  # nothing flagged: nothing to sharpen
    assert unchanged[1] == {0: 1} and np.all(unchanged[0] == 0)


def test_neuron_aucs_equal_sklearns_with_ties_rows_and_blocks():
    from sklearn.metrics import roc_auc_score

    from dora_clean.evaluate import neuron_aucs

    rng = np.random.default_rng(4)
    y = rng.random(500) < 0.3
    x = np.round(rng.normal(size=(500, 70)) + y[:, None] * rng.normal(size=70), 1)  # rounded: many ties
    x[:, 3] = 1.0  # a constant neuron: 0.5
    rows = rng.permutation(500)[:300]
    got = neuron_aucs(y[rows], x, rows, block=16)
    want = [roc_auc_score(y[rows], x[rows, c]) for c in range(70)]
    assert np.allclose(got, want, atol=1e-12) and got[3] == 0.5
    assert np.isnan(neuron_aucs(np.zeros(10), x[:10])).all()
    score = x[:, :5].sum(axis=1)  # the flagged set of a score, from ranks taken once (ties shared as above)
    ranked = flagged_aucs(x, score, column_ranks(x, block=16))
    assert np.allclose(ranked, flagged_aucs(x, score), atol=1e-9) and ranked[3] == 0.5


def test_a_group_takes_the_direction_of_its_mean_not_of_one_neurons_skew():
    rng = np.random.default_rng(5)
    n = 2000
    y = rng.random(n) < 0.2
    silenced = -3.0 * y[:, None] + rng.normal(size=(n, 3)) * np.array([0.5, 1.5, 1.5])  # the artifact silences all
    silenced[rng.permutation(n)[:60], 0] += 6.0  # a few bright images give neuron 0 an upward tail of its own
    assert orientation(silenced)[0] == 1  # alone, neuron 0 (the best-corroborated one) looks like a detector
    keep, orient = agreeing(silenced, orientation(silenced))
    assert keep.all() and (orient == -1).all()
    assert auc(y, combined_score(silenced, orient)) > 0.95


def test_a_rare_artifact_is_found_by_its_tail_where_correlations_follow_content():
    rng = np.random.default_rng(6)
    n = 4000
    y = rng.random(n) < 0.03  # a rare artifact: it barely moves the correlations
    size = rng.normal(size=n)  # a content factor that two infected neurons share
    detector = 8.0 * y + rng.normal(size=n)  # a learned artifact stands far out (6-10 sd in the planted nets)
    content = size[:, None] + 0.5 * rng.normal(size=(n, 2))
    others = 8.0 * y[:, None] + rng.normal(size=(n, 6))  # the layer's other detectors of the artifact
    layer = np.c_[detector, content, others, rng.normal(size=(n, 4))]
    infected = [0, 1, 2]
    keep, _ = agreeing(layer[:, infected], orientation(layer[:, infected]))
    assert keep.tolist() == [False, True, True]  # the correlations group the content neurons
    keep, orient = tail_pursuit(layer[:, infected], orientation(layer[:, infected]))
    assert keep[0] and orient[0] == 1
    s = artifact_scores(layer, layer, infected)
    assert s.seed == "tail" and s.orient[0] == 1 and {0, 3, 4, 5, 6, 7, 8} <= set(s.combined)
    assert auc(y, s.score) > 0.999
    assert s.separation > separation(artifact_scores(layer, layer, infected, settings=ScoringSettings(recruit_auc=None)).score)


def test_a_common_artifact_keeps_the_agreement_seed():
    y, x = _layer(7)  # the artifact on 20% of the images, seen by a detector and a silenced neuron
    s = artifact_scores(x, x, [0, 1, 2], settings=ScoringSettings(recruit_auc=None))
    assert s.seed == "agreement" and s.combined == {0: 1, 2: -1} and auc(y, s.score) > 0.97


def test_separation_is_otsus_share_of_variance_between_the_groups():
    rng = np.random.default_rng(8)
    two = np.r_[rng.normal(0, 0.1, 500), rng.normal(10, 0.1, 500)]
    assert separation(two) > 0.99
    assert 0.55 < separation(rng.normal(size=20000)) < 0.7  # a normal: 2/pi
    assert separation(np.ones(10)) == 0.0 and separation(np.array([1.0])) == 0.0


def test_the_score_flags_the_smaller_side_where_a_neurons_skew_points_the_wrong_way():
    rng = np.random.default_rng(9)
    n = 3000
    y = rng.random(n) < 0.2
    clean = 4.0 + rng.exponential(2.5, n)  # ReLU-like: a long upper tail of its own
    silenced = np.where(y, rng.normal(0.0, 0.3, n), clean)[:, None]  # the artifact silences the neuron
    assert orientation(silenced)[0] == 1  # the clean tail outweighs the artifact's drop
    s = artifact_scores(silenced, silenced, [0], settings=ScoringSettings(recruit_auc=None))
    assert s.combined == {0: -1} and s.orient[0] == -1 and auc(y, s.score) > 0.999
    assert abs(np.mean(flag_images(s.score)) - 0.2) < 0.02  # Otsu flags the artifact images


def test_nested_thresholds_split_the_smaller_side_again_outermost_first():
    rng = np.random.default_rng(5)
    score = np.r_[rng.exponential(1.0, 3000), rng.normal(12.0, 0.5, 60)]  # a long-tailed bulk and 2% far out
    t = nested_thresholds(score)
    assert len(t) == 3 and t[0] < t[1] < t[2]  # each one inside the upper side of the one before
    assert t[0] == flag_threshold(score)  # the outermost is Otsu's
    low = nested_thresholds(-score)  # the smaller side may be the lower one: Otsu's split, then downwards
    assert low[0] > low[1] > low[2] and low[0] == flag_threshold(-score)
    assert nested_thresholds(np.ones(50)) == [1.0] and nested_thresholds(score[:10]) == [flag_threshold(score[:10])]
    noise = rng.normal(size=(3000, 8))  # no neuron reproduces any split of their mean: Otsu's stands
    assert flag_threshold(noise.mean(axis=1), column_ranks(noise)) == flag_threshold(noise.mean(axis=1))


def test_a_rare_artifact_is_flagged_by_the_split_the_layer_reproduces():
    """A real layer (tests/data/make_rare_patch.py): a patch on 5% of 1000 images. Two of DORA's three
    infected neurons detect it (AUC >= 0.997), but the clean images' scores have a long tail."""
    d = np.load(DATA / "rare_patch.npz")
    layer, y = d["layer"], d["artifact"]
    infected = [int(n) for n in d["infected"]]
    ranks = column_ranks(layer)
    seed = mean_score(layer, {11: -1, 14: -1})  # the two detectors (the patch silences them): a seed
    otsu = seed > flag_threshold(seed)
    otsu = otsu if otsu.mean() < 0.5 else ~otsu
    assert auc(y, seed) > 0.99 and otsu.mean() > 0.2 and y[otsu].mean() < 0.25  # Otsu flags a quarter
    nested = seed > flag_threshold(seed, ranks)
    nested = nested if nested.mean() < 0.5 else ~nested
    assert y[nested].mean() > 0.75 and nested[y].mean() > 0.95  # the split the detectors reproduce
    for kw in ({}, {"classes": list(d["classes"])}):  # flat, and with class folders
        s = artifact_scores(layer, layer, infected, **kw)
        flagged = s.score > s.threshold
        assert auc(y, s.score) > 0.999 and y[flagged].mean() > 0.95 and flagged[y].mean() > 0.95
        assert s.threshold == flag_threshold(s.score, ranks)


def test_class_lambda_tells_class_content_from_an_artifact_spread_over_the_classes():
    classes = np.repeat(["a", "b", "c", "d"], 100)
    spread = np.tile(np.arange(100) < 20, 4)  # a fifth of every class
    assert class_lambda(spread, classes) == 0.0
    assert class_lambda(classes == "b", classes) == 1.0  # one class
    assert class_lambda(np.isin(classes, ["a", "c"]), classes) == 1.0  # a union of classes
    most = (classes == "b") & (np.arange(400) % 100 < 90)  # 90% of one class, nothing else: raw lambda 1 - 10/90
    assert 0.85 < class_lambda(most, classes) < 1 - 10 / 90 + 1e-12
    assert class_lambda(np.zeros(400, bool), classes) == 1.0  # nothing to guess
    rng = np.random.default_rng(12)
    for size in (1, 2, 5):  # small folders save guesses by chance; the correction takes that out
        tiny = np.repeat(np.arange(400 // size), size)
        assert class_lambda(rng.random(400) < 0.3, tiny) < 0.1
    assert class_lambda(np.repeat([True, False], 200), np.repeat(np.arange(200), 2)) == 1.0  # whole pairs flagged


def _shortcut_layer(n: int = 4000):
    """A rare artifact (5%) that a model learned as evidence for class 0.

    Returns the artifact labels, the class of each image and a layer: 0-5 the
    artifact's own detectors (a cluster in EA space; 0 sees class 0 a little too),
    6-15 class-0 neurons that the artifact excites as well, 16-25 class-1 neurons.
    """
    rng = np.random.default_rng(11)
    y = rng.random(n) < 0.05
    cls = rng.integers(0, 4, n)
    detectors = 5.0 * y[:, None] + rng.normal(size=(n, 6))
    detectors[:, 0] += 2.5 * (cls == 0)
    class0 = 4.0 * ((cls == 0) | y)[:, None] + rng.normal(size=(n, 10))
    class1 = 4.0 * (cls == 1)[:, None] + rng.normal(size=(n, 10))
    return y, np.array([f"class{c}" for c in cls]), np.c_[detectors, class0, class1]


def test_centring_within_the_class_folders_takes_away_the_class_content_a_shortcut_brings():
    y, classes, layer = _shortcut_layer()
    infected = [0, 6, 16]  # DORA's outliers: one detector and two class neurons
    raw = artifact_scores(layer, layer, infected, classes=classes)
    assert raw.class_centres is None and raw.class_content  # the agreement seed grows into class 0 and the artifact
    s = artifact_scores(layer, layer, infected, classes=classes, centre=True)
    assert s.class_names == ["class0", "class1", "class2", "class3"] and s.class_centres.shape == (4, 26)
    # centred, the class-0 neurons only see the artifact: every seed is the artifact, none is set aside
    assert not s.class_content and s.class_lambda < 0.1
    flagged = s.score > s.threshold
    assert auc(y, s.score) > 0.999 and y[flagged].mean() > 0.95 and flagged[y].mean() > 0.95
    assert np.allclose(s.per_neuron, layer[:, infected])  # scores.csv keeps the layer's own activations
    flat = artifact_scores(layer, layer, infected, centre=True)  # no class folders: nothing to centre on
    assert flat.class_centres is None


def test_a_scan_centres_within_the_class_folders_only_where_its_first_answer_is_class_content():
    from dora_clean.scoring import score_findings

    y, classes, layer = _shortcut_layer()
    only_classes = ScoringSettings(off=frozenset({"skewed", "bimodal"}))  # DORA's set and nothing else
    scores, found = score_findings(layer, layer, [6, 16], classes=classes, settings=only_classes)
    assert scores.class_centres is not None  # the uncentred answer flagged class 0 (and the artifact)
    assert auc(y, found[0].score) > 0.99 and found[0].confidence.class_association < 0.2
    raw = artifact_scores(layer, layer, [6, 16], classes=classes, settings=only_classes)
    assert auc(y, raw.score) < 0.9 and y[raw.score > raw.threshold].mean() < 0.5
    kept = ScoringSettings(off=frozenset({"skewed", "bimodal", "centring"}))  # centring off: that answer stands
    assert score_findings(layer, layer, [6, 16], classes=classes, settings=kept)[0].class_centres is None
    scores, found = score_findings(layer, layer, [0, 6, 16], classes=classes)  # the first answer is the artifact
    assert scores.class_centres is None and found[0].confidence.class_association < 0.2 and auc(y, found[0].score) > 0.999


def test_scores_that_flag_whole_classes_are_set_aside_where_the_dataset_has_class_folders():
    y, classes, layer = _shortcut_layer()
    infected = [0, 6, 16]  # DORA's outliers: one detector and two class neurons
    blind = artifact_scores(layer, layer, infected)
    assert y[flag_images(blind.score)].mean() < 0.3  # without the classes, class 0 and the artifact win the split
    s = artifact_scores(layer, layer, infected, classes=classes)
    # the tail seed (its split nested in Otsu's, which the detectors reproduce) grows into the six detectors alone
    assert s.seed == "tail" and set(s.combined) == set(range(6))
    flagged = s.score > s.threshold
    assert auc(y, s.score) > 0.999 and y[flagged].mean() > 0.95 and flagged[y].mean() > 0.95
    assert list(s.class_content) == ["agreement"] and s.class_content["agreement"] >= 0.5  # class 0 and the artifact
    class1 = [c for c in s.candidates if set(c.combined) <= set(range(16, 26))]  # the class-1 group: set aside, not lost
    assert class1 and all(c.class_lambda >= 0.5 for c in class1)
    assert s.candidates.index(class1[0]) > max(s.candidates.index(c) for c in s.candidates if c.class_lambda < 0.5)
    assert s.class_lambda < 0.5 and blind.class_lambda is None
    # DORA's set holds only a class neuron: the layer's most skewed neurons (the detectors) win the contest
    only_classes = artifact_scores(layer, layer, [16], classes=classes)
    assert only_classes.seed.startswith("skewed:") and set(only_classes.combined) <= set(range(6))
    assert auc(y, only_classes.score) > 0.999 and only_classes.class_lambda < 0.5
    no_skewed = ScoringSettings(off=frozenset({"skewed", "bimodal"}))  # nothing else: the least class-bound wins
    only_classes = artifact_scores(layer, layer, [16], classes=classes, settings=no_skewed)
    assert only_classes.class_lambda >= 0.5 and only_classes.seed not in only_classes.class_content
    flat = artifact_scores(layer, layer, infected, classes=["x"] * len(y))  # one class: no veto
    assert flat.seed == blind.seed and flat.combined == blind.combined and not flat.class_content


def test_a_common_artifact_splits_its_detectors_in_two_and_the_bimodal_seeds_find_it():
    rng = np.random.default_rng(11)
    n = 2000
    y = rng.random(n) < 0.4  # an artifact on 40% of every class: its detectors split the images 40/60, no long tail
    cls = rng.integers(0, 4, n)
    layer = np.c_[3.0 * y[:, None] + rng.normal(size=(n, 6)), 4.0 * (cls == 0)[:, None] + rng.normal(size=(n, 4)),
                  rng.lognormal(sigma=1.0, size=(n, 30))]  # 30 long-tailed neurons: the most skewed of the layer
    classes = np.array([f"class{c}" for c in cls])
    s = artifact_scores(layer, layer, [6], classes=classes)  # DORA's set holds a class neuron only
    assert s.seed.startswith("bimodal:") and set(s.combined) <= set(range(6)) and auc(y, s.score) > 0.99
    assert s.class_lambda == 0.0 and np.mean((s.score > s.threshold) == y) > 0.97
    off = artifact_scores(layer, layer, [6], classes=classes, settings=ScoringSettings(off=frozenset({"bimodal"})))
    assert not any(c.seed.startswith("bimodal:") for c in off.candidates)
    assert max(auc(y, c.score) for c in off.candidates) < 0.9  # the skewed seeds are the long-tailed neurons


def test_where_a_score_the_classes_partly_explain_wins_the_scan_centres_and_finds_the_artifact():
    from dora_clean.scoring import score_findings

    rng = np.random.default_rng(5)
    n = 4000
    y = rng.random(n) < 0.05  # an artifact on 5% of every class
    cls = rng.integers(0, 4, n)
    kind = (cls == 0) & (rng.random(n) < 0.6)  # a kind of class 0's content: most of class 0, nothing else
    # both split out cleanly (at 3 and 2 sd every neuron's split is a bell curve's, without structure, and the
    # contest then ranks by structure: test_a_rare_artifact_wins_over_a_bell_curve_split_at_its_middle)
    layer = np.c_[4.0 * y[:, None] + rng.normal(size=(n, 6)), 4.0 * kind[:, None] + rng.normal(size=(n, 10))]
    classes = np.array([f"class{c}" for c in cls])
    # the contest ranks by the split alone: the content's, cleaner, wins, and the class rule lets it through
    content = artifact_scores(layer, layer, [0, 6], classes=classes)
    assert set(content.combined) <= set(range(6, 16)) and 0.2 < content.class_lambda < 0.5
    artifact = next(c for c in content.candidates if set(c.combined) <= set(range(6)))
    assert content.separation > artifact.separation and auc(y, artifact.score) > 0.98
    # its flags go with class 0, so the scan scores the layer again within the class folders: the artifact wins
    scores, found = score_findings(layer, layer, [0, 6], classes=classes)
    assert scores.class_centres is not None and set(scores.combined) == set(range(6))
    assert auc(y, scores.score) > 0.98 and set(found[0].candidate.combined) == set(range(6))


def test_the_class_centred_view_reads_what_centring_the_whole_layer_gives(tmp_path):
    from dora_clean.scoring import ClassCentred, class_centres

    rng = np.random.default_rng(3)
    x = np.lib.format.open_memmap(tmp_path / "layer.npy", mode="w+", dtype=np.float32, shape=(300, 70))
    x[:] = rng.normal(size=(300, 70))
    codes = rng.integers(0, 3, 300)
    whole = np.asarray(x) - class_centres(x, codes, block=16)[codes]
    assert np.allclose(class_centres(x, codes, block=16)[1], np.median(np.asarray(x)[codes == 1], axis=0))
    view = ClassCentred(x, codes)
    rows, columns = np.array([5, 2, 250]), [69, 0, 3]
    for key in (np.s_[:, columns], np.s_[:, 10:40], rows, np.s_[rows, 4], np.s_[7], np.s_[codes == 2]):
        assert np.allclose(view[key], whole[key], atol=1e-6), key
    assert np.allclose(view[rows, columns], whole[rows][:, columns], atol=1e-6)  # two lists: rows, then columns
    assert np.allclose(view[codes == 1, columns], whole[codes == 1][:, columns], atol=1e-6)
    assert view[:, columns].dtype == np.float32 and view.shape == x.shape and len(view) == 300


def _lone_neuron_layer(n: int = 3000, class_bound: bool = False):
    """A rare artifact (5%) with six detectors (0-5), a lone neuron (6) that splits the images cleanly in
    two groups no other neuron sees (bound to class 0 where ``class_bound``), and eight neurons of noise.
    Returns the artifact labels, the class folders and the layer."""
    rng = np.random.default_rng(21)
    y = rng.random(n) < 0.05
    cls = rng.integers(0, 4, n)
    high = rng.random(n) < (np.where(cls == 0, 0.5, 0.15) if class_bound else 0.4)
    detectors = 5.0 * y[:, None] + rng.normal(size=(n, 6))
    lone = 10.0 * high + rng.normal(size=n)
    return y, np.array([f"class{c}" for c in cls]), np.c_[detectors, lone, rng.normal(size=(n, 8))]


def test_a_lone_neuron_wins_the_contest_only_where_no_score_of_several_neurons_stands(monkeypatch):
    from dora_clean.scoring import combine

    y, classes, layer = _lone_neuron_layer()
    s = artifact_scores(layer, layer, [6], classes=classes)  # DORA's outlier: the lone neuron
    assert len(s.combined) >= combine.MIN_NEURONS and set(range(6)) <= set(s.combined)
    assert auc(y, s.score) > 0.999
    assert s.set_aside is not None and set(s.set_aside.combined) == {6}  # it had the cleaner split
    assert s.set_aside.separation > s.separation
    monkeypatch.setattr(combine, "MIN_NEURONS", 1)  # the split alone: the lone neuron's split wins
    split_only = artifact_scores(layer, layer, [6], classes=classes)
    assert set(split_only.combined) == {6} and split_only.set_aside is None
    noise = np.random.default_rng(0).normal(size=(2000, 5))  # no score of several neurons: the split decides
    assert artifact_scores(noise, noise, [0], classes=classes[:2000]).set_aside is None


def test_a_set_aside_answer_that_goes_with_the_classes_also_sends_the_scan_to_centre():
    from dora_clean.scoring import score_findings
    from dora_clean.scoring.confidence import class_association
    from dora_clean.scoring.classes import class_codes

    y, classes, layer = _lone_neuron_layer(class_bound=True)
    raw = artifact_scores(layer, layer, [6], classes=classes)
    codes = class_codes(classes)
    assert class_association(raw.score > raw.threshold, codes) < 0.2  # the winner is the artifact, not class content
    lone = raw.set_aside
    assert lone is not None and class_association(lone.score > lone.threshold, codes) >= 0.2
    scores, found = score_findings(layer, layer, [6], classes=classes)
    assert scores.class_centres is not None and auc(y, found[0].score) > 0.999
    off = ScoringSettings(off=frozenset({"centring"}))
    assert score_findings(layer, layer, [6], classes=classes, settings=off)[0].class_centres is None


def test_a_bell_curve_split_at_its_middle_has_no_structure():
    from dora_clean.scoring.thresholds import normal_separation, structure

    x = np.random.default_rng(0).normal(size=200_000)
    for share in (0.5, 0.1, 0.02):
        t = np.quantile(x, 1 - share)
        assert abs(normal_separation(share) - separation(x, t)) < 0.002
        assert abs(structure(x, t)) < 0.01
    assert normal_separation(0.5) == pytest.approx(2 / np.pi)
    rare = np.r_[x[:4000], 6 + x[4000:4040]]  # 1% far out: a split of real structure
    assert structure(rare, 3.0) > 0.15  # a 1% split cannot be clean by variance; it stands well above 0.1


def _bell_and_rare(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eight neurons that agree on a bell curve, and six detectors of an artifact on 0.5% of the images."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=bool)
    y[rng.choice(n, 15, replace=False)] = True
    bell = rng.normal(size=(n, 1)) + 0.3 * rng.normal(size=(n, 8))
    detectors = 5.0 * y[:, None] + rng.normal(size=(n, 6))
    return y, np.c_[bell, detectors], np.array([f"c{k}" for k in rng.integers(0, 4, n)])


def test_a_rare_artifact_wins_over_a_bell_curve_split_at_its_middle(monkeypatch):
    for seed in (0, 2, 3):
        y, layer, classes = _bell_and_rare(seed)
        s = artifact_scores(layer, layer, [0, 1, 2, 8], classes=classes)
        assert set(s.combined) == set(range(8, 14)) and auc(y, s.score) > 0.999
        assert (s.score > s.threshold).sum() <= 16 and s.ranked_by == "structure"  # the second contest chose it
        monkeypatch.setattr("dora_clean.scoring.thresholds.STRUCTURE", 0.0)  # separation alone: the half split wins
        flat = artifact_scores(layer, layer, [0, 1, 2, 8], classes=classes)
        assert set(flat.combined) < set(range(8)) and auc(y, flat.score) < 0.7 and flat.ranked_by == "separation"
        monkeypatch.undo()


def test_the_layer_seeds_keep_their_places_and_add_the_winners_own_neurons():
    from dora_clean.scoring.combine import _most_bimodal, _most_skewed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 12))
    for j in range(6):  # neurons 0-5 ever more skewed: a tail on 2% of the images, longer for each
        x[rng.random(2000) < 0.02, j] += 3 + j
    skewed = [c for c, _ in _most_skewed(x, 3, winner={})]
    assert skewed == [5, 4, 3]
    # the winner's neurons 5 and 3 seed too, and the three outside it keep their places
    assert [c for c, _ in _most_skewed(x, 3, winner={5: 1, 3: 1})] == [5, 4, 3, 2, 1]
    assert all(sign == 1 for _, sign in _most_skewed(x, 3, winner={}))  # each in the direction of its tail
    bimodal = [c for c, _ in _most_bimodal(x, 2, winner={5: 1}, taken={4})]
    assert 4 not in bimodal and len([c for c in bimodal if c != 5]) == 2  # a skewed seed is not seeded twice


def _small_mark(seed: int = 7, n: int = 2000, c: int = 32):
    """A layer read two ways: twelve neurons whose peak fires on a small mark on 5% of the images, which their
    mean over the map barely moves; the rest noise, read alike either way."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.05
    classes = [f"c{k}" for k in rng.integers(0, 4, n)]
    mean_act, max_act = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    mean_act[:, :12] += 0.3 * y[:, None]
    max_act[:, :12] += 6.0 * y[:, None]
    return y, mean_act, max_act, classes


def test_auto_pooling_takes_the_peak_where_the_mean_dilutes_a_small_mark_and_leaves_it_for_review():
    from dora_clean.scoring import peak_reads_better, score_findings
    from dora_clean.scoring.findings import PEAK_REASON

    y, mean_act, max_act, classes = _small_mark()
    by_mean, mean_found = score_findings(mean_act, max_act, [0, 1, 2], "mean", classes)
    by_peak, peak_found = score_findings(mean_act, max_act, [0, 1, 2], "max", classes)
    assert auc(y, by_peak.score) > 0.99 > auc(y, by_mean.score) + 0.1
    assert peak_reads_better(mean_found[0], peak_found[0])
    scores, found = score_findings(mean_act, max_act, [0, 1, 2], "auto", classes)
    assert scores.pooling == "max" and np.array_equal(found[0].flagged, peak_found[0].flagged)
    assert found[0].flagged[y].mean() > 0.95 and found[0].flagged[~y].mean() < 0.01
    # listed for review: what the peak flags is never removed without it (the layer reproduces it, though)
    assert not any(f.confident for f in found) and found[0].confidence.reasons == [PEAK_REASON]
    assert found[0].confidence.reproducing >= 8 and not any(f.confident for f in peak_found)


def test_auto_pooling_keeps_the_mean_where_the_peak_splits_no_more_cleanly():
    from dora_clean.scoring import score_findings

    y, mean_act, max_act, classes = _small_mark(8)
    mean_act[:, :12] += 5.7 * y[:, None]  # a mark the mean reads as well as the peak
    scores, found = score_findings(mean_act, max_act, [0, 1, 2], "auto", classes)
    assert scores.pooling == "mean" and auc(y, scores.score) > 0.99
    one_position = score_findings(mean_act, mean_act.copy(), [0, 1, 2], "auto", classes)[0]  # a class token's map
    assert one_position.pooling == "mean"


def test_auto_pooling_keeps_a_confident_answer_of_the_mean():
    from dora_clean.scoring import peak_reads_better, score_findings

    for seed in (7, 10):
        y, mean_act, max_act, classes = _small_mark(seed)
        max_act[:, :12] += 6.0 * y[:, None]  # a small mark the peak splits off very cleanly
        z = np.random.default_rng(seed + 100).random(len(y)) < 0.05  # and a second artifact the mean reads well
        mean_act[:, 12:24] += 4.0 * z[:, None]
        max_act[:, 12:24] += 4.0 * z[:, None]
        _, mean_found = score_findings(mean_act, max_act, [0, 1, 2, 12], "mean", classes)
        _, peak_found = score_findings(mean_act, max_act, [0, 1, 2, 12], "max", classes)
        assert mean_found[0].confident and auc(z, mean_found[0].candidate.score) > 0.99
        assert peak_reads_better(mean_found[0], peak_found[0])  # the peak's answer alone would be taken
        scores, found = score_findings(mean_act, max_act, [0, 1, 2, 12], "auto", classes)
        assert scores.pooling == "mean" and np.array_equal(found[0].flagged, mean_found[0].flagged)
