"""Step 8, export: a cleaned copy of the dataset, and a manifest of what was left out."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DoraError
from .review import KEEP_TAG, REMOVE_TAG, import_fiftyone, run_findings
from .rundir import RemovedRow, RunDir, removed_csv, sample_filepaths

__all__ = ["MODES", "POLICIES", "export_clean"]

log = logging.getLogger(__name__)

POLICIES = ("confident", "flagged", "tagged")
MODES = ("copy", "symlink")


def _check_target(src: Path, run_dir: Path, to: Path, overwrite: bool) -> None:
    """Refuse a target that overlaps the source or the run, or holds files (unless overwrite)."""
    if to == src or src in to.parents or to in src.parents:
        raise DoraError(f"the target {to} overlaps the source dataset {src}; choose another --to")
    if to == run_dir or to in run_dir.parents:
        raise DoraError(f"the target {to} would hold the run directory {run_dir}; "
                        "choose another --to")
    if to.exists() and not to.is_dir():
        raise DoraError(f"the target {to} exists and is not a folder")
    if to.is_dir() and any(to.iterdir()) and not overwrite:
        raise DoraError(f"the target {to} is not empty; choose another --to or pass --overwrite "
                        "to replace its contents")


def _review_tags(summary: dict, run_dir: Path, relpaths: list[str]) -> tuple[dict, str | None]:
    """relpath -> its tags, from the run's FiftyOne dataset; ({}, None) when there is none."""
    name = summary.get("fiftyone_dataset")
    if not name:
        return {}, None
    fo = import_fiftyone(run_dir, otherwise=(
        "set fiftyone_dataset to null in summary.json to export by the scan's flags alone"))
    if not fo.dataset_exists(name):
        log.warning("the FiftyOne dataset %r is gone; exporting by the scan's flags alone", name)
        return {}, None
    rel_of = dict(zip(sample_filepaths(summary["dataset"], relpaths), relpaths))
    fps, tags = fo.load_dataset(name).values(["filepath", "tags"])
    return {rel_of[fp]: set(t) for fp, t in zip(fps, tags) if fp in rel_of}, name


def _chosen_findings(policy: str, findings: Sequence[int] | None, ids: list[int], summary: dict) -> list[int]:
    """The findings whose flags the export leaves out: ``findings`` when given, else by the policy."""
    if findings is not None:
        if policy == "tagged":
            raise DoraError("the policy 'tagged' leaves out only what is tagged 'remove', and findings pick flags "
                            "to leave out: give one or the other")
        chosen = sorted({int(k) for k in findings})
        unknown = [k for k in chosen if k not in ids]
        if unknown:
            raise DoraError(f"the run has no finding {', '.join(map(str, unknown))} "
                            f"(it has: {', '.join(map(str, ids))})")
        return chosen
    if policy == "tagged":
        return []
    if policy == "flagged":
        return list(ids)
    confident = {f["id"] for f in run_findings(summary) if f["confident"]}
    return [k for k in ids if k in confident]


def export_clean(run_dir: str | os.PathLike, to: str | os.PathLike, policy: str = "confident",
                 dry_run: bool = False, overwrite: bool = False, mode: str = "copy",
                 findings: Sequence[int] | None = None) -> dict:
    """Write a cleaned copy of the run's dataset to ``to``; returns the counts.

    A scan reports findings (suspected artifacts, summary.json's
    ``findings``; a run written before findings has one, id 1, its flags
    ``flagged``, confident when ``artifact_found``). What is left out: images
    tagged ``remove``, and the images flagged by a chosen finding unless tagged
    ``keep``. The chosen findings: ``findings`` (ids, confident or not) when
    given; otherwise by the policy:

    - ``"confident"`` (default): the findings the scan trusts (their
      ``confident``); the other findings' flags are kept and counted as
      ``left_for_review``;
    - ``"flagged"``: every finding;
    - ``"tagged"``: none, only images tagged ``remove`` (``findings`` cannot
      go with it).

    ``remove`` wins over ``keep``. Tags come from the run's FiftyOne dataset
    (summary.json's ``fiftyone_dataset``) when it exists; otherwise there are
    none and only the flags count. Images the scan skipped (unreadable) are
    left out too. The copy keeps the layout and every relative path and file
    name; ``mode="symlink"`` links to the source files instead of copying
    them. ``removed.csv`` (filepath, reason, score: the combined score, or
    that of the first chosen finding that flags the image; findings: the
    chosen findings that flag it) lists what was left out; it is written into
    ``to`` and into the run directory. ``dry_run`` only counts. The source
    dataset is never modified; ``to`` must not exist or be empty, unless
    ``overwrite`` (its contents are then replaced).

    Counts: ``total`` (images the scan saw) = ``kept`` + ``removed_tagged`` +
    ``removed_flagged`` + ``removed_skipped``; ``left_for_review``: images
    flagged by a finding that was not chosen (and not tagged ``keep``), kept
    (0 under the policy "tagged", which sets the flags aside); ``tags_from``:
    the FiftyOne dataset the tags came from, or None; ``findings``: the
    chosen findings' ids.
    """
    if policy not in POLICIES:
        raise DoraError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if mode not in MODES:
        raise DoraError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    run = RunDir(Path(run_dir).resolve())
    run_dir = run.path
    summary = run.read_summary()
    scores = run.read_scores()
    ids = scores.finding_ids
    chosen = _chosen_findings(policy, findings, ids, summary)
    src = run.dataset_root(summary).resolve()
    if not src.is_dir():
        raise DoraError(f"the scanned dataset {src} is not there any more")
    to = Path(to).expanduser().resolve()
    _check_target(src, run_dir, to, overwrite)

    tags, tags_from = _review_tags(summary, run_dir, scores.filepaths)
    flags = {k: scores.flags_of(k) for k in ids}
    chosen_flags = [(k, flags[k]) for k in chosen]
    review = np.logical_or.reduce(list(flags.values())) if policy != "tagged" or findings is not None \
        else np.zeros(len(scores.filepaths), dtype=bool)
    kept: list[str] = []
    removed: list[RemovedRow] = []
    counts = dict.fromkeys(["kept", "removed_tagged", "removed_flagged", "removed_skipped", "left_for_review"], 0)
    for i, (rel, score) in enumerate(zip(scores.filepaths, scores.score)):
        t = tags.get(rel, set())
        by: tuple[int, ...] = ()
        if REMOVE_TAG in t:
            reason = "tagged"
        elif KEEP_TAG not in t and (by := tuple(k for k, f in chosen_flags if f[i])):
            reason = "flagged"
        else:
            kept.append(rel)
            counts["kept"] += 1
            counts["left_for_review"] += bool(review[i] and KEEP_TAG not in t)
            continue
        if by and by[0] in scores.findings:  # the score of the finding that removed it
            score = scores.findings[by[0]][i]
        removed.append(RemovedRow(rel, reason, float(score), by))
        counts[f"removed_{reason}"] += 1
    for skipped in run.read_skipped():
        why = skipped.reason
        removed.append(RemovedRow(skipped.relpath, f"skipped: {why}" if why else "skipped"))
        counts["removed_skipped"] += 1
    counts = {"total": len(scores.filepaths) + counts["removed_skipped"], **counts, "tags_from": tags_from,
              "findings": chosen}
    if dry_run:
        return counts

    manifest = removed_csv(removed)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.export-"))
    try:
        _write_images(src, kept, tmp, mode)
        (tmp / run.removed_path.name).write_text(manifest)
        if to.exists():  # empty, or overwrite: replace it
            shutil.rmtree(to)
        os.rename(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run.write_removed(removed)
    return counts


def _write_images(src: Path, relpaths: list[str], out: Path, mode: str) -> None:
    """Copy (or symlink) ``src/REL`` to ``out/REL`` for each relative path.

    FiftyOne's ImageDirectory exporter with ``rel_dir=src`` keeps each
    relative path exactly (nested folders and file names), for the class-folder
    and the flat layout alike. ImageClassificationDirectoryTree does not fit:
    it writes ``LABEL/BASENAME`` (renaming clashes, dropping nested folders) or,
    with ``rel_dir``, ``LABEL/RELPATH`` (the class folder twice). FiftyOne
    copies with shutil.copy: the content and permission bits, not the times.
    """
    import fiftyone.utils.data as foud  # no database needed

    export_media = True if mode == "copy" else "symlink"
    try:
        with foud.ImageDirectoryExporter(str(out), export_media=export_media,
                                         rel_dir=str(src)) as exporter:
            for rel in relpaths:
                exporter.export_sample(str(src / rel))
    except OSError as e:
        raise DoraError(f"cannot export {getattr(e, 'filename', '') or ''}: {e.strerror or e}; "
                        "has the dataset changed since the scan?") from e
    lost = [rel for rel in relpaths if not os.path.lexists(out / rel)]
    if lost:  # a FiftyOne that names files differently: refuse rather than export wrongly
        raise DoraError(f"the export did not keep the file name {lost[0]!r}; please report this")
