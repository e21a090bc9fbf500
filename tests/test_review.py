"""The review step: the run's FiftyOne dataset, the atlas dataset, database errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dora_clean.errors import DoraError
from dora_clean.review import (FLAGGED_TAG, FLAGGED_VIEW, atlas_to_fiftyone, default_name,
                               launch_review, to_fiftyone)
from dora_clean.rundir import read_summary
from fakerun import make_run

fo = pytest.importorskip("fiftyone")
REPO = Path(__file__).resolve().parents[1]


def _by_relpath(ds, run, field):
    fps, values = ds.values(["filepath", field])
    return {os.path.relpath(fp, run.dataset).replace(os.sep, "/"): v for fp, v in zip(fps, values)}


def test_to_fiftyone_fields_tags_heatmaps_view(tmp_path):
    run = make_run(tmp_path, n_images=12)
    ds = to_fiftyone(run.run_dir, progress=False)

    assert ds.persistent and len(ds) == len(run.rows)
    assert read_summary(run.run_dir)["fiftyone_dataset"] == ds.name
    assert ds.name == default_name(run.run_dir) == default_name(str(run.run_dir) + "/")
    for f in ["ground_truth", "dora_score", "dora_flagged", "artifact", "dora_heatmap"]:
        assert ds.has_sample_field(f), f
    for n in run.infected:
        assert ds.has_sample_field(f"dora_neuron_{n}")

    rows = {r["filepath"]: r for r in run.rows}
    assert set(_by_relpath(ds, run, "id")) == set(rows)  # absolute filepaths under the dataset
    assert all(os.path.isabs(fp) and os.path.exists(fp) for fp in ds.values("filepath"))
    labels = _by_relpath(ds, run, "ground_truth.label")
    scores = _by_relpath(ds, run, "dora_score")
    flagged = _by_relpath(ds, run, "dora_flagged")
    artifact = _by_relpath(ds, run, "artifact")
    neuron = _by_relpath(ds, run, f"dora_neuron_{run.infected[1]}")
    tags = _by_relpath(ds, run, "tags")
    heat = _by_relpath(ds, run, "dora_heatmap")
    for rel, r in rows.items():
        assert labels[rel] == r["label"]
        assert scores[rel] == pytest.approx(r["score"])
        assert neuron[rel] == pytest.approx(r[f"neuron_{run.infected[1]}"])
        assert flagged[rel] is bool(r["flagged"])
        assert artifact[rel] is bool(r["artifact"])
        assert (FLAGGED_TAG in tags[rel]) is bool(r["flagged"])
        assert (heat[rel] is not None) is bool(r["flagged"])

    maps = np.load(run.run_dir / "heatmaps.npy")
    i = next(i for i, r in enumerate(run.rows) if r["flagged"])
    hm = heat[run.rows[i]["filepath"]]
    assert hm.map.shape == maps.shape[1:]
    np.testing.assert_allclose(hm.map, maps[i].astype(np.float32))
    lo, hi = hm.range
    assert lo <= float(hm.map.min()) and hi >= float(hm.map.max()) and hi > lo

    view = ds.load_saved_view(FLAGGED_VIEW)
    want = sorted((r for r in run.rows if r["flagged"]), key=lambda r: -r["score"])
    got = [os.path.relpath(fp, run.dataset) for fp in view.values("filepath")]
    assert got == [r["filepath"] for r in want]
    assert len(ds.match_tags(FLAGGED_TAG)) == len(want)


def test_rerun_updates_scores_and_keeps_review_tags(tmp_path):
    run = make_run(tmp_path, n_images=10)
    ds = to_fiftyone(run.run_dir, progress=False)
    ids_before = set(ds.values("id"))
    view = ds.load_saved_view(FLAGGED_VIEW)
    top, second = view.values("id")[:2]
    clean = ds.match(~fo.ViewField("dora_flagged")).first()
    ds.select(top).tag_samples("remove")
    ds.select(second).tag_samples("keep")
    clean.tags.append("remove")
    clean.save()

    # a new scan of the same run dir: other scores, another infected neuron set
    run2 = make_run(tmp_path, n_images=10, infected=(7,), seed=1, images=False)
    ds2 = to_fiftyone(run2.run_dir, progress=False)
    assert ds2.name == ds.name and len(ds2) == len(run2.rows)
    assert set(ds2.values("id")) == ids_before  # updated in place
    assert not ds2.has_sample_field(f"dora_neuron_{run.infected[0]}")
    assert ds2.has_sample_field("dora_neuron_7")
    scores = _by_relpath(ds2, run2, "dora_score")
    tags = _by_relpath(ds2, run2, "tags")
    for r in run2.rows:
        assert scores[r["filepath"]] == pytest.approx(r["score"])
        assert (FLAGGED_TAG in tags[r["filepath"]]) is bool(r["flagged"])
    assert "remove" in ds2[top].tags and "keep" in ds2[second].tags
    assert "remove" in ds2[clean.id].tags
    assert len(ds2.match_tags("remove")) == 2 and len(ds2.match_tags("keep")) == 1
    heat = _by_relpath(ds2, run2, "dora_heatmap")
    assert all((heat[r["filepath"]] is not None) is bool(r["flagged"]) for r in run2.rows)
    got = ds2.load_saved_view(FLAGGED_VIEW).values("dora_score")
    assert got == sorted(got, reverse=True) and len(got) == sum(r["flagged"] for r in run2.rows)


def test_flat_layout_without_labels(tmp_path):
    run = make_run(tmp_path, layout="flat", labels=False, n_images=8)
    ds = to_fiftyone(run.run_dir, name="dora-clean-test-flat", progress=False)
    assert ds.name == "dora-clean-test-flat" == run.summary["fiftyone_dataset"]
    assert not ds.has_sample_field("ground_truth")
    assert not ds.has_sample_field("artifact")
    assert len(ds) == 8
    # a second call without a name finds the same dataset through summary.json
    assert to_fiftyone(run.run_dir, progress=False).name == "dora-clean-test-flat"


def test_refuses_a_dataset_it_did_not_make(tmp_path):
    run = make_run(tmp_path, n_images=8)
    other = fo.Dataset("someone-elses-dataset", persistent=True)
    other.add_sample(fo.Sample(filepath="/elsewhere/x.png"))
    with pytest.raises(DoraError, match="not made by dora-clean"):
        to_fiftyone(run.run_dir, name=other.name, progress=False)
    assert len(other) == 1
    other.delete()


def _finding_views(ds) -> list[str]:
    return sorted(v for v in ds.list_saved_views() if v.startswith("finding-"))


def test_findings_fields_tags_and_views(tmp_path):
    run = make_run(tmp_path, n_images=14, findings=(True, False))
    ds = to_fiftyone(run.run_dir, progress=False)
    assert ds.has_sample_field("dora_score") and ds.has_sample_field("dora_flagged")  # as before
    assert len(ds.load_saved_view(FLAGGED_VIEW)) == len(ds.match_tags(FLAGGED_TAG)) == len(run.flagged)
    assert _finding_views(ds) == ["finding-1", "finding-2"]
    for k in (1, 2):
        assert ds.has_sample_field(f"dora_finding_{k}")
        values = _by_relpath(ds, run, f"dora_finding_{k}")
        assert all(values[r["filepath"]] == pytest.approx(r[f"finding_{k}"]) for r in run.rows)
        flagged = set(run.flagged_by(k))
        tagged = ds.match_tags(f"dora:finding-{k}")
        assert len(tagged) == len(flagged) and len(flagged) >= 4
        assert {os.path.relpath(fp, run.dataset) for fp in tagged.values("filepath")} == flagged
        view = ds.load_saved_view(f"finding-{k}")
        got = view.values(f"dora_finding_{k}")
        assert len(got) == len(flagged) and got == sorted(got, reverse=True)
    assert set(run.flagged_by(2)) - set(run.flagged)  # finding 2 (not confident) flags images `flagged` leaves out
    described = {v: ds.get_saved_view_info(v)["description"] for v in _finding_views(ds)}
    assert "neurons +5, +2" in described["finding-1"] and "confident" in described["finding-1"]
    assert "neurons -2, +7" in described["finding-2"] and "not confident" in described["finding-2"]
    assert ds.info["findings"] == [{"id": 1, "neurons": {"5": 1, "2": 1}, "confident": True},
                                   {"id": 2, "neurons": {"2": -1, "7": 1}, "confident": False}]


def test_reimport_with_fewer_findings_removes_the_stale_ones(tmp_path):
    run = make_run(tmp_path, n_images=12, findings=(True, False, False))
    ds = to_fiftyone(run.run_dir, progress=False)
    assert _finding_views(ds) == ["finding-1", "finding-2", "finding-3"]
    only3 = sorted(set(run.flagged_by(3)) - set(run.flagged_by(2)))
    ids = _by_relpath(ds, run, "id")
    ds.select(ids[only3[0]]).tag_samples("remove")  # the user's review
    ds.select(ids[only3[1]]).tag_samples("keep")
    ds.save_view("mine", ds.match_tags("remove"))  # and a view of the user's own

    run2 = make_run(tmp_path, n_images=12, findings=(False, True), seed=0, images=False)  # one finding fewer
    ds2 = to_fiftyone(run2.run_dir, progress=False)
    assert ds2.name == ds.name
    assert not ds2.has_sample_field("dora_finding_3") and ds2.has_sample_field("dora_finding_2")
    assert _finding_views(ds2) == ["finding-1", "finding-2"] and ds2.has_saved_view("mine")
    counts = ds2.count_sample_tags()
    assert "dora:finding-3" not in counts
    assert counts["dora:finding-1"] == len(run2.flagged_by(1)) and counts["dora:finding-2"] == len(run2.flagged_by(2))
    assert counts["remove"] == counts["keep"] == 1
    tags = _by_relpath(ds2, run2, "tags")
    assert "remove" in tags[only3[0]] and "keep" in tags[only3[1]]
    assert [f["id"] for f in ds2.info["findings"]] == [2, 1]  # ranked: the confident one first
    assert "not confident" in ds2.get_saved_view_info("finding-1")["description"]

    run3 = make_run(tmp_path, n_images=12, seed=0, images=False)  # a run written before findings: one finding
    ds3 = to_fiftyone(run3.run_dir, progress=False)
    assert _finding_views(ds3) == ["finding-1"] and not ds3.has_sample_field("dora_finding_2")
    assert ds3.values("dora_finding_1") == ds3.values("dora_score")
    assert len(ds3.match_tags("dora:finding-1")) == len(run3.flagged)
    assert "dora:finding-2" not in ds3.count_sample_tags()
    assert ds3.info["findings"] == [{"id": 1, "neurons": {"5": 1, "2": 1}, "confident": True}]
    assert len(ds3.match_tags("remove")) == len(ds3.match_tags("keep")) == 1


def test_atlas_is_labelled_by_finding(tmp_path):
    run = make_run(tmp_path, n_images=8, n_neurons=8, infected=(5, 2), n_sams=2, findings=(False, True))
    ds = atlas_to_fiftyone(run.run_dir)
    got = {n: (f, first) for n, f, first in zip(*ds.values(["neuron", "findings", "finding"]))}
    # finding 1: neurons 5, 2; finding 2 (confident, so ranked first): neurons 2, 7
    assert got[5] == ([1], 1) and got[7] == ([2], 2) and got[2] == ([2, 1], 2)
    assert got[0] == ([], None) and got[3] == ([], None)
    assert ds.match_tags("finding-1").distinct("neuron") == [2, 5]
    assert ds.match_tags("finding-2").distinct("neuron") == [2, 7]
    assert len(ds.match(fo.ViewField("finding") == 2)) == 2 * 2
    assert [f["id"] for f in ds.info["findings"]] == [2, 1]


def test_atlas_dataset_has_the_visualization(tmp_path):
    run = make_run(tmp_path, n_images=8, n_neurons=6, infected=(4, 1), n_sams=2)
    ds = atlas_to_fiftyone(run.run_dir)
    assert read_summary(run.run_dir)["atlas_dataset"] == ds.name
    assert len(ds) == 6 * 2
    assert ds.list_brain_runs() == ["atlas"]

    import csv
    with open(run.run_dir / "neurons.csv") as f:
        atlas = {int(r["neuron"]): (float(r["atlas_x"]), float(r["atlas_y"]))
                 for r in csv.DictReader(f)}
    results = ds.load_brain_results("atlas")
    neuron_of = dict(zip(*ds.values(["id", "neuron"])))
    assert len(results.sample_ids) == len(ds)
    for sid, point in zip(results.sample_ids, results.points):
        np.testing.assert_allclose(point, atlas[neuron_of[sid]])
    infected = ds.match(fo.ViewField("infected")).distinct("neuron")
    assert infected == [1, 4]
    assert ds.match(fo.ViewField("dead")).distinct("neuron") == [0]
    assert ds.match_tags("infected").distinct("neuron") == [1, 4]

    assert ds.match_tags("finding-1").distinct("neuron") == [1, 4]  # a run without findings: one, its neurons
    assert ds.match(fo.ViewField("finding") == None).distinct("neuron") == [0, 2, 3, 5]  # noqa: E711

    again = atlas_to_fiftyone(run.run_dir)  # a re-run rebuilds it under the same name
    assert again.name == ds.name and len(again) == 12 and again.list_brain_runs() == ["atlas"]


def test_review_refuses_a_busy_port(tmp_path):
    import socket

    run = make_run(tmp_path, n_images=8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t = time.time()
        with pytest.raises(DoraError, match="in use by another program"):
            launch_review(run.run_dir, port=s.getsockname()[1], wait=False)
        assert time.time() - t < 10


def test_not_a_run_dir(tmp_path):
    with pytest.raises(DoraError, match="not a dora-clean run directory"):
        to_fiftyone(tmp_path)


def test_database_down_fails_fast_and_clearly(tmp_path):
    """A MongoDB that does not answer: a one-line DoraError within seconds, not 30 s."""
    run = make_run(tmp_path, n_images=8)
    code = textwrap.dedent(f"""
        import sys, time
        from dora_clean.errors import DoraError
        from dora_clean.review import to_fiftyone
        t = time.time()
        try:
            to_fiftyone({str(run.run_dir)!r}, progress=False)
        except DoraError as e:
            print("DORAERROR", time.time() - t)
            print(e)
            sys.exit(3)
    """)
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_PRIVATE_DATABASE_PORT"}
    env.update(PYTHONPATH=str(REPO),
               FIFTYONE_DATABASE_URI="mongodb://127.0.0.1:9/",  # port 9 (discard): closed
               FIFTYONE_DATABASE_NAME="dora_clean_test_unreachable")
    t = time.time()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    elapsed = time.time() - t
    assert p.returncode == 3, p.stdout + p.stderr
    seconds, message = p.stdout.split("DORAERROR", 1)[1].split("\n", 1)
    message = message.strip()
    assert "\n" not in message
    assert str(run.run_dir) in message and "on disk" in message
    assert "FIFTYONE_DATABASE_URI" in message and "--no-fiftyone" in message
    assert "mongod-ubuntu2204" in message
    assert float(seconds) < 15, seconds
    assert elapsed < 30
    assert read_summary(run.run_dir)["fiftyone_dataset"] is None


@pytest.mark.slow
def test_scans_that_start_the_database_together_all_reach_it(tmp_path):
    """Three processes start FiftyOne's own mongod at once (a fresh database folder): without a
    lock all but one fail after a minute (ServiceListenTimeout); with it each connects in turn."""
    code = textwrap.dedent("""
        from dora_clean.review import import_fiftyone
        fo = import_fiftyone(None)
        print("CONNECTED", fo.list_datasets())
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT")}
    env.update(PYTHONPATH=str(REPO), FIFTYONE_DATABASE_DIR=str(tmp_path / "db"),
               FIFTYONE_DATABASE_NAME="dora_clean_test_together")
    logs = [tmp_path / f"process{i}.log" for i in range(3)]  # files, not pipes: mongod inherits them
    procs = []
    for log in logs:
        with open(log, "w") as f:
            procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=f, stderr=subprocess.STDOUT))
    for p, log in zip(procs, logs):
        p.wait(timeout=240)
        assert p.returncode == 0 and "CONNECTED []" in log.read_text(), log.read_text()[-2000:]


def test_fiftyone_is_imported_lazily():
    code = ("import sys, dora_clean.review, dora_clean.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fiftyone', 'pymongo')))")
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_review_url_names_the_dataset_and_saved_view_and_keeps_a_proxys_query(tmp_path):
    from types import SimpleNamespace

    from dora_clean.review import review_url

    run = make_run(tmp_path, n_images=8)
    ds = to_fiftyone(run.run_dir, progress=False)
    flagged = ds.load_saved_view(FLAGGED_VIEW)
    local = SimpleNamespace(url="http://127.0.0.1:5151/")
    assert review_url(local, flagged) == f"http://127.0.0.1:5151/datasets/{ds.name}?view={FLAGGED_VIEW}"
    assert review_url(local, ds) == f"http://127.0.0.1:5151/datasets/{ds.name}"  # no saved view: the whole dataset
    proxied = SimpleNamespace(url="https://hub.example/user/proxy/5151/?proxy=%2Fuser%2Fproxy%2F5151%2F")
    assert review_url(proxied, flagged) == (f"https://hub.example/user/proxy/5151/datasets/{ds.name}"
                                            f"?proxy=%2Fuser%2Fproxy%2F5151%2F&view={FLAGGED_VIEW}")
    spaced = ds.clone("dora clean #1")
    assert review_url(local, spaced) == "http://127.0.0.1:5151/datasets/dora%20clean%20%231"
    spaced.delete()
