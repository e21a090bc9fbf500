"""Load a model from a spec, in eval mode with its parameters frozen.

A model spec is one of:

- a torchvision architecture name (``resnet18``) or ``timm:NAME`` (timm's
  architecture, with timm installed), with an optional local weights file
  (a state dict, ``.pth`` or ``.safetensors``; nothing is downloaded; without
  one the weights are random, and ``info["warnings"]`` says so);
- ``path/to/file.py:ATTR`` or ``package.module:ATTR``, where ATTR is an
  ``nn.Module``, a class or a factory that returns one;
- a TorchScript file or a ``torch.export`` file (``.pt2``);
- ``None``: the bundled demo model.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DoraError
from .zoo import TIMM_PREFIX, fixed_input_size, from_timm, from_torchvision, timm_info

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "freeze", "load_model", "load_weights",
           "read_state_dict", "weights_hash"]

#: The input normalisation of torchvision's ImageNet models, the default for any model.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class LoadedModel:
    """A model ready for analysis, with what is known about its input."""

    def __init__(self, model: nn.Module, spec: str, info: dict[str, Any] | None = None):
        self.model = model
        self.spec = spec
        self.info = info or {}

    @property
    def image_size(self) -> int | None:
        return self.info.get("image_size")


def load_model(
    spec: str | None = None,
    weights: str | Path | None = None,
    trust_model_file: bool = False,
) -> LoadedModel:
    """Load a model from a spec (see the module docstring) in eval mode, frozen.

    Args:
        spec: the model spec; ``None`` for the bundled demo model.
        weights: a state-dict file to load into the model.
        trust_model_file: allow full pickles (they can run arbitrary code).
    """
    info: dict[str, Any] = {}
    if spec is None or spec == "demo":
        from ..demo import load_demo_model

        model, info = load_demo_model()
        spec = "demo"
    elif _by_name(spec):
        model, info = _named_model(spec, weights, trust_model_file)
        weights = None  # loaded already (it may set num_classes)
    elif ":" in spec and not Path(spec).exists():
        model = _from_attribute(spec)
    elif Path(spec).is_file():
        model = _from_file(Path(spec), trust_model_file)
    else:
        raise DoraError(f"model file {spec} is a folder: give a model file, an architecture name or MODULE:ATTR")
    if weights is not None:
        load_weights(model, weights, trust_model_file)
    freeze(model)
    return LoadedModel(model, spec, info)


def _by_name(spec: str) -> bool:
    """A torchvision or timm architecture name (not a file, a folder or MODULE:ATTR)."""
    if Path(spec).exists():
        return False
    return spec.startswith(TIMM_PREFIX) or ":" not in spec


def _named_model(spec: str, weights: str | Path | None, trust: bool) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision or timm architecture with the weights of ``weights`` (random without; ``info`` warns)."""
    info: dict[str, Any] = {}
    state = read_state_dict(weights, trust) if weights is not None else None
    if spec.startswith(TIMM_PREFIX):
        model = from_timm(spec[len(TIMM_PREFIX):], state)
        info.update(timm_info(model))
    else:
        model = from_torchvision(spec, state)
        if fixed_input_size(model):
            info["image_size"] = fixed_input_size(model)
    if state is None:
        info["warnings"] = ["no --weights: the model's weights are random (nothing is downloaded), so its "
                            "neurons have learned nothing; give the trained weights with --weights FILE"]
    else:
        _load_state(model, state, str(weights))
    return model, info


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, and no parameter wants a gradient."""
    try:
        model.eval()
    except NotImplementedError:  # torch.export modules are fixed in the mode they were exported in
        pass
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _from_attribute(spec: str) -> nn.Module:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise DoraError(f"model spec {spec!r} should look like path/to/file.py:ATTR or package.module:ATTR")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise DoraError(f"model file {target} does not exist")
        mod_name = f"dora_clean_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise DoraError(f"importing {target} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise DoraError(f"cannot import module {target!r} of model spec {spec!r}: {e}") from e
    if not hasattr(module, attr):
        raise DoraError(f"{target} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, nn.Module) and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            raise DoraError(f"calling {spec} failed: {type(e).__name__}: {e}") from e
    if not isinstance(obj, nn.Module):
        raise DoraError(f"{spec} is a {type(obj).__name__}, not a torch nn.Module (or a class or function returning one)")
    return obj


def _from_file(path: Path, trust: bool) -> nn.Module:
    """A TorchScript file, a torch.export file, or (if trusted) a full pickle."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            try:
                return torch.jit.load(str(path), map_location="cpu")
            except Exception as e:
                raise DoraError(f"{path} looks like TorchScript but does not load: {e}") from e
        if any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
            try:
                return torch.export.load(str(path)).module()
            except Exception as e:
                raise DoraError(f"{path} looks like a torch.export file but does not load: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _is_full_pickle(e):
            raise DoraError(f"{path} is not a model file torch can read ({e})") from e
        if not trust:
            raise DoraError(
                f"{path} is a full pickle, which can run arbitrary code when loaded; "
                "pass --trust-model-file if you trust it, or save a state dict / TorchScript instead"
            ) from e
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DoraError(f"{path} is not a model file torch can read ({type(e).__name__}: {e})") from e
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict):
        raise DoraError(
            f"{path} holds weights (a state dict), not a model: pass the architecture with "
            f"--model NAME_OR_FILE.py:ATTR and this file with --weights {path}"
        )
    raise DoraError(f"{path} holds a {type(obj).__name__}, not a model")


def _is_full_pickle(e: Exception) -> bool:
    """torch.load(weights_only=True) refused a pickle that holds more than tensors."""
    return "Unsupported global" in str(e)


def read_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict (also from ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints, and
    ``.safetensors`` files)."""
    path = Path(path)
    if not path.is_file():
        raise DoraError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return _strip(_read_safetensors(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not _is_full_pickle(e):
            raise DoraError(f"weights file {path} is not readable by torch.load ({e})") from e
        raise DoraError(
            f"weights file {path} is a full pickle; pass --trust-model-file if you trust it"
        ) from e
    except Exception as e:
        raise DoraError(f"weights file {path} is not readable by torch.load ({type(e).__name__}: {e})") from e
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DoraError(f"weights file {path} does not hold a state dict (name -> tensor)")
    return _strip(obj)


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without the prefixes of DataParallel (``module.``) and torch.compile (``_orig_mod.``)."""
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise DoraError(f"reading {path} needs safetensors: pip install safetensors") from e
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:
        raise DoraError(f"weights file {path} is not a readable safetensors file ({type(e).__name__}: {e})") from e


def load_weights(model: nn.Module, path: str | Path, trust: bool = False) -> None:
    """Load a state dict file into ``model``; a mismatch names the keys."""
    _load_state(model, read_state_dict(path, trust), str(path))


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if shape:
            parts.append(
                "wrong shape " + _few([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape])
            )
        raise DoraError(
            f"weights {source} do not fit this model ({'; '.join(parts)}): "
            "is it a checkpoint of another architecture?"
        )
    model.load_state_dict(state)


def _few(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def weights_hash(model: nn.Module) -> str:
    """A hash of the model's parameters and buffers (the cache key of its results)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
