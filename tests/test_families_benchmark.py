"""The benchmarks' own measures: the linear probe that says whether the comb goal is in reach, the
independent components tried as candidates, the layer's best read from a neuron's mean or peak, and the
pooling screen."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import families_benchmark  # noqa: E402  (a script beside its modules, as the benchmarks run)
import projection_seeds  # noqa: E402


def _layer(seed: int = 0, n: int = 600, c: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    classes = rng.integers(0, 4, n)
    return rng.normal(size=(n, c)), y, classes


def test_probe_reads_an_artifact_spread_over_several_neurons():
    x, y, _ = _layer()
    x[:, :10] += 0.9 * y[:, None]  # ten weak detectors: none alone reaches 0.95, together they do
    single = max(families_benchmark.auc(y, x[:, k]) for k in range(x.shape[1]))
    assert single < 0.95 < families_benchmark.probe_auc(y, x)
    assert families_benchmark.in_reach({"oracle_auc": single}, families_benchmark.probe_auc(y, x))


def test_probe_finds_nothing_in_noise():
    x, y, _ = _layer(1)
    assert 0.35 < families_benchmark.probe_auc(y, x) < 0.65  # out of fold: no credit for fitting noise


def test_probe_reads_within_the_class_folders():
    x, y, classes = _layer(2)
    x[:, 0] += 3.0 * classes + 0.8 * y  # the detector's class content drowns the artifact
    x[:, 1] += 3.0 * classes + 0.8 * y
    names = [f"c{k}" for k in classes]
    assert families_benchmark.probe_auc(y, x, names) > families_benchmark.probe_auc(y, x) + 0.05


def test_a_component_finds_a_rare_artifact_spread_over_weak_neurons():
    from dora_clean.scoring.recruiting import column_ranks

    rng = np.random.default_rng(3)
    n, c = 800, 24
    y = np.zeros(n, dtype=int)
    y[:16] = 1  # 2%
    x = rng.normal(size=(n, c))
    x[:, :12] += 1.2 * y[:, None]  # no neuron alone reaches 0.95; one direction holds it all
    assert max(families_benchmark.auc(y, x[:, k]) for k in range(c)) < 0.95
    codes = rng.integers(0, 4, n)
    found = projection_seeds.component_candidates(x, column_ranks(x), codes, 12, 4, seed=0)
    assert found and max(families_benchmark.auc(y, score) for _, score, _ in found) > 0.97  # among the most skewed


def test_scoring_constants_are_set_where_they_are_read_and_put_back():
    from dora_clean.scoring import combine, thresholds

    before = (thresholds.STRUCTURE, combine.MIN_NEURONS, thresholds.flag_threshold.__defaults__)
    with families_benchmark.scoring_constants({"STRUCTURE": 0, "MIN_NEURONS": 1, "SPLIT_AUC": 0.95}):
        assert (thresholds.STRUCTURE, combine.MIN_NEURONS) == (0, 1)
        assert thresholds.flag_threshold.__defaults__[-1] == 0.95  # a default bound at definition
    assert (thresholds.STRUCTURE, combine.MIN_NEURONS, thresholds.flag_threshold.__defaults__) == before


def test_finding_lines_give_each_findings_precision_overlap_and_reasons():
    from dora_clean.scoring import score_findings

    rng = np.random.default_rng(4)
    n = 1500
    a, b = rng.random(n) < 0.1, rng.random(n) < 0.1  # two artifacts, each with eight detectors
    classes = [f"c{k}" for k in rng.integers(0, 4, n)]
    x = rng.normal(size=(n, 32))
    x[:, 0:8] += 5.0 * a[:, None]
    x[:, 8:16] += 5.0 * b[:, None]
    _, found = score_findings(x, x, [0, 9], classes=classes)
    assert len(found) >= 2
    lines = families_benchmark.finding_lines(found, a.astype(int))
    assert len(lines) == len(found)
    first = found[0]
    assert f"finding 1: {int(first.flagged.sum()):4d} flagged" in lines[0] and "holds 1.00 of finding 1's" in lines[0]
    precisions = [float(line.split("precision ")[1].split(",")[0]) for line in lines]
    assert max(precisions) > 0.95 and min(precisions) < 0.2  # one finding is a's, another b's (a tenth of b's carry a)
    assert all(line.endswith("confident") == f.confident for line, f in zip(lines, found))


def _small_artifact(seed: int = 5, n: int = 800, c: int = 8):
    """A layer whose neuron 2 fires at one position on a 5% artifact: its peak sees it, its mean hardly."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    mean_act, max_act = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    mean_act[:, 2] += 0.2 * y
    max_act[:, 2] += 4.0 * y
    return y, mean_act, max_act


def test_the_layers_best_is_read_from_a_neurons_peak_where_its_mean_dilutes_a_small_artifact():
    import planted_benchmark

    y, mean_act, max_act = _small_artifact()
    by_mean, src, _ = planted_benchmark.layer_best(y, mean_act, max_act, "mean")
    assert by_mean[2] < 0.8 and src is mean_act
    both, src, raw = planted_benchmark.layer_best(y, mean_act, max_act, "mean", readings="both")
    assert int(np.argmax(both)) == 2 and both[2] > 0.99 and src is max_act and raw[2] > 0.99
    assert np.all(both >= by_mean)  # the better reading of each neuron
    silenced, _, raw = planted_benchmark.layer_best(y, mean_act, -max_act, "mean", readings="both")
    assert silenced[2] > 0.99 and raw[2] < 0.01  # a peak the artifact silences counts too (either direction)


def test_probe_features_hold_both_readings():
    y, mean_act, max_act = _small_artifact()
    case = type("Case", (), {"mean_act": mean_act, "max_act": max_act})()
    assert np.array_equal(families_benchmark.probe_features(case, "mean"), mean_act)
    assert families_benchmark.probe_features(case, "both").shape == (len(y), 2 * mean_act.shape[1])
    assert np.array_equal(families_benchmark.probe_features(case, "max"), max_act)


def test_pooling_screen_judges_each_choice_against_the_same_goals():
    import pooling_screen
    from types import SimpleNamespace

    def scored(structure: float, comb: float, removed: int, removed_precision: float, flagged: slice,
               confident: bool = False, reproducing: int = 12) -> dict:
        candidate = SimpleNamespace(structure=structure, beats=lambda other: structure > other.structure)
        flags = np.zeros(1000, dtype=bool)
        flags[flagged] = True
        finding = SimpleNamespace(candidate=candidate, flagged=flags,
                                  confidence=SimpleNamespace(confident=confident, reproducing=reproducing))
        return {"findings": [finding], "combined_auc": comb,
                "best_inf_auc": 0.5, "oracle_auc": 0.99, "break_even": 0.95, "precision": 0.9, "recall": 0.9,
                "n_removed": removed, "removed_precision": removed_precision}

    mean, peak = scored(0.1, 0.80, 0, 0.0, slice(0, 300)), scored(0.5, 0.99, 100, 0.88, slice(900, 1000))
    assert {name: choose(mean, peak) for name, choose in pooling_screen.CHOICES.items()} == {
        "mean": "mean", "max": "max", "more structure": "max", "contest": "max", "peak by the bar": "max",
        "peak, mean unconf": "max", "peak reproduced": "max", "new split": "max"}
    lone = scored(0.5, 0.99, 0, 0.0, slice(900, 1000), reproducing=1)  # a cleaner peak that no neuron reproduces
    assert pooling_screen.CHOICES["peak, mean unconf"](mean, lone) == "max"
    assert pooling_screen.CHOICES["peak reproduced"](mean, lone) == "mean"
    assert pooling_screen.CHOICES["peak by the bar"](mean, scored(0.15, 0.99, 0, 0.0, slice(900, 1000))) == "mean"
    trusted = scored(0.1, 0.80, 0, 0.0, slice(0, 300), confident=True)  # the mean has a confident finding
    assert pooling_screen.CHOICES["peak by the bar"](trusted, peak) == "max"
    assert pooling_screen.CHOICES["peak, mean unconf"](trusted, peak) == "mean"
    again = scored(0.5, 0.99, 100, 0.88, slice(0, 200))  # the peak flags two thirds of the mean's images
    assert pooling_screen.CHOICES["new split"](mean, again) == "mean"
    assert pooling_screen.misses(mean, 1000) == {"comb"}  # not inf: the pooling does not move the infected set
    assert pooling_screen.misses(dict(mean, break_even=0.97), 1000) == {"comb", "P/R"}  # 0.9 against 0.97 - 0.05
    assert pooling_screen.misses(peak, 1000) == {"export", "clean"}  # 10% removed at 0.88


def test_findings_benchmark_export_is_the_union_of_the_confident_findings():
    from findings_benchmark import removed

    any_artifact = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    first, second = np.zeros(10, dtype=bool), np.zeros(10, dtype=bool)
    first[[0, 1, 2]] = True
    second[[2, 3, 5]] = True  # one image shared, one clean
    assert removed([first, second], any_artifact) == (5, 0.8)
    assert removed([first], any_artifact) == (3, 1.0)
    n, precision = removed([], any_artifact)
    assert n == 0 and np.isnan(precision)


def test_each_rule_the_ablation_switches_off_changes_what_the_library_reads_and_is_put_back():
    from dora_clean.scoring import combine, confidence
    from dora_clean.scoring import findings as found
    from families_benchmark import RULES, rules_off

    def reads():
        return (combine._down_to, combine.thresholds, found.same_images, found.structure, confidence.MIN_REPRODUCING,
                confidence.ClassCentred, confidence.class_excess)

    before = reads()
    rng = np.random.default_rng(0)
    x, codes = rng.normal(size=(400, 32)), np.repeat(np.arange(4), 100)
    one_class = codes == 0  # a flagged set the class folders explain, which no neuron reproduces
    small, wide = np.zeros(400, dtype=bool), np.zeros(400, dtype=bool)
    small[:10], wide[:40] = True, True

    def reasons() -> str:
        return " ".join(confidence.assess(x, one_class, codes, structure=0.0).reasons)

    seen = {}
    for rule in RULES:
        with rules_off({rule}):
            seen[rule] = (combine._down_to([1, 2, 3, 4], 2, {1: 1}), combine.thresholds.STRUCTURE,
                          found.same_images(wide, small), found.structure(x[:, 0], 0.0), reasons(),
                          confidence.ClassCentred(x, codes) is x)
        assert reads() == before, rule
    today = (combine._down_to([1, 2, 3, 4], 2, {1: 1}), combine.thresholds.STRUCTURE, found.same_images(wide, small),
             found.structure(x[:, 0], 0.0), reasons(), confidence.ClassCentred(x, codes) is x)
    assert today[0] == [1, 2, 3] and seen["winner_seeds"][0] == [2, 3]  # E2 off: the winner's neuron not seeded
    assert today[1] > 0 and seen["contest_structure"][1] == 0
    assert today[2] and not seen["wider_set"][2]  # H off: the wider set must share half of itself too
    assert today[3] is not None and seen["bell_curve"][3] is None  # C off: findings pass assess no structure
    assert not today[5] and seen["within_class"][5]  # RC' off: the within-class count reads them as they are
    for rule, words in [("reproduction", "reproduce the flagged set"), ("class_excess", "holds 100 of the flagged")]:
        assert words in today[4] and words not in seen[rule][4], rule
    assert seen["peak"] == today  # the pooling: evaluate's keyword, nothing replaced

