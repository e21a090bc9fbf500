"""The console script: help, one-line errors with exit codes, and an end-to-end scan + export."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dora_clean.demo.shapes import ScanSetSpec, write_scan_set

EXE = shutil.which("dora-clean") or str(Path(sys.executable).with_name("dora-clean"))
FAST = ["--signals", "2", "--steps", "32", "--workers", "0", "--quiet"]


def cli(*args, cwd=None, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=e, timeout=600)


def test_help_for_every_command():
    from click.testing import CliRunner

    from dora_clean.cli import main

    top = cli("--help")  # the console script itself
    assert top.returncode == 0 and "dora-clean demo" in top.stdout
    for cmd in ("scan", "demo", "review", "export"):  # each command's help, in process
        r = CliRunner().invoke(main, [cmd, "--help"], prog_name="dora-clean")
        assert r.exit_code == 0, r.output
        assert "Usage: dora-clean " + cmd in r.output
    assert "--labels" in CliRunner().invoke(main, ["scan", "--help"], prog_name="dora-clean").output


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "data"
    write_scan_set(root, ScanSetSpec(48, artifact_fraction=0.25, seed=5))
    return root


@pytest.mark.parametrize("args, message", [
    (["scan", "{missing}"], "dataset folder .* does not exist"),
    (["scan", "{data}", "--layer", "layer9"], "the model has no layer 'layer9'; nearest: layer"),
    (["scan", "{data}", "--model", "resnet81"], "unknown model 'resnet81'"),
    (["scan", "{data}", "--neurons", "0,500"], "neuron index 500 is out of range: the layer has 64 neurons"),
    (["scan", "{data}", "--labels", "{missing}"], "labels file .* does not exist"),
    (["scan", "{data}", "--device", "cuda:7"], "cuda"),
    (["scan", "{data}", "--model", "{bigkernel}:Net", "--image-size", "8"], "does not take 8x8 images|does not run"),
    (["export", "{data}", "--to", "{tmp}/x"], "summary.json|not a run directory"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(args, message, data, tmp_path):
    (tmp_path / "bigkernel.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 4, 9), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())\n"
    )
    fill = {"missing": tmp_path / "missing", "data": data, "tmp": tmp_path, "bigkernel": tmp_path / "bigkernel.py"}
    r = cli(*[a.format(**fill) for a in args], *(FAST if args[0] == "scan" else []), "--no-fiftyone"
            if args[0] == "scan" else "--dry-run", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(data, tmp_path):
    r = cli("--debug", "scan", data, "--layer", "nope", "--no-fiftyone", *FAST, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr


@pytest.mark.slow
def test_scan_then_export_through_the_console_script(data, tmp_path):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.rglob("*") if p.is_file()}
    run = tmp_path / "run"
    r = cli("scan", data, "--labels", data / "labels.csv", "--out", run, "--no-fiftyone", "--representation", "raw",
            "--no-class-folders", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "infected neurons:" in r.stdout and f"dora-clean export {run}" in r.stdout
    assert (run / "summary.json").is_file() and (run / "report.html").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["representation"] == "raw" and summary["class_folders"] is False and summary["class_content"] == {}
    assert summary["class_lambda"] is None
    # without class folders nothing is trusted: the default export keeps every image, and says why
    assert summary["artifact_found"] is False and "no class folders" in " ".join(summary["confidence"]["reasons"])
    import csv

    rows = list(csv.DictReader(open(run / "scores.csv")))
    everything = sorted(r["filepath"] for r in rows)
    for policy, expected in (("confident", everything), ("flagged", [r["filepath"] for r in rows if r["flagged"] == "0"])):
        clean = tmp_path / f"clean-{policy}"
        r = cli("export", run, "--to", clean, "--policy", policy, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        kept = sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png"))
        assert kept == sorted(expected) and (clean / "removed.csv").is_file()
    assert any(r["flagged"] == "1" for r in rows)  # the review's flags are there, just not trusted
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_review_command_serves_the_app_until_interrupted(tmp_path):
    import re
    import signal
    import socket
    import time
    import urllib.request

    from fakerun import make_run

    fake = make_run(tmp_path, n_images=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([EXE, "review", str(fake.run_dir), "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        url, lines, t = None, [], time.time()
        while url is None and time.time() - t < 180:
            line = p.stdout.readline()
            if not line and p.poll() is not None:
                break
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url == f"http://127.0.0.1:{port}/", "".join(lines)
        assert urllib.request.urlopen(url, timeout=30).status == 200
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=60)[0]  # read on while it stops: a full pipe would block its last words
        assert p.returncode in (0, 130), "".join(lines) + rest
    finally:
        if p.poll() is None:
            p.kill()


def test_demo_dataset_is_written_once_and_reused(tmp_path):
    from dora_clean.demo import prepare_demo_dataset
    from dora_clean.errors import DoraError

    data = prepare_demo_dataset(tmp_path, n_images=40)
    assert len(list(data.rglob("*.png"))) == 40 and (data / "labels.csv").is_file()
    stamp = (data / "labels.csv").stat().st_mtime_ns
    assert prepare_demo_dataset(tmp_path, n_images=40) == data
    assert (data / "labels.csv").stat().st_mtime_ns == stamp
    assert len(list(prepare_demo_dataset(tmp_path, n_images=24).rglob("*.png"))) == 24
    (tmp_path / "other" / "dataset").mkdir(parents=True)
    (tmp_path / "other" / "dataset" / "mine.png").write_bytes(b"x")
    with pytest.raises(DoraError, match="not written by the demo"):
        prepare_demo_dataset(tmp_path / "other", n_images=24)


def test_the_summary_warns_when_nearly_half_the_images_are_flagged(capsys, tmp_path):
    from dora_clean.cli import _print_summary

    base = {"infected_neurons": [3], "n_neurons": 8, "layer": "layer3", "n_images": 100, "n_skipped": 0}
    for flagging, n_flagged, warned in (("otsu", 48, True), ("otsu", 20, False), ("top", 48, False)):
        _print_summary(dict(base, flagging=flagging, n_flagged=n_flagged), tmp_path, quiet=False)
        err = capsys.readouterr().err
        assert ("48% of the images are flagged" in err) == warned, (flagging, n_flagged, err)


def test_the_summary_names_the_seed_and_what_was_set_aside_as_class_content(capsys, tmp_path):
    from dora_clean.cli import _print_summary

    base = {"infected_neurons": [22, 2, 49], "n_neurons": 64, "layer": "layer3", "n_images": 1000, "n_skipped": 0,
            "n_flagged": 51, "flagging": "otsu", "combined_neurons": [2, 48, 42], "combined_seed": "skewed:48",
            "class_content": {"agreement": 0.86, "skewed:7": 0.99}, "class_lambda": 0.0}
    _print_summary(base, tmp_path, quiet=False)
    out = capsys.readouterr()
    assert "3 neurons grown from neuron 48, one of the layer's most skewed" in out.out
    assert "set aside: 2 candidate score(s)" in out.out and "seeds agreement, skewed:7" in out.out
    assert "warning" not in out.err
    _print_summary(dict(base, combined_seed="agreement", class_lambda=0.92), tmp_path, quiet=False)
    out = capsys.readouterr()
    assert "reproduce the infected neurons' flagged set" in out.out
    assert "every candidate score flags mostly whole classes (the one used: lambda 0.92)" in out.err


def test_the_summary_says_when_the_scan_scored_again_within_the_class_folders(capsys, tmp_path):
    from dora_clean.cli import _print_summary

    base = {"infected_neurons": [3], "n_neurons": 8, "layer": "layer3", "n_images": 100, "n_skipped": 0,
            "n_flagged": 10, "flagging": "otsu"}
    for centred in (True, False):
        _print_summary(dict(base, class_centred=centred), tmp_path, quiet=False)
        assert ("scored again within the class folders" in capsys.readouterr().out) == centred
