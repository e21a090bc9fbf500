"""Step 5: stream every image of a dataset through the truncated model.

Per image the scan keeps the spatial mean and max of every neuron of the
layer (all neurons cost no more than a few) and the activation maps of the
neurons it is asked for (the infected ones, for heatmaps). Results go to disk
in chunks as they are made, so memory stays flat as the dataset grows, and a
scan that is killed resumes at the first chunk it had not finished.

The work directory (keyed by :func:`scan_key`: model, layer, files and
preprocessing) holds the activations of every neuron (``index.npy``,
``mean.npy``, ``max.npy``, ``bad.json``, ``done.json``) and, in
``maps/NEURONS/``, the maps of each set of neurons asked for. Asked for the
maps of another set (another infected set), a scan whose activations are done
computes only those maps, for the images that loaded.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_save, atomic_write, locked, remove_stale_temps
from ..device import autocast, resolve_device
from ..errors import DoraError
from .decode import BadImage, ImageBatch, ImageFiles, collate_images, decode_jpegs, load_image
from .files import ImageEntry, Skipped
from ..models.loading import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["scan_maps", "SCAN_LAYOUT", "ScanOptions", "ScanResult", "WORKER_NICE", "default_workers", "done_marker_path",
           "scan_images", "scan_key"]

#: Bumped when the work directory's layout changes (it keys the cache).
SCAN_LAYOUT = 2


@dataclass(frozen=True)
class ScanOptions:
    """How the scan reads the images and runs the model.

    Attributes:
        size: the images are resized to ``size`` x ``size``.
        mean, std: the normalisation the model expects of [0, 1] RGB pixels.
        device: where the model runs.
        batch_size: images per forward pass.
        workers: decoding processes (default: :func:`default_workers`).
        chunk_images: images per chunk file (the unit of resuming; not tied to ``batch_size``, so a scan
            resumed with another batch size finds its chunks where it left them).
        progress: show a progress bar.
        gpu_decode: decode ordinary JPEGs in one batch on ``device`` (nvjpeg)
            instead of in the workers (default: on CUDA); the pixels are the same.

    ``size``, ``mean`` and ``std`` change what the scan records (they key its
    cache, :func:`scan_key`); the rest only how fast it goes.
    """

    size: int
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    device: torch.device | str = "cpu"
    batch_size: int = 64
    workers: int | None = None
    chunk_images: int = 2048
    progress: bool = True
    gpu_decode: bool | None = None


@dataclass
class ScanResult:
    """What the scan recorded, in the order of ``entries`` (the images that loaded).

    Attributes:
        entries: the scanned images.
        mean_act: [N, C] spatial mean of every neuron (memory-mapped).
        max_act: [N, C] spatial max of every neuron (memory-mapped).
        maps: [N, m, h, w] float16 activation maps of the ``map_neurons``, one row per entry
            (memory-mapped; with no ``map_neurons``, an empty [N, 0, h, w]).
        map_neurons: the neurons whose maps were kept.
        skipped: the images that could not be read, with the reason.
    """

    entries: list[ImageEntry]
    mean_act: np.ndarray
    max_act: np.ndarray
    maps: np.ndarray
    map_neurons: list[int]
    skipped: list[Skipped]


def scan_key(weights_hash: str, layer: str, root: Path, entries: Sequence[ImageEntry], options: ScanOptions) -> str:
    """The cache key of a scan: model, layer, preprocessing, and every file's path, size and mtime.

    Not the neurons whose maps are kept: the maps of each set have a folder of
    their own in the scan's directory.
    """
    h = hashlib.sha256()
    h.update(json.dumps([f"scan-{SCAN_LAYOUT}", weights_hash, layer, str(root.resolve()), options.size,
                         list(options.mean), list(options.std)]).encode())
    for e in entries:
        try:
            st = os.stat(root / e.relpath)
            h.update(f"{e.relpath}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{e.relpath}\0missing\n".encode())
    return h.hexdigest()[:16]


def _chunk_path(directory: Path, c: int) -> Path:
    return directory / f"chunk_{c:06d}.npz"


def _maps_dir(work_dir: Path, neurons: Sequence[int]) -> Path:
    """The folder of one set of neurons' maps: ``maps/2-17-40`` (a hash for long sets)."""
    name = "-".join(str(int(n)) for n in neurons)
    if len(name) > 64:
        name = "h" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return work_dir / "maps" / name


@torch.no_grad()
def scan_images(
    layer_model: torch.nn.Module,
    root: str | Path,
    entries: Sequence[ImageEntry],
    work_dir: str | Path,
    options: ScanOptions,
    map_neurons: Sequence[int] = (),
    missing_maps: bool = True,
) -> ScanResult:
    """Scan ``entries`` of ``root``, keeping the maps of ``map_neurons``; the results go to ``work_dir``.

    ``work_dir`` holds ``chunk_*.npz`` files while the scan runs (a chunk file
    appears, atomically, only once complete) and the merged ``*.npy`` arrays
    at the end. Calling again with the same ``work_dir`` reuses what is there:
    with other ``map_neurons``, only their maps are computed, for every image
    (or, with ``missing_maps=False``, not at all: the result then has no maps,
    and :func:`scan_maps` makes those of the few images a caller shows).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job = _job(layer_model, Path(root), entries, work_dir, options, map_neurons)
    with locked(work_dir):
        remove_stale_temps(work_dir)
        if not done_marker_path(work_dir).is_file():
            todo = [c for c in range(job.n_chunks) if not _chunk_path(work_dir, c).is_file()]
            _scan_chunks(job, todo)
            _merge(job)
        if job.map_neurons and not done_marker_path(_maps_dir(work_dir, job.map_neurons)).is_file():
            if not missing_maps:
                return _load(work_dir, entries, [])
            _add_maps(job)
        return _load(work_dir, entries, job.map_neurons)


def scan_maps(
    layer_model: torch.nn.Module, root: str | Path, entries: Sequence[ImageEntry], options: ScanOptions,
    neurons: Sequence[int],
) -> np.ndarray:
    """The activation maps of ``neurons`` for a few images: float16 [len(entries), len(neurons), h, w].

    For the images a run shows (its flagged ones) where the scan's activations
    came from the cache without these neurons' maps. Nothing is cached; every
    entry must load, as it did in the scan.
    """
    with tempfile.TemporaryDirectory(prefix="dora-maps-") as tmp:
        job = _job(layer_model, Path(root), entries, Path(tmp), options, neurons)
        _map_chunks(job, list(range(job.n_chunks)))
        parts = []
        for c in range(job.n_chunks):
            with np.load(_chunk_path(job.out_dir, c)) as z:
                if len(z["bad_index"]):
                    i, reason = int(z["bad_index"][0]), str(z["bad_reason"][0])
                    raise DoraError(f"{entries[i].relpath} was scanned but cannot be read now ({reason}): "
                                    "it changed during the run; run again")
                parts.append(z["maps"])
    return np.concatenate(parts)


def _job(
    layer_model: torch.nn.Module, root: Path, entries: Sequence[ImageEntry], out_dir: Path, options: ScanOptions,
    map_neurons: Sequence[int],
) -> "_ScanJob":
    """A pass over all of ``entries``, on the device and with the workers ``options`` say."""
    device = resolve_device(options.device)
    return _ScanJob(
        layer_model=layer_model,
        root=root,
        entries=entries,
        out_dir=out_dir,
        options=options,
        map_neurons=[int(i) for i in map_neurons],
        rows=range(len(entries)),
        device=device,
        workers=default_workers(device) if options.workers is None else options.workers,
        gpu_decode=device.type == "cuda" if options.gpu_decode is None else options.gpu_decode,
    )


@dataclass
class _ScanJob:
    """One pass over images: which to read, what to record, where, and how."""

    layer_model: torch.nn.Module
    root: Path
    entries: Sequence[ImageEntry]
    out_dir: Path  # where the chunk files go
    options: ScanOptions
    map_neurons: list[int]  # whose activation maps to record
    rows: Sequence[int]  # the entries to read, in order
    device: torch.device
    workers: int
    gpu_decode: bool

    @property
    def chunk(self) -> int:
        """Images per chunk file."""
        return self.options.chunk_images

    @property
    def n_chunks(self) -> int:
        return (len(self.rows) + self.chunk - 1) // self.chunk


def _scan_chunks(job: _ScanJob, todo: list[int]) -> None:
    """Scan the chunks ``todo``: every neuron's spatial mean and max, and the maps of ``job.map_neurons``."""
    _forward_chunks(job, todo, stats=True)


def _map_chunks(job: _ScanJob, todo: list[int]) -> None:
    """Only the maps of ``job.map_neurons``, for the chunks ``todo`` of ``job.rows``."""
    _forward_chunks(job, todo, stats=False)


def _forward_chunks(job: _ScanJob, todo: list[int], stats: bool) -> None:
    """Run the chunks ``todo`` of ``job.rows`` through the model and write each chunk's file."""
    if not todo:
        return
    rows, chunk, batch_size, size = job.rows, job.chunk, job.options.batch_size, job.options.size
    device = job.device
    batches = [  # positions in rows
        list(range(a, min(a + batch_size, (c + 1) * chunk, len(rows))))
        for c in todo
        for a in range(c * chunk, min((c + 1) * chunk, len(rows)), batch_size)
    ]
    loader = torch.utils.data.DataLoader(
        ImageFiles(job.root, list(job.entries), size, jpeg_bytes=job.gpu_decode),
        batch_sampler=[[rows[p] for p in b] for b in batches],
        num_workers=job.workers,
        collate_fn=functools.partial(collate_images, size=size),
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if job.workers > 0 else None,
        worker_init_fn=_lower_priority,
    )
    mean_t = torch.tensor(job.options.mean, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(job.options.std, device=device).view(1, 3, 1, 1) * 255
    maps_idx = torch.tensor(job.map_neurons, dtype=torch.long, device=device)
    parts: dict[str, list] = {"index": [], "mean": [], "max": [], "maps": [], "bad": []}
    current = None
    total = sum(len(b) for b in batches)
    desc = "scan" if stats else "maps"
    with tqdm(total=total, desc=desc, unit="img", disable=not job.options.progress, leave=False) as bar:
        for batch, loaded in zip(batches, loader):
            c = batch[0] // chunk
            if current is not None and c != current:
                _write_chunk(job.out_dir, current, parts, job.map_neurons)
            current = c
            idx, x, bad = _on_device(loaded, job.root, job.entries, size, device)
            if len(idx):
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                x = (x.float() - mean_t) / std_t
                with autocast(device):
                    act = job.layer_model(x)
                act = act.float()
                parts["index"].append(idx.numpy())
                if stats:
                    parts["mean"].append(act.mean(dim=(2, 3)).cpu().numpy())
                    parts["max"].append(act.amax(dim=(2, 3)).cpu().numpy())
                parts["maps"].append(act[:, maps_idx].half().cpu().numpy())
            parts["bad"].extend(bad)
            bar.update(len(batch))
    if current is not None:
        _write_chunk(job.out_dir, current, parts, job.map_neurons)


def _on_device(
    b: ImageBatch, root: Path, entries: Sequence[ImageEntry], size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """The batch's images on ``device`` (decoding its JPEG bytes there), their indices, and the bad ones."""
    x = b.images.to(device, non_blocking=True)
    if not b.jpegs:
        return b.indices, x, b.bad
    bad = list(b.bad)
    try:
        jpegs = decode_jpegs(b.jpegs, size, device)
        jpeg_idx = b.jpeg_indices
    except RuntimeError:  # one bad file fails the batch: decode them one by one, on the CPU
        ok = []
        for i in b.jpeg_indices.tolist():
            try:
                ok.append((i, load_image(root / entries[i].relpath, size)))
            except BadImage as e:
                bad.append((i, e.reason))
        jpeg_idx = torch.tensor([i for i, _ in ok], dtype=torch.int64)
        jpegs = torch.stack([im for _, im in ok]).to(device) if ok else x[:0]
    idx = torch.cat([b.indices, jpeg_idx])
    order = torch.argsort(idx)  # the order of the files, as when decoding on the CPU
    return idx[order], torch.cat([x, jpegs])[order.to(device)], bad


def default_workers(device: torch.device) -> int:
    """Decoding worker processes when not told: none with two CPU cores or fewer, else half of them (at most 8).

    On two cores the model's threads need both: decoding in the main process
    between batches measured faster than any worker (bench_scan: 3,000
    images/s with none, 2,500-2,800 with one or two). Under CUDA the model
    leaves the CPU free, so there is always at least one worker.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    n = 0 if cores <= 2 else min(8, cores // 2)
    return max(n, 1) if device.type == "cuda" else n


#: How much lower the decoding workers' CPU priority is than the model's threads (``os.nice``).
WORKER_NICE = 10


def _lower_priority(worker_id: int) -> None:
    """Decode below the model's priority, so that workers take less CPU time from the model's threads.

    A moderate value: the workers still get a share when other programs load
    the machine (SCHED_IDLE would starve them then). On two cores it made no
    measurable difference either way (see :func:`default_workers`).
    """
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass


def _write_chunk(directory: Path, c: int, parts: dict[str, list], map_neurons: Sequence[int]) -> None:
    arrays = {
        "index": np.concatenate(parts["index"]) if parts["index"] else np.zeros(0, np.int64),
        "bad_index": np.array([i for i, _ in parts["bad"]], dtype=np.int64),
        "bad_reason": np.array([r for _, r in parts["bad"]], dtype=str),
        "map_neurons": np.array(map_neurons, dtype=np.int64),  # whose maps the chunk holds
    }
    for name in ("mean", "max", "maps"):
        if parts[name]:
            arrays[name] = np.concatenate(parts[name])
    atomic_save(_chunk_path(directory, c), lambda p: np.savez(p, **arrays))
    for v in parts.values():
        v.clear()


def _merge_arrays(chunk_dir: Path, n_chunks: int, arrays: dict[str, tuple], out_dir: Path) -> int:
    """Concatenate the chunks' arrays ``{name: (dtype, shape of a row)}`` into ``out_dir/NAME.npy``.

    Each file is written whole under a hidden name, then renamed; returns the number of rows.
    """
    counts = []
    for c in range(n_chunks):
        with np.load(_chunk_path(chunk_dir, c)) as z:
            counts.append(len(z["index"]))
    out = {name: np.lib.format.open_memmap(out_dir / f".{name}.npy", "w+", dtype, (sum(counts), *shape))
           for name, (dtype, shape) in arrays.items()}
    at = 0
    for c, m in enumerate(counts):
        if m:
            with np.load(_chunk_path(chunk_dir, c)) as z:
                for name, arr in out.items():
                    arr[at : at + m] = z[name]
        at += m
    for name in arrays:
        out.pop(name).flush()  # and closed, before the rename
    for name in arrays:
        os.replace(out_dir / f".{name}.npy", out_dir / f"{name}.npy")
    return sum(counts)


def _merge(job: _ScanJob) -> None:
    """Merge the scan's chunks into ``index.npy``, ``mean.npy``, ``max.npy``, ``bad.json`` and the maps.

    The maps go to the folder of ``job.map_neurons`` when every chunk holds that
    set's (a scan killed and resumed for another set holds a mix: those maps are
    then computed afresh, :func:`_add_maps`).
    """
    work_dir, n_chunks = job.out_dir, job.n_chunks
    bad, shapes, same_maps = [], None, True
    for c in range(n_chunks):
        with np.load(_chunk_path(work_dir, c)) as z:
            bad += [(int(i), str(r)) for i, r in zip(z["bad_index"], z["bad_reason"])]
            same_maps &= z["map_neurons"].tolist() == job.map_neurons
            if shapes is None and "mean" in z.files:
                shapes = (z["mean"].shape[1:], z["maps"].shape[2:])
    channels, map_size = shapes or ((0,), (1, 1))
    if job.map_neurons and same_maps:
        maps_dir = _maps_dir(work_dir, job.map_neurons)
        maps_dir.mkdir(parents=True, exist_ok=True)
        _merge_arrays(work_dir, n_chunks, {"maps": (np.float16, (len(job.map_neurons), *map_size))}, maps_dir)
        with atomic_write(done_marker_path(maps_dir)) as f:
            json.dump({"map_neurons": job.map_neurons}, f)
    n = _merge_arrays(work_dir, n_chunks, {"index": (np.int64, ()), "mean": (np.float32, channels),
                                           "max": (np.float32, channels)}, work_dir)
    with atomic_write(work_dir / "bad.json") as f:
        json.dump(sorted(bad), f)
    with atomic_write(done_marker_path(work_dir)) as f:
        json.dump({"n_entries": len(job.entries), "n_scanned": n, "map_size": list(map_size)}, f)
    for c in range(n_chunks):
        _chunk_path(work_dir, c).unlink(missing_ok=True)


def _add_maps(job: _ScanJob) -> None:
    """The maps of ``job.map_neurons`` for a done scan: only the images that loaded, only the maps.

    Resumable like the scan (chunk files in the set's folder). An image that
    loaded in the scan and fails now changed since: a clear error (its new
    size or time gives the next run a new scan).
    """
    work_dir = job.out_dir
    maps_dir = _maps_dir(work_dir, job.map_neurons)
    maps_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(maps_dir)
    index = np.load(work_dir / "index.npy")
    map_size = json.loads(done_marker_path(work_dir).read_text())["map_size"]
    maps_job = dataclasses.replace(job, out_dir=maps_dir, rows=index.tolist())
    n_chunks = maps_job.n_chunks
    _map_chunks(maps_job, [c for c in range(n_chunks) if not _chunk_path(maps_dir, c).is_file()])
    got = []
    for c in range(n_chunks):
        with np.load(_chunk_path(maps_dir, c)) as z:
            got.append(z["index"])
            if len(z["bad_index"]):
                _chunk_path(maps_dir, c).unlink()
                i, reason = int(z["bad_index"][0]), str(z["bad_reason"][0])
                raise DoraError(f"{job.entries[i].relpath} was scanned but cannot be read now ({reason}): "
                                "it changed during the run; run again")
    if not np.array_equal(np.concatenate(got) if got else np.zeros(0, np.int64), index):
        raise DoraError(f"the maps in {maps_dir} do not match the scan: remove that folder and run again")
    _merge_arrays(maps_dir, n_chunks, {"maps": (np.float16, (len(job.map_neurons), *map_size))}, maps_dir)
    with atomic_write(done_marker_path(maps_dir)) as f:
        json.dump({"map_neurons": job.map_neurons}, f)
    for c in range(n_chunks):
        _chunk_path(maps_dir, c).unlink(missing_ok=True)


def done_marker_path(work_dir: Path) -> Path:
    return work_dir / "done.json"


def _load(work_dir: Path, entries: Sequence[ImageEntry], map_neurons: list[int]) -> ScanResult:
    index = np.load(work_dir / "index.npy")
    bad = json.loads((work_dir / "bad.json").read_text())
    if map_neurons:
        maps = np.load(_maps_dir(work_dir, map_neurons) / "maps.npy", mmap_mode="r")
    else:
        map_size = json.loads(done_marker_path(work_dir).read_text())["map_size"]
        maps = np.zeros((len(index), 0, *map_size), np.float16)
    return ScanResult(
        entries=[entries[i] for i in index],
        mean_act=np.load(work_dir / "mean.npy", mmap_mode="r"),
        max_act=np.load(work_dir / "max.npy", mmap_mode="r"),
        maps=maps,
        map_neurons=map_neurons,
        skipped=[Skipped(entries[i].relpath, r) for i, r in bad],
    )
