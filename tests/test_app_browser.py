"""The FiftyOne App serves the flagged view, and a real (headless) browser renders it."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dora_clean.review import FLAGGED_VIEW, launch_review, review_url, to_fiftyone
from fakerun import make_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query, "variables": variables}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def _launch(tmp_path):
    run = make_run(tmp_path, n_images=16, image_size=48)
    ds = to_fiftyone(run.run_dir, progress=False)
    return run, ds, launch_review(run.run_dir, port=_free_port(), wait=False)


@pytest.fixture
def session(tmp_path):
    run, ds, session = _launch(tmp_path)
    yield run, ds, session
    session.close()


@pytest.fixture
def unreachable_session(tmp_path, monkeypatch):
    """The review where the session's client never reaches the App, so the App has no state from it: as on
    a loaded machine, where the App starts slowly and the client waits 10 s before it tries again (CI, stop 38)."""
    import fiftyone.core.session.client as client

    def no_app(url: str) -> None:
        raise ConnectionError(f"{url}: not up yet")

    monkeypatch.setattr(client, "_ping", no_app)
    run, ds, session = _launch(tmp_path)
    yield run, ds, session
    session.close()


def _render(url: str, ds, tiles: int, tmp_path, budgets=(20000, 60000, 120000)) -> tuple[str, Path]:
    """A real (headless) browser's DOM of the page at ``url``, and its screenshot. On a loaded machine the
    App can take longer than the first budget to render ``tiles`` sample tiles of ``ds``: it waits longer."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    shot = tmp_path / "app.png"
    for budget in budgets:
        p = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--virtual-time-budget={budget}",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--dump-dom", f"--screenshot={shot}", url],
            capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        dom = p.stdout
        if ds.name in dom and dom.count('canvas-loaded="true"') == tiles:
            break
    return dom, shot


def test_app_serves_and_renders_the_flagged_view(session, tmp_path):
    run, ds, session = session
    port = session.server_port
    flagged = ds.load_saved_view(FLAGGED_VIEW)
    assert session.url == f"http://127.0.0.1:{port}/"
    url = review_url(session, flagged)
    assert url == f"http://127.0.0.1:{port}/datasets/{ds.name}?view=flagged"
    assert session.view is not None and len(session.view) == len(flagged) == len(run.flagged)

    # the App's own API answers with the flagged samples, most suspicious first
    answer = _graphql(port, """query ($dataset: String!, $view: BSONArray!) {
        samples(dataset: $dataset, view: $view, first: 100) { ... on SampleItemStrConnection {
            edges { node { ... on ImageSample { id sample } } } } } }""",
                      {"dataset": ds.name, "view": flagged._serialize()})
    assert not answer.get("errors"), answer
    nodes = [e["node"] for e in answer["data"]["samples"]["edges"]]
    assert [n["id"] for n in nodes] == flagged.values("id")
    assert all(n["sample"]["dora_flagged"] and n["sample"]["dora_heatmap"] for n in nodes)

    # a real browser loads the review address and renders one sample tile per flagged image
    dom, shot = _render(url, ds, len(run.flagged), tmp_path)
    assert ds.name in dom
    tiles = dom.count('canvas-loaded="true"')  # the App's sample grid draws each tile in a canvas
    assert tiles == len(run.flagged), f"{tiles} tiles rendered; screenshot: {shot}"

    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (900, 1400)
    assert img.std() > 20, f"the screenshot looks blank: {shot}"
    # the tiles show the (noisy) images: the grid area varies far more than a flat page
    grid = img[150:650, 300:1380]
    assert grid.std() > 40, f"no sample grid in the screenshot: {shot}"


def test_the_review_address_opens_the_flagged_view_before_the_session_reaches_the_app(unreachable_session, tmp_path):
    run, ds, session = unreachable_session
    dom, _ = _render(session.url, ds, len(run.flagged), tmp_path, budgets=(20000,))
    assert ds.name not in dom  # the bare address: an App without the session's state shows no dataset
    dom, shot = _render(review_url(session, ds.load_saved_view(FLAGGED_VIEW)), ds, len(run.flagged), tmp_path)
    assert ds.name in dom
    tiles = dom.count('canvas-loaded="true"')
    assert tiles == len(run.flagged), f"{tiles} tiles rendered; screenshot: {shot}"
