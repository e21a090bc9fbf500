"""Step 5: stream every image of a dataset through the truncated model.

Per image the scan keeps the spatial mean and max of every neuron of the
layer (all neurons cost no more than a few) and the activation maps of the
infected neurons (for heatmaps). Results go to disk in chunks as they are
made, so memory stays flat as the dataset grows, and a scan that is killed
resumes at the first chunk it had not finished.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_save, atomic_write, locked, remove_stale_temps
from ..device import autocast, resolve_device
from .decode import BadImage, ImageBatch, ImageFiles, collate_images, decode_jpegs, load_image
from .files import ImageEntry, Skipped
from ..models.loading import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class ScanResult:
    """What the scan recorded, in the order of ``entries`` (the images that loaded).

    Attributes:
        entries: the scanned images.
        mean_act: [N, C] spatial mean of every neuron (memory-mapped).
        max_act: [N, C] spatial max of every neuron (memory-mapped).
        maps: [N, m, h, w] float16 activation maps of the ``map_neurons`` (memory-mapped).
        map_neurons: the neurons whose maps were kept.
        skipped: the images that could not be read, with the reason.
    """

    entries: list[ImageEntry]
    mean_act: np.ndarray
    max_act: np.ndarray
    maps: np.ndarray
    map_neurons: list[int]
    skipped: list[Skipped]


def scan_key(
    weights_hash: str,
    layer: str,
    root: Path,
    entries: Sequence[ImageEntry],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    map_neurons: Sequence[int],
) -> str:
    """The cache key of a scan: model, layer, settings, and every file's path, size and mtime."""
    h = hashlib.sha256()
    h.update(json.dumps([weights_hash, layer, str(root.resolve()), size, list(mean), list(std), list(map_neurons)]).encode())
    for e in entries:
        try:
            st = os.stat(root / e.relpath)
            h.update(f"{e.relpath}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{e.relpath}\0missing\n".encode())
    return h.hexdigest()[:16]


def _chunk_path(directory: Path, c: int) -> Path:
    return directory / f"chunk_{c:06d}.npz"


@torch.no_grad()
def scan_images(
    layer_model: torch.nn.Module,
    root: str | Path,
    entries: Sequence[ImageEntry],
    work_dir: str | Path,
    size: int,
    map_neurons: Sequence[int] = (),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    workers: int | None = None,
    chunk_batches: int = 32,
    progress: bool = True,
    gpu_decode: bool | None = None,
) -> ScanResult:
    """Scan ``entries`` of ``root``; chunks and the final arrays go to ``work_dir``.

    ``work_dir`` holds ``chunk_*.npz`` files while the scan runs (a chunk file
    appears, atomically, only once complete) and the merged ``*.npy`` arrays
    at the end. Calling again with the same ``work_dir`` reuses what is there.

    ``workers``: decoding processes (default: :func:`default_workers`).
    ``gpu_decode`` (default: on CUDA) decodes ordinary JPEGs in one batch on
    ``device`` (nvjpeg) instead of in the workers; the pixels are the same.
    """
    root, work_dir = Path(root), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    workers = default_workers(device) if workers is None else workers
    map_neurons = [int(i) for i in map_neurons]
    chunk = batch_size * chunk_batches
    n_chunks = (len(entries) + chunk - 1) // chunk
    with locked(work_dir):
        remove_stale_temps(work_dir)
        if not done_marker_path(work_dir).is_file():
            todo = [c for c in range(n_chunks) if not _chunk_path(work_dir, c).is_file()]
            _scan_chunks(
                layer_model, root, entries, work_dir, todo, chunk, size, map_neurons, mean, std, device,
                batch_size, workers, progress, device.type == "cuda" if gpu_decode is None else gpu_decode,
            )
            _merge(work_dir, n_chunks, len(entries))
        return _load(work_dir, entries, map_neurons)


def _scan_chunks(
    layer_model, root, entries, work_dir, todo, chunk, size, map_neurons, mean, std, device, batch_size, workers,
    progress, gpu_decode,
) -> None:
    if not todo:
        return
    batches = [
        list(range(a, min(a + batch_size, (c + 1) * chunk, len(entries))))
        for c in todo
        for a in range(c * chunk, min((c + 1) * chunk, len(entries)), batch_size)
    ]
    loader = torch.utils.data.DataLoader(
        ImageFiles(root, list(entries), size, jpeg_bytes=gpu_decode),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=functools.partial(collate_images, size=size),
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_lower_priority,
    )
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    maps_idx = torch.tensor(map_neurons, dtype=torch.long, device=device)
    parts: dict[str, list] = {"index": [], "mean": [], "max": [], "maps": [], "bad": []}
    current = None
    total = sum(len(b) for b in batches)
    with tqdm(total=total, desc="scan", unit="img", disable=not progress, leave=False) as bar:
        for batch, loaded in zip(batches, loader):
            c = batch[0] // chunk
            if current is not None and c != current:
                _write_chunk(work_dir, current, parts)
            current = c
            idx, x, bad = _on_device(loaded, root, entries, size, device)
            if len(idx):
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                x = (x.float() - mean_t) / std_t
                with autocast(device):
                    act = layer_model(x)
                act = act.float()
                parts["index"].append(idx.numpy())
                parts["mean"].append(act.mean(dim=(2, 3)).cpu().numpy())
                parts["max"].append(act.amax(dim=(2, 3)).cpu().numpy())
                parts["maps"].append(act[:, maps_idx].half().cpu().numpy())
            parts["bad"].extend(bad)
            bar.update(len(batch))
    if current is not None:
        _write_chunk(work_dir, current, parts)


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


def _write_chunk(work_dir: Path, c: int, parts: dict[str, list]) -> None:
    arrays = {
        "index": np.concatenate(parts["index"]) if parts["index"] else np.zeros(0, np.int64),
        "bad_index": np.array([i for i, _ in parts["bad"]], dtype=np.int64),
        "bad_reason": np.array([r for _, r in parts["bad"]], dtype=str),
    }
    for name in ("mean", "max", "maps"):
        if parts[name]:
            arrays[name] = np.concatenate(parts[name])
    atomic_save(_chunk_path(work_dir, c), lambda p: np.savez(p, **arrays))
    for v in parts.values():
        v.clear()


def _merge(work_dir: Path, n_chunks: int, n_entries: int) -> None:
    """Merge the chunks into ``index.npy``, ``mean.npy``, ``max.npy``, ``maps.npy`` and ``bad.json``."""
    counts, bad, shapes = [], [], None
    for c in range(n_chunks):
        with np.load(_chunk_path(work_dir, c)) as z:
            counts.append(len(z["index"]))
            bad += [(int(i), str(r)) for i, r in zip(z["bad_index"], z["bad_reason"])]
            if shapes is None and "mean" in z.files:
                shapes = (z["mean"].shape[1:], z["maps"].shape[1:])
    n = sum(counts)
    if shapes is None:
        shapes = ((0,), (0, 1, 1))
    out = {
        "index": np.lib.format.open_memmap(work_dir / ".index.npy", "w+", np.int64, (n,)),
        "mean": np.lib.format.open_memmap(work_dir / ".mean.npy", "w+", np.float32, (n, *shapes[0])),
        "max": np.lib.format.open_memmap(work_dir / ".max.npy", "w+", np.float32, (n, *shapes[0])),
        "maps": np.lib.format.open_memmap(work_dir / ".maps.npy", "w+", np.float16, (n, *shapes[1])),
    }
    at = 0
    for c, m in enumerate(counts):
        if m:
            with np.load(_chunk_path(work_dir, c)) as z:
                for name, arr in out.items():
                    arr[at : at + m] = z[name]
        at += m
    for name, arr in out.items():
        arr.flush()
        del arr
        os.replace(work_dir / f".{name}.npy", work_dir / f"{name}.npy")
    with atomic_write(work_dir / "bad.json") as f:
        json.dump(sorted(bad), f)
    with atomic_write(done_marker_path(work_dir)) as f:
        json.dump({"n_entries": n_entries, "n_scanned": n}, f)
    for c in range(n_chunks):
        _chunk_path(work_dir, c).unlink(missing_ok=True)


def done_marker_path(work_dir: Path) -> Path:
    return work_dir / "done.json"


def _load(work_dir: Path, entries: Sequence[ImageEntry], map_neurons: list[int]) -> ScanResult:
    index = np.load(work_dir / "index.npy")
    bad = json.loads((work_dir / "bad.json").read_text())
    return ScanResult(
        entries=[entries[i] for i in index],
        mean_act=np.load(work_dir / "mean.npy", mmap_mode="r"),
        max_act=np.load(work_dir / "max.npy", mmap_mode="r"),
        maps=np.load(work_dir / "maps.npy", mmap_mode="r"),
        map_neurons=map_neurons,
        skipped=[Skipped(entries[i].relpath, r) for i, r in bad],
    )
