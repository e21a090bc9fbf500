"""Models by name: torchvision architectures (``resnet50``) and timm's (``timm:vit_base_patch16_224``).

Built with random weights (nothing is downloaded), then given a local weights
file where there is one; the number of classes is read from the weights (the
shape of the classifier, found by building the architecture with two class
counts and comparing the state dicts).
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

import torch
from torch import nn

from ..errors import DoraError

__all__ = ["TIMM_PREFIX", "classifier_outputs", "fixed_input_size", "from_timm", "from_torchvision", "timm_info"]

#: ``--model timm:NAME`` builds timm's architecture NAME.
TIMM_PREFIX = "timm:"
_PROBE_CLASSES = 7  # a class count no architecture defaults to


def _build(factory: Callable[..., nn.Module], **kwargs) -> nn.Module:
    """``factory(**kwargs)`` on the meta device (no memory, no init cost), else on the CPU."""
    try:
        with torch.device("meta"):
            return factory(**kwargs)
    except Exception:
        return factory(**kwargs)


def classifier_outputs(factory: Callable[..., nn.Module], state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes of ``state``, a state dict of the architecture that ``factory(num_classes=k)`` builds.

    The architecture is built with its default class count and with another:
    the entries whose shapes differ are the classifier's (ViT ``heads.head``,
    Swin ``head``, ConvNeXt ``classifier.2``, SqueezeNet's 1x1 conv, the
    auxiliary heads); the axis that differs holds the class count. None where
    the architecture has no such entry or ``state`` lacks it.
    """
    try:
        default = _build(factory).state_dict()
        other = _build(factory, num_classes=_PROBE_CLASSES).state_dict()
    except Exception:
        return None
    for key, t in default.items():
        o = other.get(key)
        if o is None or o.shape == t.shape or o.ndim != t.ndim or key not in state:
            continue
        axis = next(i for i, (a, b) in enumerate(zip(t.shape, o.shape)) if a != b)
        if getattr(state[key], "ndim", -1) == t.ndim:
            return int(state[key].shape[axis])
    return None


def from_torchvision(name: str, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """torchvision's architecture ``name`` with random weights, sized to the classes of ``state``."""
    import torchvision.models as tvm

    names = tvm.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DoraError(
            f"unknown model {name!r}{hint}: give a torchvision architecture name, timm:NAME, "
            "a model file, or path/to/file.py:ATTR"
        )

    def factory(**kwargs) -> nn.Module:
        return tvm.get_model(name, weights=None, **kwargs)

    return _sized(factory, state)


def from_timm(name: str, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """timm's architecture ``name`` (``pretrained=False``: nothing is downloaded), sized to ``state``'s classes."""
    try:
        import timm
    except ImportError as e:
        raise DoraError("--model timm:NAME needs timm: pip install 'dora-clean[timm]' (or pip install timm)") from e
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DoraError(f"timm has no model {name!r}{hint}: see timm.list_models()")

    def factory(**kwargs) -> nn.Module:
        return timm.create_model(name, pretrained=False, **kwargs)

    return _sized(factory, state)


def _sized(factory: Callable[..., nn.Module], state: dict[str, torch.Tensor] | None) -> nn.Module:
    n = classifier_outputs(factory, state) if state is not None else None
    try:
        return factory(num_classes=n) if n is not None else factory()
    except (TypeError, ValueError):
        return factory()


def fixed_input_size(model: nn.Module) -> int | None:
    """The one input side a model takes, where it takes only one (torchvision's ViT; timm models with a
    strict patch embedding, like ViT), else None."""
    size = getattr(model, "image_size", None)
    if type(model).__name__ == "VisionTransformer" and isinstance(size, int):
        return size
    if getattr(model, "dynamic_img_size", False):
        return None
    embed = getattr(model, "patch_embed", None)
    img = getattr(embed, "img_size", None)
    if embed is not None and getattr(embed, "strict_img_size", False) and img:
        return int(img[0] if isinstance(img, (tuple, list)) else img)
    return None


def timm_info(model: nn.Module) -> dict[str, Any]:
    """The input a timm model expects (its ``pretrained_cfg``): image size, mean, std."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    info: dict[str, Any] = {}
    size = fixed_input_size(model) or (cfg.get("input_size") or (None,))[-1]
    if size:
        info["image_size"] = int(size)
    for key in ("mean", "std"):
        if cfg.get(key) and len(cfg[key]) == 3:
            info[key] = tuple(float(v) for v in cfg[key])
    return info
