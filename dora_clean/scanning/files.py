"""List the images of a dataset folder (flat, or in class sub-folders); bad entries become :class:`Skipped`.

A dataset is a folder of images, either flat or with class sub-folders
(torchvision ImageFolder / FiftyOne ImageClassificationDirectoryTree layout).
Nothing here ever writes to the dataset.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Collection

from ..errors import DoraError

__all__ = ["IMAGE_EXTENSIONS", "ImageEntry", "Skipped", "list_images"]


IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
)


_EXTENSIONS_B = tuple(e.encode() for e in IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class ImageEntry:
    """One image of the dataset."""

    relpath: str  # posix path relative to the dataset root
    label: str | None  # class folder (first path component); None at the top level


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    relpath: str
    reason: str


def _is_image_name(name: bytes) -> bool:
    return name.lower().endswith(_EXTENSIONS_B)


def _show(rel: bytes) -> str:
    """A printable, UTF-8-safe form of a relative path (bad bytes as \\xNN)."""
    return rel.decode("utf-8", "backslashreplace")


def _os_reason(e: OSError, what: str = "file") -> str:
    if isinstance(e, PermissionError):
        return "permission denied" if what == "file" else f"permission denied ({what})"
    if e.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot read {what} ({e.strerror or e})"


def _sort_file(rel: str, st: os.stat_result, entry, entries: list[ImageEntry], skipped: list[Skipped]) -> None:
    """An image file found by its name goes to ``entries`` (as ``entry(rel)``), unless it is no regular
    file or is empty: then to ``skipped``, with the reason."""
    if not stat.S_ISREG(st.st_mode):
        skipped.append(Skipped(rel, "not a regular file"))
    elif st.st_size == 0:
        skipped.append(Skipped(rel, "zero-byte file"))
    else:
        entries.append(entry(rel))


def list_images(root: str | Path, only: Collection[str] | None = None) -> tuple[list[ImageEntry], list[Skipped], str]:
    """List the images under ``root`` (with ``only``: just those, posix paths relative to ``root``).

    Returns ``(entries, skipped, layout)``: entries sorted by relpath, the
    image files left out already at listing time (zero-byte, broken symlink,
    symlink loop, name not UTF-8, not a regular file, unreadable folder), and
    ``"classes"`` when any sub-folder holds images, else ``"flat"``.

    Directory symlinks are followed unless they lead back into one of their
    own ancestors (listed as ``"symlink loop"``). Hidden files and folders
    (name starting with ``.``) and files without an image extension are
    ignored. Raises :class:`DoraError` if ``root`` is not a folder or holds no
    usable image.

    With ``only`` the folder is not walked: each given file is checked the
    same way (a missing one, or one without an image extension, is skipped).
    """
    root_s = os.fspath(root)
    try:
        st = os.stat(root_s)
    except FileNotFoundError:
        raise DoraError(f"dataset folder not found: {root_s}") from None
    except OSError as e:
        raise DoraError(f"cannot open the dataset folder {root_s}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DoraError(f"not a folder: {root_s} (DATASET must be a folder of images)")

    if only is not None:
        entries, skipped = _list_given(root_s, only)
    else:
        entries, skipped = _walk(root_s, st)
    if not entries:
        if skipped:
            first = skipped[0]
            raise DoraError(
                f"no readable images in {root_s}: all {len(skipped)} image files were skipped "
                f"(e.g. {first.relpath}: {first.reason})"
            )
        raise DoraError(
            f"no images found in {root_s}: expected .jpg/.png/... files in {root_s} "
            "or in its class sub-folders"
        )
    layout = "classes" if any(e.label is not None for e in entries) else "flat"
    return entries, skipped, layout


def _entry(relpath: str) -> ImageEntry:
    label = relpath.split("/", 1)[0] if "/" in relpath else None
    return ImageEntry(relpath, label)


def _list_given(root_s: str, relpaths: Collection[str]) -> tuple[list[ImageEntry], list[Skipped]]:
    """The given files of ``root_s``, checked as the walk checks them; sorted."""
    entries: list[ImageEntry] = []
    skipped: list[Skipped] = []
    for rel in sorted(set(relpaths)):
        path = PurePosixPath(rel)
        if not rel or path.is_absolute() or ".." in path.parts or str(path) != rel:
            raise DoraError(f"{rel!r} is not a path relative to the dataset folder {root_s}")
        if not _is_image_name(os.fsencode(rel)):
            skipped.append(Skipped(rel, "not an image file (extension)"))
            continue
        try:
            st = os.stat(os.path.join(root_s, rel))  # follows symlinks
        except OSError as e:
            if e.errno == errno.ENOENT:
                reason = "broken symlink" if os.path.islink(os.path.join(root_s, rel)) else "file not found"
            elif e.errno == errno.ELOOP:
                reason = "symlink loop"
            else:
                reason = _os_reason(e)
            skipped.append(Skipped(rel, reason))
            continue
        _sort_file(rel, st, _entry, entries, skipped)
    return entries, skipped


def _walk(root_s: str, st: os.stat_result) -> tuple[list[ImageEntry], list[Skipped]]:
    """Every image under ``root_s`` (whose stat is ``st``); sorted."""
    entries: list[ImageEntry] = []
    skipped: list[Skipped] = []
    root_b = os.fsencode(root_s)
    # Each item: (relative folder path as bytes, ending in b"/" unless root;
    # the (dev, inode) of the folders from root down to this one).
    stack: list[tuple[bytes, frozenset]] = [(b"", frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        rel_dir, ancestors = stack.pop()
        try:
            with os.scandir(os.path.join(root_b, rel_dir) if rel_dir else root_b) as it:
                children = list(it)
        except OSError as e:
            if not rel_dir:
                raise DoraError(f"cannot read the dataset folder {root_s}: {e.strerror}") from None
            skipped.append(Skipped(_show(rel_dir.rstrip(b"/")), _os_reason(e, "folder")))
            continue
        for child in children:
            name = child.name
            if name.startswith(b"."):
                continue
            rel = rel_dir + name
            is_image = _is_image_name(name)
            try:
                st = child.stat()  # follows symlinks
            except OSError as e:
                if child.is_symlink() and e.errno == errno.ENOENT:
                    reason = "broken symlink"
                elif e.errno == errno.ELOOP:
                    reason = "symlink loop"
                else:
                    reason = _os_reason(e)
                if is_image:
                    skipped.append(Skipped(_show(rel), reason))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    skipped.append(Skipped(_show(rel), "symlink loop"))
                else:
                    stack.append((rel + b"/", ancestors | {key}))
                continue
            if not is_image:
                continue
            try:
                relpath = rel.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(Skipped(_show(rel), "file name is not valid UTF-8"))
                continue
            _sort_file(relpath, st, _entry, entries, skipped)

    entries.sort(key=lambda e: e.relpath)
    skipped.sort(key=lambda s: s.relpath)
    return entries, skipped
