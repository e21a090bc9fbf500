"""Step 1 past one machine: a layer's s-AMS as Ray tasks, one task per chunk of neurons.

Each task optimises the s-AMS of its neurons (:func:`~.sams.optimise`) on a
worker, one GPU per task where the cluster has GPUs; the driver saves each
chunk's PNG files into the s-AMS cache (:class:`~.sams.SamsCache`) as soon as
its task is done. The analysis then reads them from the cache as if it had
made them: a neuron's s-AMS start from a state seeded by (seed, neuron)
(:func:`~.sams.initial_state`), so they do not depend on where, or beside
which other neurons, they were made. An interrupted run resumes: the neurons
already in the cache are not sent again.

Ray is imported only inside these functions (see :mod:`dora_clean.scanning.distributed`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write, locked, remove_stale_temps
from ..device import prepare_model, resolve_device
from ..errors import DoraError
from ..models import LayerModel, weights_hash
from ..scanning.distributed import RayPlan, connect, plan_workers, ship_model
from .layer import AnalysisOptions
from .sams import SamsCache, SamsConfig, cache_root, optimise, sams_key

__all__ = ["generate_sams_ray", "neuron_chunks"]


def neuron_chunks(neurons: Sequence[int], config: SamsConfig, workers: int) -> list[list[int]]:
    """The neurons split into tasks: the local chunks (``config.batch_size`` images at most), made smaller
    where there are fewer of them than ``workers``, so that every worker has one."""
    neurons = list(neurons)
    if not neurons:
        return []
    per_chunk = max(1, config.batch_size // config.n_signals)
    per_chunk = max(1, min(per_chunk, math.ceil(len(neurons) / max(1, workers))))
    return [neurons[a : a + per_chunk] for a in range(0, len(neurons), per_chunk)]


def _sams_task(model, neurons: list[int], config: SamsConfig, mean, std, plan: RayPlan) -> np.ndarray:
    """On a Ray worker: the s-AMS of ``neurons``, uint8 [k, n, 3, size, size]."""
    torch.set_num_threads(max(1, plan.num_cpus))
    device = resolve_device(plan.device)
    layer_model = prepare_model(model, device)
    return optimise(layer_model, neurons, config, mean, std, device).numpy()


def generate_sams_ray(
    model: torch.nn.Module,
    layer: str,
    neurons: Sequence[int],
    config: SamsConfig,
    options: AnalysisOptions,
    address: str = "local",
) -> Path:
    """Make the s-AMS of ``neurons`` of ``layer`` on Ray and put them in the cache that
    :func:`~.layer.analyse_layer` reads (same ``config`` and ``options``); returns that folder.

    ``options.device`` says where the tasks run (``auto``: a GPU each where
    the cluster has GPUs). A custom objective has no cache key: nothing is
    made here (the analysis makes those s-AMS itself, locally).
    """
    layer_model = LayerModel(model, layer, prefix_tokens=options.prefix_tokens)
    sams_dir = Path(options.cache_dir or cache_root()) / "sams" / sams_key(
        weights_hash(model), layer_model.view_key, config, options.mean, options.std)
    if not config.cacheable:
        return sams_dir
    cache = SamsCache(sams_dir, config)
    with locked(cache.dir):
        remove_stale_temps(cache.dir)
        todo = [int(i) for i in neurons if not cache.has(int(i))]
        if not todo:
            return sams_dir
        with atomic_write(cache.dir / "settings.json") as f:
            json.dump(config.key_fields() | {"mean": list(options.mean), "std": list(options.std)}, f, indent=1)
        _run_tasks(layer_model, todo, cache, options, address)
    return sams_dir


def _run_tasks(layer_model: LayerModel, todo: list[int], cache: SamsCache, options: AnalysisOptions,
               address: str) -> None:
    ray = connect(address)
    plan = plan_workers(ray, options.device)
    task = ray.remote(_sams_task).options(max_retries=1, **plan.remote_args())
    model_ref = ship_model(ray, layer_model)
    mean, std = list(options.mean), list(options.std)
    running = {task.remote(model_ref, chunk, cache.config, mean, std, plan): chunk
               for chunk in neuron_chunks(todo, cache.config, plan.workers)}
    with tqdm(total=len(todo), desc="s-AMS (ray)", unit="neuron", disable=not options.progress,
              leave=False) as bar:
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                chunk = running.pop(done[0])
                images = ray.get(done[0])
                for i, imgs in zip(chunk, images):
                    cache.save(i, torch.from_numpy(np.array(imgs)))
                bar.update(len(chunk))
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref)
            raise
        except DoraError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise DoraError(f"an s-AMS task failed on Ray ({type(e).__name__}: {first[:300]}); the finished "
                            "neurons are cached: run again to resume") from e
