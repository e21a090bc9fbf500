"""Outlier detection on the EA distance: planted outliers, dead neurons, the infected set."""
from __future__ import annotations

import numpy as np
import pytest

from dora_clean.errors import DoraError
from dora_clean.analysis.outliers import (
    OutlierSettings, atlas, find_dead, find_infected, outlier_scores, select_infected,
)


def clustered(k=40, seed=0):
    """Representations of k neurons on one cluster, neuron 7 far away; their EA distance."""
    rng = np.random.default_rng(seed)
    R = np.abs(rng.normal(1, 0.15, size=(k, 32)))
    R[7] = np.abs(rng.normal(0, 1, size=32)) * np.eye(32)[rng.permutation(32)[:4]].sum(0)
    Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
    d = np.sqrt(np.clip((1 - Rn @ Rn.T) / 2, 0, 1))
    np.fill_diagonal(d, 0)
    return R, d


@pytest.mark.parametrize("method", ["knn+group", "group", "lof", "knn", "pca", "iforest"])
def test_planted_outlier_ranks_first(method):
    R, d = clustered()
    scores = outlier_scores(d, method, representations=R)
    assert int(np.argmax(scores)) == 7


def test_infected_set_is_small_and_excludes_dead_neurons():
    R, d = clustered()
    self_act = np.ones(len(d))
    self_act[3] = 1e-4  # dead: its own s-AMS barely excite it
    d[3, :] = d[:, 3] = 0.9
    d[3, 3] = 0
    res = find_infected(d, self_act, list(range(40)), with_atlas=False)
    assert res.dead == [3]
    assert res.infected[0] == 7
    assert 1 <= len(res.infected) <= 2  # at most 5% of 40
    assert np.isnan(res.scores[3])
    assert res.ranking[0] == 7 and 3 not in res.ranking


def test_select_infected_bounds():
    scores = np.array([1.0, 1.1, 0.9, 1.0, 1.05] * 8)
    dead = np.zeros(40, bool)
    assert len(select_infected(scores, range(40), dead)) == 1  # nothing stands out: still one
    assert select_infected(scores, range(40), dead, n_infected=3) == [1, 6, 11]


def test_a_group_of_detectors_stands_out_by_the_group_score():
    """Five neurons that see one thing (close to each other, far from the rest) are a dense spot
    to the kNN distance, and the farthest of all to the group score; knn+group takes both kinds."""
    rng = np.random.default_rng(0)
    R = np.abs(rng.normal(1, 0.3, size=(64, 32)))
    R[:5] = np.abs(rng.normal(1, 0.05, size=(5, 32))) + 3 * np.eye(32)[0]  # the group: one shared direction
    R[[60, 61]] += [[3], [2]] * np.eye(32)[[1, 2]]  # two lone outliers, each in a direction of its own
    Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
    d = np.sqrt(np.clip((1 - Rn @ Rn.T) / 2, 0, 1))
    np.fill_diagonal(d, 0)
    group, knn = outlier_scores(d, "group"), outlier_scores(d, "knn")
    bulk = np.r_[5:60, 62:64]
    assert group[:5].min() > group[bulk].max()  # the group stands out from the bulk
    assert knn[:5].max() < np.sort(knn[bulk])[-3]  # to kNN the group is denser than the bulk's edge
    both = outlier_scores(d, "knn+group")  # in turns: kNN's first, the group's first, kNN's second, ...
    order = list(np.argsort(-both, kind="stable"))
    interleaved = list(dict.fromkeys(i for pair in zip(np.argsort(-knn, kind="stable"), np.argsort(-group, kind="stable"))
                                     for i in pair))
    assert order == interleaved
    knn3 = OutlierSettings("knn", n_infected=3)
    lone = find_infected(d, np.ones(64), list(range(64)), knn3, with_atlas=False).infected
    assert not set(lone) & set(range(5))  # kNN's top 3: none of the group
    res = find_infected(d, np.ones(64), list(range(64)), with_atlas=False)  # 5% of 64, in turns
    assert res.method == "knn+group" and res.infected[:2] == [60, 61] and res.infected[2] in range(5)


def test_find_dead_relative_to_typical_neuron():
    assert find_dead(np.array([1.0, 0.9, 0.05, 1.2, 0.0])).tolist() == [False, False, True, False, True]


def test_atlas_shape_and_unknown_method():
    _, d = clustered(12)
    assert atlas(d).shape == (12, 2)
    with pytest.raises(DoraError, match="unknown outlier method"):
        outlier_scores(d, "nope")


def test_without_scores_the_first_live_neuron_is_infected_quietly():
    import warnings

    from dora_clean.analysis.outliers import select_infected

    scores = np.array([-np.inf, -np.inf, -np.inf])  # what find_infected passes with fewer than 3 live neurons
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_infected(scores, [7, 8, 9], np.array([True, False, False])) == [8]
        assert select_infected(np.array([0.1, np.nan, 5.0, 0.2, 0.3]), range(5), np.zeros(5, bool), max_fraction=0.4) == [2]
