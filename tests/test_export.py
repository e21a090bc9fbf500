"""The export step: a cleaned copy, the policies, the manifest, and a source left alone."""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest

from dora_clean.errors import DoraError
from dora_clean.export import export_clean
from dora_clean.review import to_fiftyone
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
                      "tags_from": None}
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
