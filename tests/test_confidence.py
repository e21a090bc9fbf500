"""Confidence: a flagged set the layer reproduces and the classes do not explain, and nothing else."""
import numpy as np
import pytest

from dora_clean.scoring import (CLASS_ASSOCIATION, MIN_REPRODUCING, assess, class_association, class_codes,
                                SELECT_ROWS, reproducing_neurons)
from dora_clean.scoring.confidence import class_excess


def _layer(n=600, width=16, detectors=4, share=0.1, seed=0):
    """Activations [n, width]: ``detectors`` columns fire on the artifact images, the rest is noise."""
    rng = np.random.default_rng(seed)
    artifact = rng.random(n) < share
    x = rng.normal(size=(n, width))
    x[:, :detectors] += 4.0 * artifact[:, None]
    return x, artifact


def test_the_detectors_reproduce_the_artifact_and_noise_reproduces_nothing():
    x, artifact = _layer(detectors=4)
    assert reproducing_neurons(x, artifact) == 4
    x[:, 1] *= -1  # a neuron the artifact silences reproduces it too
    assert reproducing_neurons(x, artifact) == 4
    loose = artifact | (np.random.default_rng(1).random(len(artifact)) < 0.3)  # the artifact and many others
    assert reproducing_neurons(x, loose) == 0
    assert reproducing_neurons(x, np.zeros(len(x), bool)) == reproducing_neurons(x, np.ones(len(x), bool)) == 0


def test_class_association_is_near_zero_for_a_spread_artifact_and_one_for_whole_classes():
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(10), 50)  # 10 classes of 50: chance makes an uncorrected V of about 0.13
    spread = rng.random(500) < 0.1
    assert class_association(spread, classes) < 0.1
    assert class_association(classes == 3, classes) > 0.95
    mostly = (classes == 3) & (rng.random(500) < 0.6)  # most of one class's images, none elsewhere
    assert class_association(mostly, classes) > 0.5


def test_assess_trusts_a_learned_artifact_spread_over_the_classes():
    x, artifact = _layer(detectors=MIN_REPRODUCING + 1)
    codes = class_codes([f"c{i % 4}" for i in range(len(x))])
    c = assess(x, artifact, codes)
    assert c.confident and c.reasons == [] and c.reproducing == MIN_REPRODUCING + 1 and c.class_association < CLASS_ASSOCIATION


def test_without_class_folders_nothing_is_confident():
    """A flat folder (or one class): a split by class content is reproduced by the layer as well as an
    artifact, and nothing can tell them apart, so the flags are left for review."""
    x, artifact = _layer(detectors=MIN_REPRODUCING + 1)
    for codes in (None, np.zeros(len(x), dtype=int)):
        c = assess(x, artifact, codes)
        assert c.reproducing == MIN_REPRODUCING + 1 and c.class_association is None
        assert not c.confident and c.reasons == [c.reasons[0]] and "no class folders" in c.reasons[0]


def test_assess_says_why_it_does_not_trust_a_flagged_set():
    x, artifact = _layer(detectors=MIN_REPRODUCING - 1)
    codes = class_codes([f"c{i % 4}" for i in range(len(x))])
    weak = assess(x, artifact, codes)
    assert not weak.confident and weak.reasons == [weak.reasons[0]] and "reproduce" in weak.reasons[0]

    classes = np.repeat(np.arange(4), 150)
    y, _ = _layer(detectors=0)
    content = classes == 2  # one class's images, and the neurons that see that class
    y[:, : MIN_REPRODUCING + 2] += 4.0 * content[:, None]
    c = assess(y, content, classes)
    assert c.reproducing >= MIN_REPRODUCING and not c.confident and "class" in " ".join(c.reasons)

    most = ~artifact
    assert "minority" in " ".join(assess(x, most, codes).reasons)
    assert assess(x, np.zeros(len(x), bool), codes).reasons == ["nothing is flagged"]


def test_a_class_that_holds_more_of_the_flagged_set_than_the_others_predict_takes_confidence_away():
    """The caption row of the families benchmark: 20 artifact images spread over 4 classes of 250, and 17-20
    clean images of class 0 that the artifact's detectors also fire on (the model learned the artifact as
    class 0's evidence): about 27, 5, 4 and 4 flagged by class, a Cramer's V under its bar."""
    rng = np.random.default_rng(5)
    classes = np.repeat(np.arange(4), 250)
    artifact = np.zeros(1000, bool)
    artifact[rng.choice(1000, 20, replace=False)] = True
    flagged = artifact.copy()
    flagged[rng.choice(np.flatnonzero((classes == 0) & ~artifact), 17, replace=False)] = True
    x = rng.normal(size=(1000, MIN_REPRODUCING + 4))
    x[:, : MIN_REPRODUCING + 2] += 6.0 * flagged[:, None]  # the layer reproduces the whole set
    assert class_association(flagged, classes) < CLASS_ASSOCIATION
    excess = class_excess(flagged, classes)
    assert excess is not None and excess.code == 0 and excess.flagged == int(flagged[classes == 0].sum())
    assert abs(excess.expected - artifact[classes != 0].sum() / 3) < 1e-9
    c = assess(x, flagged, classes, names=["stripes", "checks", "dots", "rings"])
    assert not c.confident and c.reasons == [c.reasons[0]] and "'stripes'" in c.reasons[0]
    assert c.to_json()["class_excess"]["class"] == "stripes"
    assert class_excess(artifact, classes) is None  # the artifact alone: every class at one rate
    assert assess(x, artifact, classes).class_excess is None


def test_a_set_whose_edge_is_one_classs_content_is_not_reproduced_within_the_classes():
    """The staple + signature scan of the findings benchmark: the staple, on 100 images spread over 4 classes
    of 250, was class 0's shortcut in training, so its detectors fire on class 0's clean images a little
    too; 17 of those, the ones an image-wide factor lifts most, fill the edge of the flagged set (too few
    for :func:`class_excess`)."""
    rng = np.random.default_rng(1)
    classes = np.repeat(np.arange(4), 250)
    artifact = np.zeros(1000, bool)
    artifact[rng.choice(1000, 100, replace=False)] = True
    lift = rng.normal(size=1000)  # what lifts an image in all of the detectors at once
    x = rng.normal(size=(1000, MIN_REPRODUCING + 6))
    detectors = slice(0, MIN_REPRODUCING + 4)
    x[:, detectors] = (0.2 * x[:, detectors] + 0.5 * lift[:, None] + 1.5 * (classes == 0)[:, None]
                       + 5.0 * artifact[:, None])
    clean0 = np.flatnonzero((classes == 0) & ~artifact)
    flagged = artifact.copy()
    flagged[clean0[np.argsort(-lift[clean0])[:17]]] = True
    assert class_excess(flagged, classes) is None and class_association(flagged, classes) < CLASS_ASSOCIATION
    c = assess(x, flagged, classes)
    assert c.reproducing >= MIN_REPRODUCING > c.reproducing_centred and not c.confident
    assert c.reasons == [c.reasons[0]] and "within the class folders" in c.reasons[0]
    assert c.to_json()["reproducing_neurons_centred"] == c.reproducing_centred
    assert c.class_edge and c.listed  # a finding of its own, left for review
    spread = assess(x, artifact, classes)  # the staple's images alone: reproduced within the classes too
    assert spread.confident and spread.reproducing_centred >= MIN_REPRODUCING and not spread.class_edge
    loose = assess(x, flagged | (lift > 1.5), classes)  # and a loose set is not listed
    assert not loose.listed


def test_a_small_excess_in_a_large_dataset_does_not_count():
    rng = np.random.default_rng(6)
    classes = np.repeat(np.arange(4), 50_000)
    flagged = rng.random(len(classes)) < np.where(classes == 0, 0.11, 0.10)  # significant, but 2% of the set
    assert class_excess(flagged, classes, share=0.0) is not None
    assert class_excess(flagged, classes) is None


def test_a_large_dataset_is_judged_on_a_sample_of_its_images():
    x, artifact = _layer(n=SELECT_ROWS + 10_000, width=MIN_REPRODUCING + 2, detectors=MIN_REPRODUCING)
    c = assess(x, artifact, np.arange(len(x)) % 4)
    assert c.confident and c.reproducing == MIN_REPRODUCING
    assert c.flagged_share == artifact.mean()  # the share, of every image


@pytest.mark.slow
def test_a_model_trained_without_any_artifact_finds_none_and_export_removes_nothing(tmp_path, monkeypatch):
    """A real clean model (the families benchmark's, trained here) on a clean scan set: the CLI says that
    no artifact was found, and the default export keeps every flagged image for review."""
    import json

    import torch
    from click.testing import CliRunner

    from benchmarks import families as F
    from dora_clean.cli import main

    monkeypatch.setenv("DORA_CLEAN_CACHE", str(tmp_path / "cache"))
    family = F.Family("texture", "shapes", "text", "tiny_resnet")
    model, _ = F.load_family_model(family, learned=False)
    script = tmp_path / "clean.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(model, (torch.zeros(2, 3, 64, 64),), dynamic_shapes=({0: batch},)),
                      str(script))
    data = F.write_family_scan_set(family, 300, 0.0)

    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["scan", str(data), "--model", str(script), "--layer", "layer3",
                                  "--image-size", "64", "--out", str(run), "--no-fiftyone", "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((run / "summary.json").read_text())
    assert "no artifact found that dora-clean trusts" in r.output
    assert summary["artifact_found"] is False and summary["n_confident"] == 0
    assert summary["confidence"]["reasons"]

    r = CliRunner().invoke(main, ["export", str(run), "--to", str(tmp_path / "clean")])
    assert r.exit_code == 0, r.output
    assert "left out 0 tagged 'remove', 0 flagged" in r.output
    if summary["n_flagged"]:
        assert f"left for review: {summary['n_flagged']} flagged images" in r.output
    assert len(list((tmp_path / "clean").rglob("*.png"))) == 300



def test_the_top_of_a_bell_curve_is_not_a_group_to_remove_unreviewed():
    from dora_clean.scoring.thresholds import structure
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    n = 1000
    feature = rng.normal(size=n)  # one feature every image has some of, read by many neurons
    x = feature[:, None] + 0.05 * rng.normal(size=(n, MIN_REPRODUCING + 4))
    codes = np.arange(n) % 4
    t = float(threshold_otsu(feature))
    top = feature > t  # its split at Otsu's: the top of a bell curve, which every neuron reproduces
    assert reproducing_neurons(x, top) >= MIN_REPRODUCING and abs(structure(feature, t)) < 0.1
    assert assess(x, top, codes).confident  # without the structure it looks like an artifact
    c = assess(x, top, codes, structure=structure(feature, t))
    assert not c.confident and "bell curve" in " ".join(c.reasons)
    x2, artifact = _layer(detectors=MIN_REPRODUCING + 1)  # a learned artifact's split has structure
    score = x2[:, : MIN_REPRODUCING + 1].mean(axis=1)
    t2 = float(np.sort(score)[-artifact.sum() - 1])
    assert structure(score, t2) > 0.5 and assess(x2, score > t2, np.arange(len(x2)) % 4,
                                                   structure=structure(score, t2)).confident


def test_every_set_the_class_association_test_caught_the_class_excess_test_catches():
    """The association with the classes is no longer a test of its own (docs/benchmark.md, "The ablation of
    today's scan"): sets that go with the classes, reproduced by the layer, are still not confident."""
    rng = np.random.default_rng(3)
    classes = np.repeat(np.arange(4), 250)
    within = np.tile(np.arange(250), 4)  # each image's place in its class
    graded = within < np.array([100, 60, 30, 0])[classes]  # 40%, 24%, 12% and none of the four classes
    for flagged in (classes == 1, np.isin(classes, [1, 2]), graded):
        x = rng.normal(size=(1000, 24))
        x[:, : MIN_REPRODUCING + 2] += 5.0 * flagged[:, None]  # the layer reproduces it
        c = assess(x, flagged, classes)
        assert class_association(flagged, classes) >= CLASS_ASSOCIATION  # what the old test read
        assert c.reproducing >= MIN_REPRODUCING and not c.confident
        assert "holds" in " ".join(c.reasons) and c.class_excess is not None
