"""The layouts of a layer's output, and how each becomes a map [B, C, H, W] (the neurons are the C channels).

- ``[B, C, H, W]`` (convolutional maps) as is, ``[B, C]`` as a 1x1 map;
- ``[B, H, W, C]`` (channels-last: torchvision's Swin stages, ConvNeXt's inner
  block modules), told from the modules that run inside the layer
  (:func:`channel_axis`), where they do not say from the shape;
- ``[B, P + T, C]`` transformer tokens: P prefix tokens (a class token and
  register tokens) first, then T patch tokens that form a sqrt(T) x sqrt(T)
  grid. The patch tokens become the map (so mean/max pooling, heatmaps and
  the s-AMS objectives work unchanged); the prefix tokens are left out, or,
  with the ``cls`` view, the class token alone is the map (1x1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import DoraError

__all__ = ["TOKEN_VIEWS", "Leaf", "TokenLayout", "channel_axis", "layer_run", "map_of",
           "token_layout"]

#: What a token layer shows as the map: its patch tokens, or its class token (as a 1x1 map).
TOKEN_VIEWS = ("patches", "cls")
#: At most this many prefix tokens are inferred from the token count alone (L - floor(sqrt(L))^2).
MAX_INFERRED_PREFIX = 8
#: Parameters that prepend tokens, by name (where a model does not say ``num_prefix_tokens``).
_TOKEN_PARAMETERS = ("class_token", "cls_token", "dist_token", "reg_token", "register_tokens")
_CLASS_PARAMETERS = ("class_token", "cls_token")

@dataclass(frozen=True)
class TokenLayout:
    """What the model's structure says about its tokens: how many prefix tokens, and whether the
    first is a class token (None where it does not say)."""

    prefix: int | None = None
    has_class: bool | None = None
    given: bool = False  # the prefix count was given (--prefix-tokens), not read from the model


def token_layout(model: nn.Module, prefix_tokens: int | None = None) -> TokenLayout:
    """The token layout of ``model``: ``prefix_tokens`` where given (``--prefix-tokens``);
    else a ``num_prefix_tokens`` attribute (timm: class + register tokens); else the parameters that hold
    prepended tokens (torchvision's ``class_token``: 1); else nothing known."""
    if prefix_tokens is not None:
        if prefix_tokens < 0:
            raise DoraError(f"--prefix-tokens must be 0 or more, not {prefix_tokens}")
        return TokenLayout(int(prefix_tokens), None, given=True)
    for m in model.modules():
        n = getattr(m, "num_prefix_tokens", None)
        if isinstance(n, int) and not isinstance(n, bool):
            has_class = getattr(m, "has_class_token", None)
            if has_class is None:
                has_class = getattr(m, "cls_token", None) is not None or getattr(m, "class_token", None) is not None
            return TokenLayout(n, bool(has_class))
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _TOKEN_PARAMETERS and p.ndim >= 2:
            counts[leaf] = int(p.shape[-2])
    if counts:
        return TokenLayout(sum(counts.values()), any(counts.get(k) for k in _CLASS_PARAMETERS))
    return TokenLayout()


def _square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def _prefix(n_tokens: int, layout: TokenLayout, layer: str) -> int:
    """How many of ``n_tokens`` come before the patch tokens."""
    if layout.given:
        if not _square(n_tokens - layout.prefix):
            raise DoraError(
                f"layer {layer!r} has {n_tokens} tokens: with --prefix-tokens {layout.prefix} the other "
                f"{n_tokens - layout.prefix} do not form a square grid of patches"
            )
        return layout.prefix
    if layout.prefix is not None and _square(n_tokens - layout.prefix):
        return layout.prefix
    inferred = n_tokens - math.isqrt(n_tokens) ** 2
    if inferred <= MAX_INFERRED_PREFIX:
        return inferred
    raise DoraError(
        f"layer {layer!r} gives {n_tokens} tokens, and neither the model nor the count says how many class and "
        "register tokens come before the patch tokens: give that number with --prefix-tokens N"
    )


def map_of(t: torch.Tensor, kind: str, layout: TokenLayout, view: str = "patches", layer: str = "") -> torch.Tensor:
    """The output ``t`` of a layer as a map [B, C, H, W].

    ``kind``: ``"map"`` ([B, C, H, W] or [B, C]), ``"channels_last"`` or ``"tokens"``; ``view``: ``"patches"``,
    or ``"cls"`` for the class token as a 1x1 map.
    """
    if kind == "tokens":
        b, n, c = t.shape
        p = _prefix(n, layout, layer)
        if view == "cls":
            if p == 0 or layout.has_class is False:
                raise DoraError(f"layer {layer!r} has no class token (only patch and register tokens): "
                                "use --pooling mean or max")
            return t[:, 0, :, None, None]
        side = math.isqrt(n - p)
        return t[:, p:, :].transpose(1, 2).reshape(b, c, side, side)
    if view == "cls":
        raise DoraError(f"--pooling cls needs a transformer layer whose output is tokens [B, 1 + T, C]; layer {layer!r} "
                        f"gives {tuple(t.shape)}: use --pooling mean or max, or another --layer")
    if t.ndim == 2:
        return t[:, :, None, None]
    if kind == "channels_last":
        return t.permute(0, 3, 1, 2)
    return t


# --- channels-first or channels-last: what the modules inside the layer say --------------------------------


@dataclass
class Leaf:
    """One call of a module without children in a forward pass: the module, its input's and output's shape."""

    module: nn.Module
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


class _Stop(Exception):
    pass


def layer_run(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[list[Leaf], torch.Tensor | None]:
    """The leaf modules that run up to the end of ``layer`` (in order), and the layer's output.

    Runs ``model`` on ``x`` with forward hooks and stops when the layer finishes.
    """
    leaves: list[Leaf] = []
    out: list = []

    def record(mod, inp, output):
        first = next((a for a in inp if isinstance(a, torch.Tensor)), None)
        leaves.append(Leaf(mod, _shape(first), _shape(output)))

    def stop(mod, inp, output):
        out.append(output)
        raise _Stop

    target = dict(model.named_modules())[layer]
    handles = [m.register_forward_hook(record) for m in model.modules() if next(m.children(), None) is None]
    handles.append(target.register_forward_hook(stop))
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    first = out[0] if out else None
    if isinstance(first, (tuple, list)):
        first = first[0]
    return leaves, first if isinstance(first, torch.Tensor) else None


def _shape(t) -> tuple[int, ...] | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


_ELEMENTWISE = {"Identity", "Dropout", "AlphaDropout", "FeatureAlphaDropout", "StochasticDepth", "DropPath",
                "ReLU", "ReLU6", "GELU", "GELUTanh", "QuickGELU", "SiLU", "Swish", "Hardswish", "HardSwish",
                "Hardsigmoid", "HardSigmoid", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "SELU", "CELU", "Mish",
                "Softplus", "Hardtanh", "Threshold", "_RedirectedReLUModule"}
_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                   nn.GroupNorm, nn.LocalResponseNorm, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
                   nn.ChannelShuffle)


def _says(module: nn.Module, out_shape: tuple[int, ...]) -> str | None:
    """``"first"``, ``"last"``, ``"permute"``, ``"elementwise"``, or None: what one module tells of its output."""
    name = type(module).__name__
    if name in _ELEMENTWISE or (name.startswith("Dropout") and "dropout" in type(module).__module__):
        return "elementwise"
    if name == "PReLU":
        return "elementwise" if module.num_parameters == 1 else "first"
    if name == "Permute" and hasattr(module, "dims"):
        return "permute"
    if isinstance(module, _CHANNELS_FIRST) or name.endswith("2d") or type(module).__module__ in (
            "torch.nn.modules.pooling", "torch.nn.modules.padding"):
        return "first"
    if isinstance(module, nn.Linear) or name == "LayerScale":
        return "last"
    if isinstance(module, (nn.LayerNorm, getattr(nn, "RMSNorm", nn.LayerNorm))):
        shape = tuple(module.normalized_shape)
        return "last" if len(shape) == 1 and shape[0] == out_shape[-1] else None
    return None


def _previous(leaves: Sequence[Leaf], i: int, shape) -> int | None:
    """The last leaf before ``i`` whose output has ``shape``."""
    return next((j for j in range(i - 1, -1, -1) if leaves[j].out_shape == shape), None) if shape else None


def _axis_at(leaves: Sequence[Leaf], i: int | None, depth: int = 0) -> int | None:
    """The channel axis (1 or 3) of leaf ``i``'s 4-D output, walking back through elementwise modules."""
    while i is not None and depth < 32:
        leaf = leaves[i]
        says = _says(leaf.module, leaf.out_shape)
        if says == "first":
            return 1
        if says == "last":
            return 3
        if says == "permute":
            dims = [int(d) for d in leaf.module.dims]
            before = _axis_at(leaves, _previous(leaves, i, leaf.in_shape), depth + 1)
            if before is None:  # its input is not told: take it as the usual conversion
                before = {(0, 2, 3, 1): 1, (0, 3, 1, 2): 3}.get(tuple(dims))
            return dims.index(before) if before in dims else None
        if says != "elementwise":
            return None
        i, depth = _previous(leaves, i, leaf.in_shape), depth + 1
    return None


def channel_axis(leaves: Sequence[Leaf], out_shape: tuple[int, ...], layer: str = "") -> int:
    """The channel axis of a layer's 4-D output: 1 ([B, C, H, W]) or 3 ([B, H, W, C]).

    The modules decide where they can: from the last leaf whose output has the
    layer's output shape, walking back, Conv / BatchNorm2d / pooling say
    channels-first, Linear / LayerNorm over the last dimension channels-last,
    torchvision's ``Permute`` applies its dims, elementwise modules pass on.
    Where nothing decides, the shape: a square grid before the last axis is
    channels-last, else channels-first (as before); [B, n, n, n] is an error.
    """
    start = next((j for j in range(len(leaves) - 1, -1, -1)  # the batch may differ (a probe of one image)
                  if leaves[j].out_shape and leaves[j].out_shape[1:] == tuple(out_shape[1:])), None)
    axis = _axis_at(leaves, start)
    if axis in (1, 3):
        return axis
    _, a, b, c = out_shape
    if a == b == c:
        raise DoraError(
            f"layer {layer!r} gives {tuple(out_shape)}, which may be [B, C, H, W] or [B, H, W, C], and its modules "
            "do not say which: choose another --layer (or another --image-size)"
        )
    return 3 if a == b else 1
