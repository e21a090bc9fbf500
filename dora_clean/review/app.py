"""The FiftyOne App on a run's flagged images, served for review (headless too)."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import DoraError
from ..rundir import RunDir
from .database import import_fiftyone
from .dataset import FLAGGED_VIEW, KEEP_TAG, REMOVE_TAG, to_fiftyone

__all__ = ["launch_review", "review_url"]


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


def review_url(session, view) -> str:
    """The App's address of ``view``'s dataset and saved view (the App opens them itself).

    The bare session URL shows what the Python session last sent; on a loaded
    machine that can arrive 20 s after the App is up, and a browser that is
    quicker sees no dataset. This address names the dataset and saved view.
    """
    import fiftyone as fo
    from fiftyone.core.utils import to_slug

    parts = urlsplit(session.url)
    query = parse_qsl(parts.query)
    if isinstance(view, fo.DatasetView) and view.name:
        query.append(("view", to_slug(view.name)))
    path = f"{parts.path.rstrip('/')}/datasets/{quote(view._dataset.name, safe='')}"
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def launch_review(run_dir: str | os.PathLike, address: str = "127.0.0.1", port: int = 5151,
                  wait: bool = True):
    """Open the FiftyOne App on the run's flagged view; returns the session.

    Serves the App at http://ADDRESS:PORT (remote: no browser is opened, so it
    works headless; forward the port over ssh to review from elsewhere). Tag
    samples ``remove`` or ``keep`` in the App, then run ``dora-clean export``.
    With ``wait`` it blocks until Ctrl-C, then closes the App.
    """
    run_dir = Path(run_dir).resolve()
    summary = RunDir(run_dir).read_summary()
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
    print(f"Review {len(view)} flagged image(s) of {ds.name!r} at {review_url(session, view)}: tag them "
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
