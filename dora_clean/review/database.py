"""FiftyOne's database: import FiftyOne and connect, or say in one line what to do."""
from __future__ import annotations

import os

from ..atomic import locked
from ..errors import DoraError

__all__ = ["DB_TIMEOUT_MS", "import_fiftyone", "stop_database"]


# How long to wait for a MongoDB named by FIFTYONE_DATABASE_URI (pymongo waits
# 30 s by default); a URI that sets serverSelectionTimeoutMS itself wins.
DB_TIMEOUT_MS = 5000


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


def stop_database(name: str | None = None) -> None:
    """Drop the database ``name`` (when given), disconnect, and stop the mongod this process started.

    FiftyOne's exit hook, which queries the database, is unregistered first: with mongod gone it would
    wait 30 s. The mongod is stopped even where dropping the database fails (the error is raised after).
    """
    import atexit

    import fiftyone.core.odm.database as fodb

    try:
        if name is not None:
            fodb.get_db_conn().client.drop_database(name)
    finally:
        atexit.unregister(fodb._delete_non_persistent_datasets_if_allowed)
        fodb._disconnect()
        service, fodb._db_service = fodb._db_service, None
        if service is not None and service.child is not None:
            child = service.child
            service.stop()
            child.wait(timeout=30)
