"""Step 5 past one machine: the scan on a Ray cluster (``--ray local|auto|ray://HOST:PORT``).

Ray Data reads and decodes the images (with :func:`~.decode.load_image`, the
local scan's decoder: the same pixels) and an actor pool of truncated models
scores them (``map_batches`` with a callable class; one GPU per actor where
the cluster has GPUs, else one CPU per actor that decodes its own batches).
The driver receives every image's spatial mean and max per neuron (and the
maps of the neurons asked for) and writes them as the local scan's chunk
files (``chunk_*.npz``, :mod:`.activations`) in the same work directory, a
chunk as soon as all of its images are back. So an interrupted Ray scan
resumes from its finished chunks (with Ray or without), and the merge, the
cache and the result are the local scan's.

What the cluster needs: dora-clean (the same version) and its dependencies on
every node, and the dataset at the same path on every node (a shared file
system). Results come back to the driver through Ray's object store.

Ray is imported only inside these functions; without it, one
:class:`~dora_clean.errors.DoraError` says how to install it.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import locked, remove_stale_temps
from ..device import autocast, prepare_model, resolve_device
from ..errors import DoraError
from .activations import (ScanOptions, ScanResult, _chunk_path, _job, _merge, _write_chunk, done_marker_path,
                          scan_images)
from .decode import BadImage, load_image
from .files import ImageEntry

__all__ = ["RAY_INSTALL", "RayPlan", "connect", "import_ray", "plan_workers", "scan_images_ray", "ship_model"]

#: What to run when Ray is missing.
RAY_INSTALL = 'pip install "dora-clean[ray]"'

#: Images per block of the Ray dataset, in batches (the unit Ray Data schedules).
BLOCK_BATCHES = 4


def import_ray():
    """The ``ray`` module (with Ray Data), or a DoraError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DoraError(f"--ray needs Ray (with Ray Data), which is not installed: {RAY_INSTALL}") from None
    return ray


def connect(address: str):
    """Connect this process to Ray; returns the ``ray`` module.

    ``local``: start a Ray runtime on this machine (no dashboard); ``auto``:
    the cluster in ``RAY_ADDRESS``, or one already running on this machine
    (``ray start --head``); ``ray://HOST:PORT``: a cluster's Ray Client
    server. A process already connected (``ray.init`` called before) keeps
    its connection, whatever ``address`` says.
    """
    ray = import_ray()
    address = (address or "").strip()
    if not (address in ("local", "auto") or (address.startswith("ray://") and len(address) > len("ray://"))):
        raise DoraError(f"unknown Ray address {address!r}: use local, auto or ray://HOST:PORT")
    if not ray.is_initialized():
        _init(ray, address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the scan shows its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its plans and "progress bars disabled"; errors raise
    return ray


def _init(ray, address: str) -> None:
    if address == "local":
        kwargs = {"include_dashboard": False}
    elif address == "auto":
        kwargs = {"address": os.environ.get("RAY_ADDRESS") or "auto"}
    else:
        kwargs = {"address": address}
    try:
        ray.init(logging_level=logging.WARNING, configure_logging=True, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DoraError(f"cannot connect to Ray at {kwargs.get('address', 'a new local runtime')} ({first}): "
                        "start a cluster (`ray start --head`), or use --ray local") from e


@dataclasses.dataclass(frozen=True)
class RayPlan:
    """How many model workers (actors or tasks) the cluster takes, and what each one holds."""

    workers: int
    num_cpus: int
    num_gpus: int

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus else "cpu"

    def remote_args(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def plan_workers(ray, device: str | torch.device) -> RayPlan:
    """One worker per GPU of the cluster where it has GPUs (and ``device`` is not ``cpu``), else one per CPU.

    ``device``: ``auto`` (GPUs where the cluster has them), ``cpu`` or
    ``cuda``/``cuda:N`` (the cluster must have a GPU: each worker gets one).
    """
    spec = str(device or "auto").strip().lower()
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if spec.startswith("cuda") and not gpus:
        raise DoraError(f"--device {spec} with --ray, but the Ray cluster has no GPU: use --device auto or cpu")
    if spec not in ("auto", "cpu") and not spec.startswith("cuda"):
        raise DoraError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if gpus and spec != "cpu":
        return RayPlan(workers=gpus, num_cpus=1, num_gpus=1)
    return RayPlan(workers=cpus, num_cpus=1, num_gpus=0)


def ship_model(ray, module: torch.nn.Module):
    """Put a CPU copy of ``module`` into Ray's object store; returns its reference.

    A model class loaded from a ``file.py:ATTR`` spec is sent by value (the
    workers cannot import that file by name); anything else by reference, so
    its package must be installed on the workers.
    """
    from ray import cloudpickle

    on_cpu = all(t.device.type == "cpu" for t in [*module.parameters(), *module.buffers()])
    module = module if on_cpu else copy.deepcopy(module).cpu()
    for name, mod in list(sys.modules.items()):
        if name.startswith("dora_clean_user_"):  # models.loading's name for a model file's module
            cloudpickle.register_pickle_by_value(mod)
    try:
        return ray.put(module)
    except Exception as e:
        raise DoraError(f"this model cannot be sent to Ray's workers ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}): give a Python model class "
                        "(package.module:ATTR, file.py:ATTR or a torchvision name), or scan without --ray") from e


def _model_device(module: torch.nn.Module) -> torch.device:
    return next((t.device for t in [*module.parameters(), *module.buffers()]), torch.device("cpu"))


def _decode_batch(batch: dict, root: str, size: int) -> dict:
    """Ray Data's decode step: the images of ``batch["path"]`` as uint8 [B, 3, size, size] and why any failed."""
    n = len(batch["row"])
    images = np.zeros((n, 3, size, size), np.uint8)
    bad = [""] * n
    for k, relpath in enumerate(batch["path"]):
        try:
            images[k] = load_image(os.path.join(root, str(relpath)), size).numpy()
        except BadImage as e:
            bad[k] = e.reason or "unreadable"
    return {"row": np.asarray(batch["row"], np.int64), "image": images, "bad": np.array(bad, dtype=object)}


class LayerScorer:
    """The actor of the pool: a truncated model that gives every neuron's spatial mean and max per image
    (and the maps of ``map_neurons``), as :mod:`.activations` records them. With ``decode`` (the
    CPU-only plan) it decodes its batches itself; otherwise Ray Data's decode step did."""

    def __init__(self, model, options: ScanOptions, map_neurons: Sequence[int], plan: RayPlan, root: str,
                 decode: bool):
        import ray

        torch.set_num_threads(max(1, plan.num_cpus))
        self.device = resolve_device(plan.device)
        model = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        self.model = prepare_model(model, self.device)
        self.mean = torch.tensor(options.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(options.std, device=self.device).view(1, 3, 1, 1) * 255
        self.maps_idx = torch.tensor(list(map_neurons), dtype=torch.long, device=self.device)
        self.size, self.root, self.decode = options.size, root, decode
        with torch.no_grad():
            shape = self._act(torch.zeros(1, 3, self.size, self.size, dtype=torch.uint8)).shape
        self.channels, self.map_hw = int(shape[1]), tuple(int(s) for s in shape[2:])

    def _act(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        x = (x.float() - self.mean) / self.std
        with autocast(self.device):
            return self.model(x).float()

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        if self.decode:
            batch = _decode_batch(batch, self.root, self.size)
        n, bad = len(batch["row"]), batch["bad"]
        ok = np.array([not b for b in bad], dtype=bool)
        mean = np.zeros((n, self.channels), np.float32)
        mx = np.zeros((n, self.channels), np.float32)
        maps = np.zeros((n, len(self.maps_idx), *self.map_hw), np.float16)
        if ok.any():
            act = self._act(torch.from_numpy(np.ascontiguousarray(batch["image"][ok])))
            mean[ok] = act.mean(dim=(2, 3)).cpu().numpy()
            mx[ok] = act.amax(dim=(2, 3)).cpu().numpy()
            maps[ok] = act[:, self.maps_idx].half().cpu().numpy()
        out = {"row": np.asarray(batch["row"], np.int64), "bad": np.asarray(bad, dtype=object), "mean": mean,
               "max": mx}
        if len(self.maps_idx):
            out["maps"] = maps
        return out


def scan_images_ray(
    layer_model: torch.nn.Module,
    root: str | Path,
    entries: Sequence[ImageEntry],
    work_dir: str | Path,
    options: ScanOptions,
    map_neurons: Sequence[int] = (),
    missing_maps: bool = True,
    address: str = "local",
) -> ScanResult:
    """:func:`~.activations.scan_images` on Ray: the same work directory, chunk files and result.

    ``options.device`` says where the actors run the model (``auto``: a GPU
    each where the cluster has GPUs); ``options.workers`` is not used (Ray
    decides how many decode tasks run). Chunks already in ``work_dir`` (from
    an interrupted scan, local or Ray) are not scanned again. A finished scan
    is read back as the local scan reads it; the maps of another set of
    neurons for a finished scan are computed locally (``missing_maps``).
    """
    root, work_dir = Path(root), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job = _job(layer_model, root, entries, work_dir, dataclasses.replace(options, device="cpu", workers=0),
               map_neurons)
    with locked(work_dir):
        remove_stale_temps(work_dir)
        if not done_marker_path(work_dir).is_file():
            todo = [c for c in range(job.n_chunks) if not _chunk_path(work_dir, c).is_file()]
            if todo:
                _ray_chunks(job, todo, layer_model, address, options.device)
            _merge(job)
    local = dataclasses.replace(options, device=_model_device(layer_model))
    return scan_images(layer_model, root, entries, work_dir, local, map_neurons, missing_maps)


def _ray_chunks(job, todo: list[int], layer_model: torch.nn.Module, address: str, device) -> None:
    """Scan the chunks ``todo`` of ``job`` on Ray, writing each chunk's file as soon as it is complete.

    ``device``: where the actors run the model (:func:`plan_workers`)."""
    ray = connect(address)
    import pyarrow as pa

    plan = plan_workers(ray, device)
    chunk, n_rows, batch_size = job.chunk, len(job.rows), job.options.batch_size
    rows = np.array([job.rows[p] for c in todo for p in range(c * chunk, min((c + 1) * chunk, n_rows))], np.int64)
    paths = [job.entries[r].relpath for r in rows]
    pool = min(plan.workers, max(1, -(-len(rows) // batch_size)))
    block = max(1, min(batch_size * BLOCK_BATCHES, -(-len(rows) // pool)))  # a block for every actor at least
    ds = ray.data.from_arrow([pa.table({"row": rows[a : a + block], "path": paths[a : a + block]})
                              for a in range(0, len(rows), block)])
    decode_in_actor = not plan.num_gpus  # CPU workers decode their own batches: nothing to move between processes
    if not decode_in_actor:
        ds = ds.map_batches(_decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                            fn_kwargs={"root": str(job.root), "size": job.options.size})
    ds = ds.map_batches(
        LayerScorer, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        fn_constructor_kwargs={"model": ship_model(ray, layer_model), "options": job.options,
                               "map_neurons": job.map_neurons, "plan": plan, "root": str(job.root),
                               "decode": decode_in_actor},
        **plan.remote_args(),
    )
    map_hw = _map_hw(layer_model, job.options.size)
    expected = {c: min((c + 1) * chunk, n_rows) - c * chunk for c in todo}
    pending: dict[int, list[dict]] = {c: [] for c in todo}
    got = dict.fromkeys(todo, 0)
    with tqdm(total=len(rows), desc="scan (ray)", unit="img", disable=not job.options.progress,
              leave=False) as bar:
        batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            for out in batches:
                of_chunk = out["row"] // chunk
                for c in np.unique(of_chunk).tolist():
                    sel = of_chunk == c
                    pending[c].append({k: v[sel] for k, v in out.items()})
                    got[c] += int(sel.sum())
                    if got[c] == expected[c]:
                        _write_ray_chunk(job, c, pending.pop(c), map_hw)
                bar.update(len(out["row"]))
        except (KeyboardInterrupt, DoraError):
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise DoraError(f"the Ray scan failed ({type(e).__name__}: {first[:300]}); finished chunks are "
                            "kept: run again to resume") from e
        finally:
            getattr(batches, "close", lambda: None)()  # stops the dataset's execution and its actors now
    if pending:
        raise DoraError(f"the Ray scan returned {sum(got.values())} of {len(rows)} images: run again to resume")


def _write_ray_chunk(job, c: int, parts: list[dict], map_hw: tuple[int, ...]) -> None:
    """One chunk's results, in the order of its files, as :func:`~.activations._write_chunk` writes them."""
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["row"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    ok = np.array([not b for b in cols["bad"]], dtype=bool)
    maps = cols["maps"][ok] if "maps" in cols else np.zeros((int(ok.sum()), 0, *map_hw), np.float16)
    _write_chunk(job.out_dir, c, {
        "index": [cols["row"][ok]], "mean": [cols["mean"][ok]], "max": [cols["max"][ok]], "maps": [maps],
        "bad": [(int(r), str(b)) for r, b in zip(cols["row"][~ok], cols["bad"][~ok])],
    }, job.map_neurons)


def _map_hw(layer_model: torch.nn.Module, size: int) -> tuple[int, ...]:
    """The layer's map size (h, w), from one forward pass of one blank image."""
    with torch.no_grad():
        out = layer_model(torch.zeros(1, 3, size, size, device=_model_device(layer_model)))
    return tuple(int(s) for s in out.shape[2:])
