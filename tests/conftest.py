"""Test isolation: a FiftyOne database and a dora-clean cache of this session's own.

FiftyOne reads its settings when first imported, so the environment is set
here, before any test module imports it. The database is dropped at the end.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

_TMP = tempfile.mkdtemp(prefix="dora-clean-tests-")
os.environ["FIFTYONE_DATABASE_NAME"] = f"dora_clean_test_{uuid.uuid4().hex[:12]}"
os.environ.setdefault("FIFTYONE_DATABASE_DIR", os.path.join(_TMP, "fiftyone-db"))
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["DORA_CLEAN_CACHE"] = os.path.join(_TMP, "cache")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "fiftyone" in sys.modules:
        import fiftyone.core.odm.database as fodb

        if fodb._client is not None:  # the tests connected: drop their database, stop mongod
            from dora_clean.review.database import stop_database

            try:
                stop_database(os.environ["FIFTYONE_DATABASE_NAME"])
            except Exception as e:  # never hide the tests' own result
                print(f"could not drop the test database or stop mongod: {e}")
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh dora-clean cache for one test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("DORA_CLEAN_CACHE", str(d))
    return d
