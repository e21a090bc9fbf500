"""Findings: one per suspected artifact, each with its own neurons, score, flags and confidence."""
from __future__ import annotations

import dataclasses

import numpy as np

from dora_clean.evaluate import auc
from dora_clean.scoring.combine import Candidate
from dora_clean.scoring.confidence import assess
from dora_clean.scoring.thresholds import flag_threshold, separation
from dora_clean.scoring import (
    MIN_REPRODUCING, MAX_FINDINGS, artifact_scores, class_codes, find_findings, finding_score, mean_score, robust_scale, same_images,
)


def _two_artifacts(n: int = 3000, seed: int = 0):
    """Labels of two artifacts (10% each, spread over four classes) and a layer of 40 neurons: eight detectors
    of each (0-7 and 8-15), four of class content (16-19), the rest noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < 0.1, rng.random(n) < 0.1
    cls = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 40))
    x[:, 0:8] += 5.0 * a[:, None]
    x[:, 8:16] += 5.0 * b[:, None]
    x[:, 16:20] += 3.0 * (cls[:, None] == np.arange(4))
    return a, b, np.array([f"c{c}" for c in cls]), x


def _findings(x, classes, infected, centre=False):
    scores = artifact_scores(x, x, infected, classes=classes, centre=centre)
    return scores, find_findings(x, scores, None if classes is None else class_codes(classes))


def test_two_artifacts_are_two_confident_findings():
    a, b, classes, x = _two_artifacts()
    scores, found = _findings(x, classes, [0, 9, 17])
    confident = [f for f in found if f.confident]
    assert len(confident) == 2 and [f.id for f in found[:2]] == [1, 2]  # confident ones first
    best = {name: max(confident, key=lambda f: auc(y, f.score)) for name, y in (("a", a), ("b", b))}
    assert best["a"] is not best["b"]  # each artifact its own finding
    for name, y in (("a", a), ("b", b)):
        f = best[name]
        assert auc(y, f.score) > 0.99
        assert set(f.neurons) <= set(range(0, 8) if name == "a" else range(8, 16))  # its detectors only
        assert np.mean(f.flagged == y) > 0.98
    assert np.array_equal(scores.candidates[0].score, scores.score)  # the old score is the contest's winner
    assert len(found) <= MAX_FINDINGS
    assert all(f.confidence.reproducing >= MIN_REPRODUCING for f in confident)  # one bar for every finding


def test_a_findings_score_is_what_a_stored_detector_computes():
    _, _, classes, x = _two_artifacts(seed=1)
    _, found = _findings(x, classes, [0, 9], centre=True)
    for f in found:
        neurons = list(f.neurons)
        assert sorted(f.class_centres) == sorted(set(classes))  # scored within the class folders
        centred = x[:, neurons] - np.array([f.class_centres[c] for c in classes])  # as apply centres new images
        centre, spread = robust_scale(centred)
        assert np.array_equal(f.centre, centre) and np.array_equal(f.spread, spread)
        again = finding_score(centred, range(len(neurons)), list(f.neurons.values()), f.centre.tolist(),
                              f.spread.tolist())
        assert np.allclose(again, f.score, rtol=0, atol=1e-12)  # apply flags what the scan flagged
        assert np.array_equal(again > f.threshold, f.flagged)
        assert np.allclose(mean_score(centred, dict(zip(range(len(neurons)), f.neurons.values()))), f.score)
        entry = f.detector()
        assert entry["neurons"] == neurons and len(entry["centre"]) == len(neurons)
        assert entry["class_centres"] == {c: list(v) for c, v in f.class_centres.items()}
    _, flat = _findings(x, None, [0, 9], centre=True)  # no class folders: nothing to centre on
    assert all(f.class_centres is None and "class_centres" not in f.detector() for f in flat)


def test_one_artifact_is_one_finding_and_class_content_none():
    a, _, classes, x = _two_artifacts(seed=2)
    x[:, 8:16] = np.random.default_rng(9).normal(size=(len(x), 8))  # no second artifact
    _, found = _findings(x, classes, [0, 3, 17])
    assert found[0].confident and auc(a, found[0].score) > 0.99
    assert all(not f.confident for f in found[1:])
    assert not any(same_images(found[0].flagged, f.flagged) for f in found[1:])  # distinct, or merged


def test_overrides_set_the_first_findings_flags():
    _, _, classes, x = _two_artifacts(seed=3)
    scores = artifact_scores(x, x, [0, 9], classes=classes)
    codes = class_codes(classes)
    found = find_findings(x, scores, codes, top=25)
    first = found[0]  # the user's flags, and no other finding
    assert len(found) == 1
    assert first.candidate.seed == scores.seed
    assert first.flagged.sum() == 25 and np.array_equal(first.flagged, first.score > first.threshold)
    first = find_findings(x, scores, codes, threshold=-1e9)[0]
    assert first.flagged.all() and not first.confident  # all images flagged: not an artifact


def test_a_wider_set_around_the_winners_images_is_not_a_finding_of_its_own():
    rng = np.random.default_rng(5)
    n = 2000
    wide = rng.random(n) < 0.3  # a feature many images share (curved strokes, say) ...
    a = wide & (rng.random(n) < 0.33)  # ... and the artifact only at its far end
    classes = np.array([f"c{c}" for c in rng.integers(0, 4, n)])
    x = rng.normal(size=(n, 40))
    x[:, 0:8] += 5.0 * a[:, None]
    x[:, 8:16] += 5.0 * wide[:, None]
    codes = class_codes(classes)
    scores = artifact_scores(x, x, [0, 3], classes=classes)

    def candidate(name: str, neurons: range) -> Candidate:
        score = mean_score(x, {c: 1 for c in neurons})
        t = flag_threshold(score)
        return Candidate(name, {c: 1 for c in neurons}, score, t, separation(score, t), 0.0)

    winner, wider = candidate("agreement", range(0, 8)), candidate("skewed:8", range(8, 16))
    assert np.mean((winner.score > winner.threshold) == a) > 0.98
    flagged = wider.score > wider.threshold
    assert assess(x, flagged, codes, None, wider.structure).confident  # judged alone, it would be removed
    assert np.sum(flagged & a) > 0.9 * a.sum() and flagged.sum() > 2 * a.sum()
    found = find_findings(x, dataclasses.replace(scores, candidates=[winner, wider]), codes)
    assert len(found) == 1 and found[0].candidate.seed == winner.seed  # the winner stands for both


def test_same_images():
    a = np.zeros(100, dtype=bool)
    a[:20] = True
    b = np.zeros(100, dtype=bool)
    b[5:30] = True
    assert same_images(a, b)  # they share half of the larger
    b[:] = False
    b[10:60] = True
    assert not same_images(a, b)  # half of a lies in b, but b is mostly other images (a class, say)
    assert same_images(b, a)  # b, the later, holds half of a: a's images and more around them
    assert not same_images(a, np.zeros(100, dtype=bool)) and not same_images(a[:0], a[:0])


def test_the_layers_most_skewed_neurons_find_an_artifact_the_infected_set_misses():
    a, b, classes, x = _two_artifacts(seed=4)
    scores, found = _findings(x, classes, [0, 17])  # no detector of b is infected
    assert any(s.seed.startswith("skewed:") for s in scores.candidates)
    assert max(auc(a, scores.score), auc(b, scores.score)) > 0.99  # with class folders they compete for it too
    flat = artifact_scores(x, x, [0, 17])  # without class folders they do not (no class rule to guard them)
    assert any(s.seed.startswith("skewed:") for s in flat.candidates) and not flat.seed.startswith("skewed:")
    of_b = max(found, key=lambda f: auc(b, f.score))
    assert of_b.confident and of_b.candidate.seed.startswith("skewed:") and auc(b, of_b.score) > 0.99
    from dora_clean.scoring import ScoringSettings
    off = artifact_scores(x, x, [0, 17], classes=classes,  # no seed of the layer's own (skewed or bimodal)
                          settings=ScoringSettings(off=frozenset({"skewed", "bimodal"})))
    assert not any(s.seed.startswith("skewed:") for s in off.candidates)
    assert max(auc(b, f.score) for f in find_findings(x, off, class_codes(classes))) < 0.9


def test_a_second_artifact_is_judged_before_the_noise_of_many_infected_neurons():
    a, b, classes, x = _two_artifacts(n=4000, seed=6)
    rng = np.random.default_rng(7)
    x = np.c_[x, rng.normal(size=(len(x), 60))]  # 60 more neurons of noise
    infected = list(range(0, 8)) + list(range(16, 20)) + list(range(40, 60))  # 32: many seeds, most noise
    scores = artifact_scores(x, x, infected, classes=classes)
    found = find_findings(x, scores, class_codes(classes))
    assert {max((a, b), key=lambda y: auc(y, f.score)) is b for f in found if f.confident} == {False, True}


def test_a_finding_that_fails_only_the_within_class_test_is_listed_for_review(monkeypatch):
    """A second artifact whose edge one class's content fills: the layer reproduces it, but not within the
    class folders, so it is a finding of its own, left for review (not removed unreviewed, not dropped)."""
    import dora_clean.scoring.findings as findings_module

    a, b, classes, x = _two_artifacts()
    real = findings_module.assess

    def edge_of_b(activations, flagged, *args, **kwargs):  # the verdict on b's flags, as on a real edge
        c = real(activations, flagged, *args, **kwargs)
        if np.mean(b[flagged]) > 0.9:
            reason = "within the class folders only 3 of the layer's neurons reproduce the flagged set"
            c = dataclasses.replace(c, confident=False, reasons=[reason], reproducing_centred=3, class_edge=True)
        return c

    monkeypatch.setattr(findings_module, "assess", edge_of_b)
    _, found = _findings(x, classes, [0, 9, 17])
    by_b = [f for f in found if np.mean(b[f.flagged]) > 0.9]
    assert len(by_b) == 1 and not by_b[0].confident and by_b[0].confidence.listed
    assert found[0].confident and np.mean(a[found[0].flagged]) > 0.9  # confident ones first
    loose = lambda *args, **kwargs: dataclasses.replace(edge_of_b(*args, **kwargs), reasons=["r1", "r2"])
    monkeypatch.setattr(findings_module, "assess", loose)  # failing another test too: not listed
    assert not any(np.mean(b[f.flagged]) > 0.9 for f in _findings(x, classes, [0, 9, 17])[1][1:])
