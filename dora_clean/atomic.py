"""Atomic file writes: a reader never sees a half-written file."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_save", "atomic_write", "locked", "remove_stale_temps"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old
    content; a kill leaves the temporary file, which
    :func:`remove_stale_temps` clears on the next run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save(path: str | os.PathLike, save_fn) -> None:
    """Call ``save_fn(tmp_path)`` then rename the result over ``path``.

    For writers that want a file name (``np.save``, ``PIL.Image.save``,
    ``matplotlib``'s ``savefig``) rather than a file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.pid{os.getpid()}.tmp{path.suffix}")
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers left in ``directory``.

    Temporary names carry the writer's process id (``.NAME.pidPID.*tmp*``);
    a file whose process is gone is removed, one whose process still runs is
    left alone. Returns the removed paths.
    """
    removed = []
    for tmp in Path(directory).glob(".*.pid*.*tmp*"):
        m = re.search(r"\.pid(\d+)\.", tmp.name)
        if m is None or _alive(int(m.group(1))) or not tmp.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a directory (a ``.lock`` file in it; other processes wait).

    Two runs that share a cache entry (two scans of one dataset at once) take
    turns: the second finds the first one's finished work and reuses it. So do
    two that start FiftyOne's own database at once.
    """
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
