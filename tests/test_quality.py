"""Method quality on the bundled model: the infected neurons are the artifact detectors.

The bundled model learned a planted text watermark as a shortcut; a small
planted scan set with known labels tells which neurons detect it.
"""
from __future__ import annotations

import numpy as np
import pytest

from dora_clean.analysis import AnalysisOptions, analyse_layer
from dora_clean.evaluate import auc, neuron_aucs
from dora_clean.scanning import list_images
from dora_clean.models import LayerModel
from dora_clean.demo import load_demo_model
from dora_clean.demo.shapes import ScanSetSpec, write_scan_set
from dora_clean.analysis.sams import SamsConfig
from dora_clean.scanning import scan_images
from dora_clean.scanning.activations import ScanOptions
from dora_clean.scoring import artifact_scores


@pytest.mark.slow
def test_infected_neurons_detect_the_planted_artifact(tmp_path):
    model, info = load_demo_model()
    layer = info["layer"]
    data = write_scan_set(tmp_path / "data", ScanSetSpec(300, artifact_fraction=0.2, seed=21))
    labels = dict(line.split(",") for line in (data / "labels.csv").read_text().splitlines()[1:])
    analysis = analyse_layer(model, layer, config=SamsConfig(n_signals=4, steps=128, size=64),
                             options=AnalysisOptions(device="cpu", progress=False))
    entries, _, _ = list_images(data)
    res = scan_images(LayerModel(model, layer), data, entries, tmp_path / "scan",
                      ScanOptions(64, progress=False, workers=0))
    y = np.array([int(labels[e.relpath]) for e in res.entries])
    raw = neuron_aucs(y, np.asarray(res.mean_act))
    detectors = {int(n) for n in np.flatnonzero(np.maximum(raw, 1 - raw) >= 0.95)}
    assert detectors, "the bundled model should have artifact detectors"
    infected = analysis.infected
    assert 1 <= len(infected) <= 3
    assert detectors & set(infected), (infected, sorted(detectors))
    scores = artifact_scores(res.mean_act, res.max_act, infected, classes=[e.label for e in res.entries])
    assert auc(y, scores.score) >= 0.95
    flagged = scores.score > scores.threshold
    assert y[flagged].mean() >= 0.9 and flagged[y == 1].mean() >= 0.9  # the label-free flags: precision, recall
