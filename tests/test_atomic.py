"""Atomic writes: all or nothing, with the usual file mode."""
from __future__ import annotations

import os
import stat

import pytest

from dora_clean.atomic import atomic_save, atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a.json"
    with atomic_write(path) as f:
        f.write("first")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_atomic_save(tmp_path):
    atomic_save(tmp_path / "x.txt", lambda p: p.write_text("ok"))
    assert (tmp_path / "x.txt").read_text() == "ok"
