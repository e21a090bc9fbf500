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


def test_temps_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from dora_clean.atomic import remove_stale_temps

    writer = (
        "import sys, time\n"
        "from dora_clean.atomic import atomic_save, atomic_write\n"
        "d = sys.argv[1]\n"
        "with atomic_write(d + '/scores.csv') as f:\n"
        "    f.write('half'); f.flush()\n"
        "    atomic_save(d + '/heat.npy', lambda p: (open(p, 'w').write('x'), time.sleep(60)))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)])
    deadline = time.time() + 60
    while len(list(tmp_path.glob(".*tmp*"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob(".*tmp*"))) == 2
    assert remove_stale_temps(tmp_path) == []  # the writer still runs: its files stay
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with atomic_write(tmp_path / "mine.txt") as f:  # a live writer's temp file is never touched
        f.write("x")
        live = list(tmp_path.glob(".mine.txt.*"))
        assert len(remove_stale_temps(tmp_path)) == 2
        assert list(tmp_path.glob(".mine.txt.*")) == live
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
