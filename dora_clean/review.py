"""Step 7, review: the run's scores in FiftyOne, the s-AMS atlas, and the App.

FiftyOne is imported inside the functions, so the rest of the package does
not pay for its import (seconds) or need its database.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import signal
import socket
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_write, locked
from .errors import DoraError

if TYPE_CHECKING:
    import fiftyone as fo

FLAGGED_TAG = "dora:flagged"
REMOVE_TAG = "remove"
KEEP_TAG = "keep"
FLAGGED_VIEW = "flagged"
ATLAS_BRAIN_KEY = "atlas"
# How long to wait for a MongoDB named by FIFTYONE_DATABASE_URI (pymongo waits
# 30 s by default); a URI that sets serverSelectionTimeoutMS itself wins.
DB_TIMEOUT_MS = 5000


# --- the run directory -------------------------------------------------------


@dataclass
class Scores:
    """scores.csv as columns; row i is also row i of heatmaps.npy."""

    filepaths: list[str]  # posix, relative to the dataset
    labels: list[str]  # class folder names ("" in a flat layout)
    score: np.ndarray  # float
    neurons: dict[int, np.ndarray]  # infected neuron -> its score per image
    flagged: np.ndarray  # bool
    artifact: np.ndarray | None  # bool, only when labels were given


def read_summary(run_dir: str | os.PathLike) -> dict:
    """The run's summary.json; a DoraError when ``run_dir`` is not a run."""
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DoraError(f"{run_dir} is not a dora-clean run directory (no summary.json)") from None
    except (OSError, ValueError) as e:
        raise DoraError(f"cannot read {path}: {e}") from None


def update_summary(run_dir: str | os.PathLike, **values: Any) -> dict:
    """Set keys of summary.json (read, update, atomic write); returns the new summary."""
    summary = read_summary(run_dir)
    summary.update(values)
    with atomic_write(Path(run_dir) / "summary.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary


def read_scores(run_dir: str | os.PathLike) -> Scores:
    """The run's scores.csv (see DESIGN.md, "The run directory")."""
    path = Path(run_dir) / "scores.csv"
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise DoraError(f"{run_dir} has no scores.csv: run `dora-clean scan` first") from None
    missing = {"filepath", "label", "score", "flagged"} - set(columns)
    if missing:
        raise DoraError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
    try:
        return Scores(
            filepaths=[r["filepath"] for r in rows],
            labels=[r["label"] or "" for r in rows],
            score=np.array([float(r["score"]) for r in rows], dtype=float),
            neurons={
                int(c[len("neuron_"):]): np.array([float(r[c]) for r in rows], dtype=float)
                for c in columns
                if re.fullmatch(r"neuron_\d+", c)
            },
            flagged=np.array([int(r["flagged"]) == 1 for r in rows], dtype=bool),
            artifact=(
                np.array([int(r["artifact"]) == 1 for r in rows], dtype=bool)
                if "artifact" in columns
                else None
            ),
        )
    except (TypeError, ValueError) as e:
        raise DoraError(f"{path} has a bad value: {e}") from None


def dataset_root(summary: dict, run_dir: str | os.PathLike) -> Path:
    """The scanned dataset's folder, from summary.json."""
    if not summary.get("dataset"):
        raise DoraError(f"{Path(run_dir) / 'summary.json'} does not name the scanned dataset")
    return Path(summary["dataset"])


def sample_filepaths(root: str | os.PathLike, relpaths: list[str]) -> list[str]:
    """The absolute filepaths of scores.csv's relative ones (as in the FiftyOne dataset)."""
    return [os.path.normpath(os.path.join(root, rel)) for rel in relpaths]


def default_name(run_dir: str | os.PathLike, kind: str = "dora-clean") -> str:
    """A dataset name that is stable for one run directory."""
    path = Path(run_dir).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{kind}-{path.name}-{digest}"


# --- FiftyOne and its database -----------------------------------------------


def _on_disk(run_dir: str | os.PathLike | None) -> str:
    return "" if run_dir is None else f"; the scan's results are on disk in {run_dir}"


def _db_error(run_dir: str | os.PathLike | None, e: BaseException, otherwise: str) -> DoraError:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return DoraError(
        f"FiftyOne could not reach its database ({type(e).__name__}: {why}){_on_disk(run_dir)}. "
        "To fix: set FIFTYONE_DATABASE_URI "
        "to a running MongoDB, or on Debian/Ubuntu `pip install 'dora-clean[mongod-ubuntu2204]'`, "
        f"or {otherwise}"
    )


def _check_uri(uri: str) -> None:
    """Fail within DB_TIMEOUT_MS when the MongoDB at ``uri`` does not answer."""
    import pymongo
    from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

    timeout = {} if "serverselectiontimeoutms" in uri.lower() else {
        "serverSelectionTimeoutMS": DB_TIMEOUT_MS}
    try:
        client = pymongo.MongoClient(uri, connect=False, **timeout)
        seeds = client.topology_description.server_descriptions()
    except (PyMongoError, ValueError) as e:  # a malformed URI (its text may hold a password)
        raise ConnectionError(
            f"FIFTYONE_DATABASE_URI is not a valid MongoDB URI ({type(e).__name__})") from None
    hosts = ", ".join(f"{h}:{p}" for h, p in seeds) or "FIFTYONE_DATABASE_URI"
    try:
        client.admin.command("ping")
    except ServerSelectionTimeoutError:
        secs = client.options.server_selection_timeout
        raise ConnectionError(f"no MongoDB answered at {hosts} within {secs:g} s") from None
    finally:
        client.close()


def import_fiftyone(run_dir: str | os.PathLike | None, otherwise: str = "scan with --no-fiftyone"):
    """``import fiftyone`` and connect to its database, or raise a DoraError.

    ``run_dir``: the run whose results are safe on disk, for the error (None: no run);
    ``otherwise`` ends the error's list of fixes (what to do without FiftyOne).
    """
    try:
        import fiftyone as fo
        import fiftyone.core.odm as foo
    except ImportError as e:
        raise DoraError(f"cannot import fiftyone ({e}); `pip install fiftyone`{_on_disk(run_dir)}") from e
    try:
        if fo.config.database_uri:
            _check_uri(fo.config.database_uri)
            foo.get_db_conn()
        else:  # processes that start FiftyOne's own mongod at the same moment collide (all but one
            # fail after a minute, ServiceListenTimeout): one at a time, the later ones find it running
            with locked(fo.config.database_dir):
                foo.get_db_conn()
    except Exception as e:  # ConnectionError, FiftyOneConfigError, a mongod that will not start
        raise _db_error(run_dir, e, otherwise) from e
    return fo


def _open_dataset(fo, name: str, run_dir: Path) -> "fo.Dataset":
    """Load the dataset ``name`` if dora-clean made it, else create it (persistent)."""
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if "dora_clean_run" not in ds.info:
            raise DoraError(f"the FiftyOne dataset {name!r} exists and was not made by "
                            "dora-clean; choose another name")
    else:
        ds = fo.Dataset(name, persistent=True)
    ds.persistent = True
    ds.info["dora_clean_run"] = str(run_dir)
    ds.save()
    return ds


# --- the review dataset ------------------------------------------------------


def _sync_samples(fo, ds: "fo.Dataset", filepaths: list[str], progress: bool) -> None:
    """Make ``ds`` hold exactly one sample per filepath, keeping the samples it has."""
    have = ds.values(["filepath", "id"]) if len(ds) else ([], [])
    want = set(filepaths)
    stale = [i for fp, i in zip(*have) if fp not in want]
    if stale:
        ds.delete_samples(stale)
    seen = set(have[0])
    missing = [fp for fp in filepaths if fp not in seen]
    if missing:
        ds.add_samples([fo.Sample(filepath=fp) for fp in missing], progress=progress)


def _heatmap_range(maps: np.ndarray) -> list[float]:
    lo = min(0.0, float(maps.min())) if maps.size else 0.0
    hi = float(maps.max()) if maps.size else 1.0
    return [lo, hi if hi > lo else lo + 1.0]


def to_fiftyone(run_dir: str | os.PathLike, name: str | None = None,
                progress: bool = True) -> "fo.Dataset":
    """Create (or update) the run's persistent FiftyOne dataset; returns it.

    One sample per scores.csv row, with ``ground_truth`` (class folder, where
    the layout has classes), ``dora_score``, ``dora_neuron_<i>`` per infected
    neuron, ``dora_flagged`` and the ``dora:flagged`` tag, ``artifact`` (where
    labels were given) and ``dora_heatmap`` on the flagged images; and the
    saved view "flagged", most suspicious first. On a re-run the scores are
    replaced and every other tag (the user's ``remove``/``keep``) is kept.
    The name (default: derived from the run directory) goes into summary.json.
    """
    run_dir = Path(run_dir).resolve()
    summary = read_summary(run_dir)
    scores = read_scores(run_dir)
    root = dataset_root(summary, run_dir)
    fo = import_fiftyone(run_dir)
    from fiftyone import ViewField as F

    name = name or summary.get("fiftyone_dataset") or default_name(run_dir)
    filepaths = sample_filepaths(root, scores.filepaths)
    row_of = {fp: i for i, fp in enumerate(filepaths)}
    if len(row_of) != len(filepaths):
        raise DoraError(f"{run_dir / 'scores.csv'} lists a file twice")

    ds = _open_dataset(fo, name, run_dir)
    _sync_samples(fo, ds, filepaths, progress)
    ds_filepaths, ids = ds.values(["filepath", "id"])
    order = np.array([row_of[fp] for fp in ds_filepaths], dtype=int)

    def put(field: str, values) -> None:  # values in scores.csv order
        ds.set_values(field, dict(zip(ids, (values[i] for i in order))), key_field="id",
                      validate=False)

    if summary.get("layout", "classes") == "classes":
        put("ground_truth", [fo.Classification(label=lab) if lab else None
                             for lab in scores.labels])
    put("dora_score", scores.score.tolist())
    old = {f for f in ds.get_field_schema() if re.fullmatch(r"dora_neuron_\d+", f)}
    for n, values in scores.neurons.items():
        put(f"dora_neuron_{n}", values.tolist())
    for f in old - {f"dora_neuron_{n}" for n in scores.neurons}:
        ds.delete_sample_field(f)
    put("dora_flagged", scores.flagged.tolist())
    if scores.artifact is not None:
        put("artifact", scores.artifact.tolist())
    elif ds.has_sample_field("artifact"):
        ds.delete_sample_field("artifact")

    ds.untag_samples(FLAGGED_TAG)
    ds.match(F("dora_flagged") == True).tag_samples(FLAGGED_TAG)  # noqa: E712

    if ds.has_sample_field("dora_heatmap"):
        ds.clear_sample_field("dora_heatmap")
    heatmaps = run_dir / "heatmaps.npy"
    if heatmaps.exists():
        maps = np.load(heatmaps, mmap_mode="r")
        if maps.shape[0] != len(filepaths):
            raise DoraError(f"{heatmaps} has {maps.shape[0]} rows, scores.csv {len(filepaths)}")
        rows = np.flatnonzero(scores.flagged)
        # The maps stay at the layer's resolution (e.g. 8x8: 256 bytes each); the App
        # stretches them over the image. One value range for all, so they compare.
        flagged_maps = np.asarray(maps[rows], dtype=np.float32)
        value_range = _heatmap_range(flagged_maps)
        id_of = {fp: i for fp, i in zip(ds_filepaths, ids)}
        if len(rows):
            ds.set_values(
                "dora_heatmap",
                {id_of[filepaths[r]]: fo.Heatmap(map=m, range=value_range)
                 for r, m in zip(rows, flagged_maps)},
                key_field="id",
            )

    view = ds.match(F("dora_flagged") == True).sort_by("dora_score", reverse=True)  # noqa: E712
    ds.save_view(FLAGGED_VIEW, view, overwrite=True,
                 description="flagged by dora-clean, most suspicious first")
    if ds.app_config.active_fields is None:  # what the App shows at first; the user may change it
        ds.app_config.active_fields = fo.ActiveFields(
            paths=["tags", "ground_truth", "dora_heatmap"])
    ds.info.update({
        "dora_clean_run": str(run_dir),
        "model": summary.get("model"),
        "layer": summary.get("layer"),
        "infected_neurons": summary.get("infected_neurons"),
        "heatmap_neuron": summary.get("heatmap_neuron"),
    })
    ds.save()
    update_summary(run_dir, fiftyone_dataset=name)
    return ds


# --- the s-AMS atlas ---------------------------------------------------------


def atlas_to_fiftyone(run_dir: str | os.PathLike, name: str | None = None) -> "fo.Dataset":
    """A persistent dataset of the s-AMS images with the representation atlas.

    Fields ``neuron``, ``outlier_score``, ``infected``, ``dead`` (and ``auc``
    where present); each image gets its neuron's atlas point in the brain run
    "atlas" (``fob.compute_visualization`` with the given points). The dataset
    is rebuilt on a re-run; its name goes into summary.json.
    """
    run_dir = Path(run_dir).resolve()
    summary = read_summary(run_dir)
    try:
        with open(run_dir / "neurons.csv", newline="") as f:
            neurons = {int(r["neuron"]): r for r in csv.DictReader(f)}
    except FileNotFoundError:
        raise DoraError(f"{run_dir} has no neurons.csv: run `dora-clean scan` first") from None
    sams = []
    for path in (run_dir / "sams").glob("*.png"):
        m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
        if m and int(m.group(1)) in neurons:
            sams.append((int(m.group(1)), int(m.group(2)), str(path)))
    sams.sort()
    if not sams:
        raise DoraError(f"{run_dir / 'sams'} holds no s-AMS images (NEURON_SAMPLE.png)")

    fo = import_fiftyone(run_dir)
    import fiftyone.brain as fob

    name = name or summary.get("atlas_dataset") or default_name(run_dir, "dora-clean-atlas")
    if fo.dataset_exists(name):
        old = fo.load_dataset(name)
        if "dora_clean_run" not in old.info:
            raise DoraError(f"the FiftyOne dataset {name!r} exists and was not made by "
                            "dora-clean; choose another name")
        old.delete()
    ds = fo.Dataset(name, persistent=True)
    ds.info["dora_clean_run"] = str(run_dir)

    def number(row: dict, key: str) -> float | None:
        return float(row[key]) if row.get(key) not in (None, "") else None

    samples = []
    for n, s, path in sams:
        row = neurons[n]
        fields = {
            "neuron": n,
            "sample_index": s,
            "outlier_score": number(row, "outlier_score"),
            "infected": row.get("infected") == "1",
            "dead": row.get("dead") == "1",
        }
        if "auc" in row:
            fields["auc"] = number(row, "auc")
        tags = ["infected"] if fields["infected"] else []
        samples.append(fo.Sample(filepath=path, tags=tags, **fields))
    ds.add_samples(samples, progress=False)
    ds.save()

    # add_samples keeps the order, and the points follow the sample order
    points = np.array([[float(neurons[n]["atlas_x"]), float(neurons[n]["atlas_y"])]
                       for n, _, _ in sams])
    fob.compute_visualization(ds, points=points, brain_key=ATLAS_BRAIN_KEY)
    update_summary(run_dir, atlas_dataset=name)
    return ds


# --- the App -------------------------------------------------------------------


def _check_port(address: str, port: int) -> None:
    """A DoraError now when another program holds the port (FiftyOne would wait 60 s).

    A FiftyOne App server already on the port is fine: FiftyOne connects to it.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            return
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise DoraError(f"cannot serve the App on {address}:{port}: {e.strerror}") from e
    host = f"[{address}]" if family == socket.AF_INET6 else address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/fiftyone", timeout=2) as r:
            if "version" in json.load(r):
                return
    except Exception:
        pass
    raise DoraError(f"port {port} on {address} is in use by another program; choose another --port")


def launch_review(run_dir: str | os.PathLike, address: str = "127.0.0.1", port: int = 5151,
                  wait: bool = True):
    """Open the FiftyOne App on the run's flagged view; returns the session.

    Serves the App at http://ADDRESS:PORT (remote: no browser is opened, so it
    works headless; forward the port over ssh to review from elsewhere). Tag
    samples ``remove`` or ``keep`` in the App, then run ``dora-clean export``.
    With ``wait`` it blocks until Ctrl-C, then closes the App.
    """
    run_dir = Path(run_dir).resolve()
    summary = read_summary(run_dir)
    _check_port(address, port)
    fo = import_fiftyone(run_dir)
    name = summary.get("fiftyone_dataset")
    if name and fo.dataset_exists(name):
        ds = fo.load_dataset(name)
    else:
        ds = to_fiftyone(run_dir)
    view = ds.load_saved_view(FLAGGED_VIEW) if ds.has_saved_view(FLAGGED_VIEW) else ds
    try:
        session = fo.launch_app(view, remote=True, address=address, port=port, auto=False)
    except Exception as e:
        raise DoraError(f"cannot start the FiftyOne App on {address}:{port} ({e}); "
                        "try another --port") from e
    print(f"Review {len(view)} flagged image(s) of {ds.name!r} at {session.url}: tag them "
          f"'{REMOVE_TAG}' or '{KEEP_TAG}', then run `dora-clean export {run_dir} --to DIR`.")
    if wait:
        print("Press Ctrl-C to stop the App.")
        if threading.current_thread() is threading.main_thread():
            # a job started in the background by a script inherits SIGINT ignored: Ctrl-C / kill -INT must still stop it
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            pass
        finally:
            session.close()
    return session
