"""Find a layer by name, and truncate a model at it (nothing after the layer runs).

The truncated model returns the layer's output as a map [B, C, H, W], whatever
its layout (:mod:`.outputs`: conv maps, channels-last maps, transformer tokens).
"""
from __future__ import annotations

import copy
import difflib

import torch
from torch import nn

from ..errors import DoraError
from .loading import freeze
from .outputs import TOKEN_VIEWS, Leaf, channel_axis, layer_run, map_of, token_layout

__all__ = ["LayerModel", "default_layer", "get_layer", "layer_view_key"]

def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module with a dotted name; a wrong name lists the nearest ones."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f"; nearest: {', '.join(close)}" if close else f"; layers are e.g. {', '.join(names[-5:])}"
    raise DoraError(f"the model has no layer {name!r}{hint}")


def default_layer(model: nn.Module, image_size: int = 224) -> str:
    """The layer DORA analyses by default.

    Runs one dummy forward pass. A transformer's is its last block: where the
    last block to finish (an element, with children, of a Sequential or
    ModuleList of repeated blocks) gives tokens [B, L, C] or a channels-last
    map, that block (torchvision ViT ``encoder.layers.encoder_layer_11``,
    timm ``blocks.11``, torchvision Swin ``features.7``). Otherwise the layer
    that feeds the classifier: among the modules whose output is a 4-D map
    with more than one position, the last one to finish (a container finishes
    after its children, so ``layer4`` wins over ``layer4.1.relu``).
    """
    if isinstance(model, torch.jit.ScriptModule) or (
        isinstance(model, torch.fx.GraphModule) and _module_stack_paths(model)
    ):
        return _default_child(model, image_size)
    finished: list[tuple[str, tuple[int, ...], int]] = []  # name, output shape, leaves run by then
    leaves: list[Leaf] = []
    handles = []
    for name, module in model.named_modules():
        if not name or isinstance(module, torch.jit.ScriptModule):
            continue
        is_leaf = next(module.children(), None) is None

        def hook(mod, inp, out, name=name, is_leaf=is_leaf):
            if is_leaf:
                first = next((a for a in inp if isinstance(a, torch.Tensor)), None)
                leaves.append(Leaf(mod, _shape(first), _shape(out)))
            if isinstance(out, torch.Tensor):
                finished.append((name, tuple(out.shape), len(leaves)))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except Exception as e:
        raise DoraError(
            f"the model does not run on a {image_size}x{image_size} image ({type(e).__name__}: {e}); "
            "set --image-size, or name the layer with --layer"
        ) from e
    finally:
        for h in handles:
            h.remove()
    block = _last_token_block(model, finished, leaves)
    if block is not None:
        return block
    spatial = [n for n, s, _ in finished if len(s) == 4 and s[2] * s[3] > 1]
    if spatial:
        return spatial[-1]
    maps = [n for n, s, _ in finished if len(s) == 4]
    if maps:
        return maps[-1]
    raise DoraError("no convolutional layer found to analyse (no 4-D output): name one with --layer")


def _shape(t) -> tuple[int, ...] | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def _last_token_block(model: nn.Module, finished, leaves) -> str | None:
    """The last block to finish, where it gives tokens or a channels-last map; else None (a CNN)."""
    modules = dict(model.named_modules())
    blocks = [(n, s, k) for n, s, k in finished if len(s) in (3, 4) and _is_block(n, modules)]
    if not blocks:
        return None
    name, shape, k = blocks[-1]
    if len(shape) == 3:
        return name
    try:
        return name if channel_axis(leaves[:k], shape, name) == 3 else None
    except DoraError:
        return None


def _is_block(name: str, modules: dict[str, nn.Module]) -> bool:
    """An element with children of a Sequential / ModuleList that holds another of its type."""
    module = modules[name]
    parent = modules[name.rpartition(".")[0]]
    if not isinstance(parent, (nn.Sequential, nn.ModuleList)) or next(module.children(), None) is None:
        return False
    return sum(type(m) is type(module) for m in parent.children()) >= 2


def _default_child(model: nn.Module, image_size: int) -> str:
    """For TorchScript / torch.export models: the last top-level child with a spatial map output."""
    for name, _ in reversed(list(model.named_children())):
        try:
            with torch.no_grad():
                out = LayerModel(model, name)(torch.zeros(1, 3, image_size, image_size))
        except Exception:
            continue
        if out.shape[2] * out.shape[3] > 1:
            return name
    raise DoraError("no layer with a spatial output found in this model file: name one with --layer")


class _Stop(Exception):
    pass


def layer_view_key(layer: str, tokens: str = "patches", prefix_tokens: int | None = None) -> str:
    """A layer and how its output is viewed, as a cache key: the name alone for a map or a transformer's
    patch tokens; ``[cls]`` for its class token, ``[prefix=N]`` where the prefix tokens were given."""
    key = layer + ("[cls]" if tokens == "cls" else "")
    return key + (f"[prefix={prefix_tokens}]" if prefix_tokens is not None else "")


class LayerModel(nn.Module):
    """The model truncated at one layer: ``forward(x)`` returns that layer's output as a map [B, C, H, W].

    Uses torchvision's ``create_feature_extractor`` (so nothing after the layer
    runs) and falls back to a forward hook that stops the forward pass with an
    exception where the model does not trace.

    The output's layout is read once, on the first call (:mod:`.outputs`):
    a [B, C, H, W] map as is, [B, C] as a 1x1 map, a channels-last
    [B, H, W, C] map permuted (told from the modules that run inside the
    layer), transformer tokens [B, P + T, C] as their T patch tokens on a
    sqrt(T) x sqrt(T) grid. ``tokens="cls"`` gives the class token instead,
    as a 1x1 map. ``prefix_tokens``: how many class and register tokens come
    first (default: what the model says, else inferred from the count).
    """

    def __init__(self, model: nn.Module, layer: str, tokens: str = "patches", prefix_tokens: int | None = None):
        super().__init__()
        get_layer(model, layer)
        if tokens not in TOKEN_VIEWS:
            raise DoraError(f"unknown token view {tokens!r}: use {' or '.join(TOKEN_VIEWS)}")
        self.layer = layer
        self.tokens = tokens
        self.token_layout = token_layout(model, prefix_tokens)
        self.traced = False
        self.body: nn.Module = model
        self._source = (model,)  # a tuple: not a sub-module (its modules may be the body's)
        self._kind: str | None = None
        self._script_fn = None
        if isinstance(model, torch.jit.ScriptModule):
            self._script_fn = _script_truncate(model, layer)
        elif isinstance(model, torch.fx.GraphModule) and _module_stack_paths(model):
            self.body = _fx_truncate(model, layer)
            self.traced = True
        else:
            try:
                from torchvision.models.feature_extraction import create_feature_extractor

                self.body = create_feature_extractor(model, return_nodes={layer: "out"})
                self.traced = True
            except Exception:
                self.body = model
        freeze(self.body)

    @property
    def view_key(self) -> str:
        """The layer and how its output is viewed (a cache key: the same string, the same maps)."""
        return layer_view_key(self.layer, self.tokens, self.token_layout.prefix if self.token_layout.given else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._raw(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if self._kind is None:
            self._kind = self._output_kind(out, x)
        return map_of(out, self._kind, self.token_layout, self.tokens, self.layer)

    def _output_kind(self, out: torch.Tensor, x: torch.Tensor) -> str:
        """``"map"``, ``"channels_last"`` or ``"tokens"``: how to read the layer's output."""
        if out.ndim == 2:
            return "map"
        if out.ndim == 3:
            return "tokens"
        if out.ndim != 4:
            raise DoraError(f"the layer's output has shape {tuple(out.shape)}; dora-clean needs [B, C, H, W], "
                            "[B, H, W, C], transformer tokens [B, 1 + T, C] or [B, C]")
        source = self._source[0]
        leaves = []
        exported = isinstance(source, torch.fx.GraphModule) and _module_stack_paths(source)
        if not isinstance(source, torch.jit.ScriptModule) and not exported:  # those have no modules to hook
            leaves, _ = layer_run(source, self.layer, x[:1].detach())
        axis = channel_axis(leaves, tuple(out.shape), self.layer)
        return "channels_last" if axis == 3 else "map"

    def _raw(self, x: torch.Tensor):
        """The layer's output as the model gives it."""
        if self._script_fn is not None:
            return self._script_fn(self.body._c, x)
        if self.traced:
            try:
                out = self.body(x)
            except AssertionError as e:
                if "Guard failed" not in str(e):
                    raise
                raise DoraError(
                    f"the exported model does not take this input ({e}): export it with dynamic_shapes "
                    "for the batch dimension and the input size set by --image-size"
                ) from e
            return out["out"] if isinstance(out, dict) else out
        out: list[torch.Tensor] = []

        def hook(mod, inp, output):
            out.append(output)
            raise _Stop

        handle = get_layer(self.body, self.layer).register_forward_hook(hook)
        try:
            self.body(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not out:
            raise DoraError(f"layer {self.layer!r} did not run in the model's forward pass: choose another --layer")
        return out[0]


def _script_truncate(model: torch.jit.ScriptModule, layer: str):
    """A function (self, x) -> the output of ``layer``, cut out of a TorchScript model's graph.

    Follows the model's own methods (``forward`` -> ``_forward_impl``) to the
    call of ``layer.forward`` and makes that call's result the graph's output.
    """
    found = _find_script_call(model, "forward", layer, depth=0)
    if found is None:
        raise DoraError(
            f"layer {layer!r} is not called from this TorchScript model's forward: give a layer its forward "
            "calls directly (like layer4), or save the model with torch.export instead"
        )
    method, index = found
    graph = model._c._get_method(method).graph.copy()
    node = list(graph.nodes())[index]
    graph.return_node().replaceInput(0, node.output())
    torch._C._jit_pass_dce(graph)
    return torch._C._create_function_from_graph(f"dora_truncated_{method}", graph)


def _find_script_call(model, method: str, layer: str, depth: int):
    if depth > 4:
        return None
    graph = model._c._get_method(method).graph
    self_name = next(iter(graph.inputs())).debugName()
    for i, node in enumerate(graph.nodes()):
        if node.kind() != "prim::CallMethod":
            continue
        obj = node.inputsAt(0)
        if obj.debugName() == self_name:
            found = _find_script_call(model, node.s("name"), layer, depth + 1)
            if found:
                return found
            continue
        names, v = [], obj
        while v.node().kind() == "prim::GetAttr":
            names.append(v.node().s("name"))
            v = v.node().inputsAt(0)
        if v.debugName() == self_name and ".".join(reversed(names)) == layer and node.s("name") == "forward":
            return method, i
    return None


def _module_stack_paths(node_or_gm) -> list[str]:
    """Module paths recorded by torch.export on a node (or on any node of a GraphModule)."""
    if isinstance(node_or_gm, torch.fx.GraphModule):
        return [p for n in node_or_gm.graph.nodes for p in _module_stack_paths(n)]
    stack = node_or_gm.meta.get("nn_module_stack") or {}
    paths = []
    for value in stack.values():
        path = value[0] if isinstance(value, tuple) else str(value)
        paths.append(path.replace("L['self'].", "").replace("L__self__.", ""))
    return paths


def _fx_truncate(gm: torch.fx.GraphModule, layer: str) -> torch.fx.GraphModule:
    """Cut a torch.export module after the last operation that belongs to ``layer``."""


    gm = copy.deepcopy(gm)
    graph = gm.graph
    last = None
    for node in graph.nodes:
        if node.op == "call_function" and layer in _module_stack_paths(node):
            last = node
    if last is None:
        raise DoraError(f"layer {layer!r} runs no operation in this exported model: choose another --layer")
    output = next(n for n in graph.nodes if n.op == "output")
    old = output.args[0]
    output.args = ((last,) if isinstance(old, (tuple, list)) else last,)
    graph.eliminate_dead_code()
    gm.recompile()
    return gm
