"""The export step: a cleaned copy, the policies, the manifest, and a source left alone."""
from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

import pytest

from dora_clean.errors import DoraError
from dora_clean.export import export_clean
from dora_clean.review import to_fiftyone
from dora_clean.rundir import RunDir
from fakerun import make_run


def _tree(root: Path) -> dict[str, str]:
    """relpath -> sha256 of every file (and link) under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "link"
    return out


def _removed(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {r["filepath"]: r["reason"] for r in csv.DictReader(f)}


def _removed_findings(path: Path) -> dict[str, str]:
    """removed.csv's ``findings`` column."""
    with open(path, newline="") as f:
        return {r["filepath"]: r["findings"] for r in csv.DictReader(f)}


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "r", n_images=14)


def test_flagged_policy_without_fiftyone(run, tmp_path):
    before = _tree(run.dataset)
    out = tmp_path / "clean"
    counts = export_clean(run.run_dir, out)

    flagged = set(run.flagged)
    expect_kept = {r["filepath"] for r in run.rows} - flagged
    assert counts == {"total": len(run.rows) + 1, "kept": len(expect_kept), "removed_tagged": 0,
                      "removed_flagged": len(flagged), "removed_skipped": 1, "left_for_review": 0,
                      "tags_from": None, "findings": [1]}  # a run written before findings: finding 1 is `flagged`
    got = _tree(out)
    assert set(got) == expect_kept | {"removed.csv"}
    assert any("/sub/" in rel for rel in expect_kept)  # nested folders are kept
    for rel in expect_kept:
        assert got[rel] == before[rel]  # the same bytes under the same relative path
    removed = _removed(out / "removed.csv")
    assert removed == {**{rel: "flagged" for rel in flagged},
                       run.skipped[0]: "skipped: cannot identify image file"}
    assert (run.run_dir / "removed.csv").read_text() == (out / "removed.csv").read_text()
    assert _tree(run.dataset) == before  # the source is untouched


def test_tags_and_policies(run, tmp_path):
    before = _tree(run.dataset)
    ds = to_fiftyone(run.run_dir, progress=False)
    flagged = sorted(run.flagged)
    clean = sorted({r["filepath"] for r in run.rows} - set(flagged))
    by_rel = {os.path.relpath(fp, run.dataset): i for fp, i in zip(*ds.values(["filepath", "id"]))}
    ds.select(by_rel[flagged[0]]).tag_samples("keep")  # a false alarm
    ds.select(by_rel[flagged[1]]).tag_samples(["keep", "remove"])  # remove wins
    ds.select(by_rel[clean[0]]).tag_samples("remove")  # a miss of the scan

    counts = export_clean(run.run_dir, tmp_path / "a")  # policy "confident", and the run is
    assert counts["tags_from"] == ds.name
    assert counts["removed_tagged"] == 2 and counts["removed_flagged"] == len(flagged) - 2
    kept = set(_tree(tmp_path / "a")) - {"removed.csv"}
    assert kept == set(clean[1:]) | {flagged[0]}
    removed = _removed(tmp_path / "a" / "removed.csv")
    assert removed[flagged[1]] == removed[clean[0]] == "tagged"
    assert all(removed[rel] == "flagged" for rel in flagged[2:])
    assert counts["kept"] + counts["removed_tagged"] + counts["removed_flagged"] \
        + counts["removed_skipped"] == counts["total"]

    counts = export_clean(run.run_dir, tmp_path / "b", policy="tagged")
    kept = set(_tree(tmp_path / "b")) - {"removed.csv"}
    assert kept == set(clean[1:]) | {flagged[0]} | set(flagged[2:])
    assert counts["removed_flagged"] == 0 and counts["removed_tagged"] == 2
    assert _tree(run.dataset) == before


def test_flags_the_scan_does_not_trust_are_left_for_review(tmp_path):
    run = make_run(tmp_path / "r", n_images=14, confident=False)
    before = _tree(run.dataset)
    ds = to_fiftyone(run.run_dir, progress=False)
    flagged = sorted(run.flagged)
    by_rel = {os.path.relpath(fp, run.dataset): i for fp, i in zip(*ds.values(["filepath", "id"]))}
    ds.select(by_rel[flagged[0]]).tag_samples("remove")  # the user confirmed one
    ds.select(by_rel[flagged[1]]).tag_samples("keep")  # and cleared another

    counts = export_clean(run.run_dir, tmp_path / "a")
    assert counts["removed_flagged"] == 0 and counts["removed_tagged"] == 1
    assert counts["left_for_review"] == len(flagged) - 2
    kept = set(_tree(tmp_path / "a")) - {"removed.csv"}
    assert kept == {r["filepath"] for r in run.rows} - {flagged[0]}
    assert _removed(tmp_path / "a" / "removed.csv") == {flagged[0]: "tagged",
                                                        run.skipped[0]: "skipped: cannot identify image file"}

    counts = export_clean(run.run_dir, tmp_path / "b", policy="flagged")  # every flag, on the user's word
    assert counts["removed_flagged"] == len(flagged) - 2 and counts["left_for_review"] == 0
    assert _tree(run.dataset) == before


def test_dry_run_writes_nothing(run, tmp_path):
    before = _tree(run.dataset), _tree(run.run_dir)
    counts = export_clean(run.run_dir, tmp_path / "never", dry_run=True)
    assert counts["removed_flagged"] == len(run.flagged)
    assert not (tmp_path / "never").exists()
    assert (_tree(run.dataset), _tree(run.run_dir)) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_refuses_bad_targets(run, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("precious")
    with pytest.raises(DoraError, match="not empty"):
        export_clean(run.run_dir, full)
    assert (full / "mine.txt").read_text() == "precious"
    with pytest.raises(DoraError, match="overlaps the source"):
        export_clean(run.run_dir, run.dataset / "clean", overwrite=True)
    with pytest.raises(DoraError, match="overlaps the source"):
        export_clean(run.run_dir, run.dataset, overwrite=True)
    with pytest.raises(DoraError, match="overlaps the source"):
        export_clean(run.run_dir, run.dataset.parent, overwrite=True)
    with pytest.raises(DoraError, match="policy"):
        export_clean(run.run_dir, tmp_path / "x", policy="everything")
    with pytest.raises(DoraError, match="mode"):
        export_clean(run.run_dir, tmp_path / "x", mode="move")

    empty = tmp_path / "empty"
    empty.mkdir()
    export_clean(run.run_dir, empty)  # an empty folder is fine
    assert (empty / "removed.csv").exists()


def test_overwrite_replaces_only_the_target(run, tmp_path):
    before = _tree(run.dataset)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (tmp_path / "beside.txt").write_text("beside")
    export_clean(run.run_dir, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "removed.csv").exists()
    assert (tmp_path / "beside.txt").read_text() == "beside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "out", "r"]
    assert _tree(run.dataset) == before


def test_symlink_mode_and_flat_layout(tmp_path):
    run = make_run(tmp_path / "r", layout="flat", labels=False, n_images=8)
    before = _tree(run.dataset)
    out = tmp_path / "links"
    counts = export_clean(run.run_dir, out, mode="symlink")
    names = sorted(p.name for p in out.iterdir())
    kept = sorted({r["filepath"] for r in run.rows} - set(run.flagged))
    assert names == sorted(kept + ["removed.csv"]) and counts["kept"] == len(kept)
    for rel in kept:
        assert (out / rel).is_symlink()
        assert (out / rel).resolve() == (run.dataset / rel).resolve()
    assert _tree(run.dataset) == before


# -- findings ----------------------------------------------------------------------------------------------------

@pytest.fixture
def two(tmp_path):
    """A run with two findings: 1 confident, 2 not (it flags two of finding 1's images and two others)."""
    return make_run(tmp_path / "r", n_images=14, findings=(True, False))


def _all(run) -> set[str]:
    return {r["filepath"] for r in run.rows}


def test_default_removes_only_the_confident_findings(two, tmp_path):
    before = _tree(two.dataset)
    one, other = set(two.flagged_by(1)), set(two.flagged_by(2))
    assert one & other and other - one  # the fake run is what the test needs
    counts = export_clean(two.run_dir, tmp_path / "a")
    assert counts["findings"] == [1]
    assert counts["removed_flagged"] == len(one) and counts["left_for_review"] == len(other - one)
    assert set(_tree(tmp_path / "a")) - {"removed.csv"} == _all(two) - one
    by = _removed_findings(tmp_path / "a" / "removed.csv")
    assert {rel: k for rel, k in by.items() if rel in _all(two)} == dict.fromkeys(one, "1")
    assert by[two.skipped[0]] == ""
    assert counts["kept"] + counts["removed_flagged"] + counts["removed_skipped"] == counts["total"]

    counts = export_clean(two.run_dir, tmp_path / "b", findings=[2])  # the one the scan did not trust
    assert counts["findings"] == [2]
    assert counts["removed_flagged"] == len(other) and counts["left_for_review"] == len(one - other)
    assert set(_tree(tmp_path / "b")) - {"removed.csv"} == _all(two) - other
    by = _removed_findings(tmp_path / "b" / "removed.csv")
    assert {rel: k for rel, k in by.items() if rel in _all(two)} == dict.fromkeys(other, "2")

    counts = export_clean(two.run_dir, tmp_path / "c", findings=(2, 1))  # both: removed.csv says which
    assert counts["findings"] == [1, 2] and counts["left_for_review"] == 0
    assert counts["removed_flagged"] == len(one | other)
    by = _removed_findings(tmp_path / "c" / "removed.csv")
    assert {rel: k for rel, k in by.items() if rel in _all(two)} == {
        rel: "1 2" if rel in one & other else ("1" if rel in one else "2") for rel in one | other}
    rows = {r.filepath: r for r in RunDir(two.run_dir).read_removed()}
    assert all(rows[rel].findings == (1, 2) for rel in one & other)

    counts = export_clean(two.run_dir, tmp_path / "d", policy="flagged", dry_run=True)  # every finding
    assert counts["findings"] == [1, 2] and counts["removed_flagged"] == len(one | other)
    counts = export_clean(two.run_dir, tmp_path / "e", policy="tagged", dry_run=True)
    assert counts["findings"] == [] and counts["removed_flagged"] == 0 and counts["left_for_review"] == 0
    assert _tree(two.dataset) == before


def test_keep_and_remove_tags_win_over_a_finding(two, tmp_path):
    ds = to_fiftyone(two.run_dir, progress=False)
    one, other = set(two.flagged_by(1)), set(two.flagged_by(2))
    both, only2 = sorted(one & other), sorted(other - one)
    by_rel = {os.path.relpath(fp, two.dataset): i for fp, i in zip(*ds.values(["filepath", "id"]))}
    ds.select(by_rel[both[0]]).tag_samples("keep")  # flagged by both findings, but the user keeps it
    ds.select(by_rel[only2[0]]).tag_samples("remove")  # finding 2 (not chosen), confirmed by the user
    ds.select(by_rel[only2[1]]).tag_samples("keep")  # and one cleared: not left for review

    counts = export_clean(two.run_dir, tmp_path / "a")  # finding 1 only
    kept = set(_tree(tmp_path / "a")) - {"removed.csv"}
    assert both[0] in kept and only2[0] not in kept and only2[1] in kept
    assert counts["removed_tagged"] == 1 and counts["removed_flagged"] == len(one) - 1
    assert counts["left_for_review"] == len(other - one) - 2
    by = _removed_findings(tmp_path / "a" / "removed.csv")
    assert _removed(tmp_path / "a" / "removed.csv")[only2[0]] == "tagged" and by[only2[0]] == ""

    counts = export_clean(two.run_dir, tmp_path / "b", findings=[2])
    kept = set(_tree(tmp_path / "b")) - {"removed.csv"}
    assert kept == _all(two) - other | {both[0], only2[1]}
    assert counts["removed_tagged"] == 1 and counts["removed_flagged"] == len(other) - 3


def test_unknown_or_conflicting_findings_are_refused(two, tmp_path):
    run = make_run(tmp_path / "old", n_images=8)
    with pytest.raises(DoraError, match=r"no finding 5 \(it has: 1, 2\)"):
        export_clean(two.run_dir, tmp_path / "x", findings=[1, 5])
    with pytest.raises(DoraError, match="tagged"):
        export_clean(two.run_dir, tmp_path / "x", findings=[1], policy="tagged")
    with pytest.raises(DoraError, match=r"no finding 2 \(it has: 1\)"):  # a run written before findings
        export_clean(run.run_dir, tmp_path / "x", findings=[2])
    assert not (tmp_path / "x").exists()


def test_a_run_without_findings_exports_as_before(tmp_path):
    for confident in (True, False):
        run = make_run(tmp_path / f"r{confident}", n_images=14, confident=confident)
        flagged = set(run.flagged)
        counts = export_clean(run.run_dir, tmp_path / f"a{confident}", dry_run=True)
        assert counts["findings"] == ([1] if confident else [])
        assert counts["removed_flagged"] == (len(flagged) if confident else 0)
        assert counts["left_for_review"] == (0 if confident else len(flagged))
        counts = export_clean(run.run_dir, tmp_path / f"b{confident}", findings=[1])  # on the user's word
        assert counts["removed_flagged"] == len(flagged) and counts["left_for_review"] == 0
        by = _removed_findings(tmp_path / f"b{confident}" / "removed.csv")
        assert {rel: k for rel, k in by.items() if rel in flagged} == dict.fromkeys(flagged, "1")


def test_export_command_takes_findings(two, tmp_path):
    from click.testing import CliRunner

    from dora_clean.cli import main

    one, other = set(two.flagged_by(1)), set(two.flagged_by(2))
    r = CliRunner().invoke(main, ["export", str(two.run_dir), "--to", str(tmp_path / "a"), "--findings", "2"])
    assert r.exit_code == 0, r.output
    assert "left out the flags of finding 2" in r.output
    assert f"left out 0 tagged 'remove', {len(other)} flagged" in r.output
    assert f"left for review: {len(one - other)} flagged images" in r.output
    assert set(_tree(tmp_path / "a")) - {"removed.csv"} == _all(two) - other

    r = CliRunner().invoke(main, ["export", str(two.run_dir), "--to", str(tmp_path / "b"), "--dry-run"])
    assert r.exit_code == 0 and "would leave out the flags of finding 1\n" in r.output, r.output
    assert "the scan trusts none of their findings" in r.output

    for bad, message in (("1,x", "give finding ids like 1,3"), ("1,7", r"no finding 7 \(it has: 1, 2\)")):
        r = CliRunner().invoke(main, ["export", str(two.run_dir), "--to", str(tmp_path / "c"), "--findings", bad])
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
        assert re.search(message, lines[0]), lines[0]
