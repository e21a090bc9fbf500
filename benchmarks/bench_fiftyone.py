"""The FiftyOne import and the review's flagged view at size: time and peak memory.

Builds a fake run directory of N samples (``tests/fakerun.py``'s ``make_run``
without image files: the import reads only the run directory), then, in a
fresh process per N: imports it with ``to_fiftyone`` (first import, then a
re-run that updates the scores in place), and opens the flagged saved view as
``dora-clean review`` does (``load_dataset``, ``load_saved_view``, its count
and its first page; then ``launch_review`` itself, which also starts the App
server, without waiting). Prints seconds and the
peak RSS of this process (``resource.getrusage``) and of the mongod it started.

    python benchmarks/bench_fiftyone.py                      # N = 10,000 and 100,000
    python benchmarks/bench_fiftyone.py --sizes 1000 --findings 1

Uses FiftyOne's bundled mongod with a throwaway database name and database
folder (nothing of another FiftyOne user on the machine is touched); the
database is dropped and the mongod stopped at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _mb(kb: int) -> float:
    return kb * (1 if sys.platform == "darwin" else 1024) / 2**20


def _mongod_peak_mb() -> float | None:
    """Peak RSS (VmHWM) of the mongod that serves this run's database folder (Linux), or None."""
    db_dir = os.environ.get("FIFTYONE_DATABASE_DIR", "")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if not cmd[0].endswith(b"mongod") or not any(db_dir.encode() in a for a in cmd):
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, IndexError):
            continue
    return None


def one(run_dir: str) -> None:
    """In a child process: import, re-import and open the flagged view; print JSON."""
    t0 = time.perf_counter()
    from dora_clean.review import launch_review, to_fiftyone
    from dora_clean.review.database import import_fiftyone, stop_database
    from dora_clean.review.dataset import FLAGGED_VIEW

    fo = import_fiftyone(run_dir)
    out = {"connect_s": time.perf_counter() - t0, "rss_after_connect_mb": _mb(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
    try:
        t = time.perf_counter()
        ds = to_fiftyone(run_dir, progress=False)
        out["import_s"] = time.perf_counter() - t
        out["n_samples"] = len(ds)
        out["rss_after_import_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        t = time.perf_counter()
        to_fiftyone(run_dir, progress=False)
        out["reimport_s"] = time.perf_counter() - t
        out["rss_after_reimport_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        name = ds.name
        del ds
        t = time.perf_counter()  # what launch_review does before it starts the App
        ds = fo.load_dataset(name)
        view = ds.load_saved_view(FLAGGED_VIEW)
        n_flagged = len(view)
        first_page = [s.filepath for s in view.limit(20)]
        out["open_flagged_view_s"] = time.perf_counter() - t
        out["n_flagged"] = n_flagged
        assert len(first_page) == min(20, n_flagged)
        del ds, view
        t = time.perf_counter()  # and the whole of `dora-clean review`: the App server started on that view
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with contextlib.redirect_stdout(io.StringIO()):
            session = launch_review(run_dir, port=port, wait=False)
        out["launch_review_s"] = time.perf_counter() - t
        session.close()
        out["rss_peak_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        out["mongod_peak_mb"] = _mongod_peak_mb()
        fo.delete_dataset(name)
    finally:
        stop_database(os.environ["FIFTYONE_DATABASE_NAME"])
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--findings", type=int, nargs="+", default=[1, 3],
                    help="findings in the run (each a score field, a tag and a view): one row each")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one)
        return
    sys.path.insert(0, str(REPO))
    from tests.fakerun import make_run

    with tempfile.TemporaryDirectory(prefix="dora-bench-fo-") as tmp:
        env = dict(os.environ, FIFTYONE_DATABASE_NAME=f"dora_bench_{uuid.uuid4().hex[:12]}",
                   FIFTYONE_DATABASE_DIR=os.path.join(tmp, "db"), FIFTYONE_DATABASE_VALIDATION="false",
                   FIFTYONE_DO_NOT_TRACK="true")
        env.pop("FIFTYONE_DATABASE_URI", None)
        print("| samples | findings | flagged | import (s) | re-import (s) | open flagged view (s) | launch_review (s) "
              "| peak RSS (MB) | RSS after connecting (MB) | mongod peak (MB) |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n, k in ((n, k) for n in args.sizes for k in args.findings):
            fake = make_run(Path(tmp) / f"n{n}-{k}", n_images=n, images=False, findings=(True,) * k)
            r = subprocess.run([sys.executable, __file__, "--one", str(fake.run_dir)], env=env,
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"N={n} failed:\n{r.stderr[-3000:]}")
            m = json.loads(r.stdout.strip().splitlines()[-1])
            mongod = f"{m['mongod_peak_mb']:.0f}" if m["mongod_peak_mb"] else "?"
            print(f"| {m['n_samples']:,} | {k} | {m['n_flagged']:,} | {m['import_s']:.1f} | {m['reimport_s']:.1f} "
                  f"| {m['open_flagged_view_s']:.2f} | {m['launch_review_s']:.1f} | {m['rss_peak_mb']:.0f} "
                  f"| {m['rss_after_connect_mb']:.0f} "
                  f"| {mongod} |", flush=True)


if __name__ == "__main__":
    main()
