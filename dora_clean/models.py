"""Load a model, resolve a layer, and truncate the model at that layer.

A model spec is one of:

- a torchvision architecture name (``resnet18``), with an optional local
  weights file (a state dict; nothing is downloaded);
- ``path/to/file.py:ATTR`` or ``package.module:ATTR``, where ATTR is an
  ``nn.Module``, a class or a factory that returns one;
- a TorchScript file or a ``torch.export`` file (``.pt2``);
- ``None``: the bundled demo model.
"""
from __future__ import annotations

import difflib
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

from .errors import DoraError


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
        from .planted import load_demo_model

        model, info = load_demo_model()
        spec = "demo"
    elif ":" in spec and not Path(spec).exists():
        model = _from_attribute(spec)
    elif Path(spec).is_file():
        model = _from_file(Path(spec), trust_model_file)
    elif Path(spec).exists():
        raise DoraError(f"model file {spec} is a folder: give a model file, an architecture name or MODULE:ATTR")
    else:
        model = _from_torchvision(spec, weights)
        weights = None  # loaded already (it may set num_classes)
    if weights is not None:
        load_weights(model, weights, trust_model_file)
    freeze(model)
    return LoadedModel(model, spec, info)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, and no parameter wants a gradient."""
    try:
        model.eval()
    except NotImplementedError:  # torch.export modules are fixed in the mode they were exported in
        pass
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _from_torchvision(name: str, weights: str | Path | None) -> nn.Module:
    import torchvision.models as tvm

    names = tvm.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DoraError(
            f"unknown model {name!r}{hint}: give a torchvision architecture name, "
            "a model file, or path/to/file.py:ATTR"
        )
    kwargs: dict[str, Any] = {}
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        n = _classifier_outputs(state)
        if n is not None:
            kwargs["num_classes"] = n
    try:
        model = tvm.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError):
        model = tvm.get_model(name, weights=None)
    if state is not None:
        _load_state(model, state, str(weights))
    return model


def _classifier_outputs(state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes of a classification state dict (its last 2-D weight)."""
    last = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    return int(last[-1].shape[0]) if last else None


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
    """Read a state dict (also from ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise DoraError(f"weights file {path} does not exist")
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
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


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
    """The layer that feeds the classifier: the last module with a spatial map output.

    Runs one dummy forward pass and takes, among the modules whose output is a
    4-D map with more than one position, the last one to finish (a container
    finishes after its children, so ``layer4`` wins over ``layer4.1.relu``).
    """
    if isinstance(model, torch.jit.ScriptModule) or (
        isinstance(model, torch.fx.GraphModule) and _module_stack_paths(model)
    ):
        return _default_child(model, image_size)
    finished: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if not name or isinstance(module, torch.jit.ScriptModule):
            continue

        def hook(mod, inp, out, name=name):
            if isinstance(out, torch.Tensor):
                finished.append((name, tuple(out.shape)))

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
    spatial = [n for n, s in finished if len(s) == 4 and s[2] * s[3] > 1]
    if spatial:
        return spatial[-1]
    maps = [n for n, s in finished if len(s) == 4]
    if maps:
        return maps[-1]
    raise DoraError("no convolutional layer found to analyse (no 4-D output): name one with --layer")


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


class LayerModel(nn.Module):
    """The model truncated at one layer: ``forward(x)`` returns that layer's output.

    Uses torchvision's ``create_feature_extractor`` (so nothing after the layer
    runs) and falls back to a forward hook that stops the forward pass with an
    exception where the model does not trace.
    """

    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        get_layer(model, layer)
        self.layer = layer
        self.traced = False
        self.body: nn.Module = model
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._script_fn is not None:
            return _as_map(self._script_fn(self.body._c, x))
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
            return _as_map(out["out"] if isinstance(out, dict) else out)
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
        return _as_map(out[0])


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
    import copy

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


def _as_map(t: torch.Tensor) -> torch.Tensor:
    """[B, C] -> [B, C, 1, 1]; [B, C, H, W] as is."""
    if isinstance(t, (tuple, list)):
        t = t[0]
    if t.ndim == 2:
        return t[:, :, None, None]
    if t.ndim != 4:
        raise DoraError(f"the layer's output has shape {tuple(t.shape)}; dora-clean needs [B, C, H, W] or [B, C]")
    return t
