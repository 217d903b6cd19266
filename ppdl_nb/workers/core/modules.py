"""Models on the wire: an architecture description plus weights, never a pickle.

A model is traced with ``torch.fx`` into a graph whose every node must be an
allowlisted layer (:data:`LAYERS`, rebuilt from its constructor arguments), an
allowlisted operation (``ops.OPS``) or a read of the model's own tensors. The
receiver rebuilds an :class:`RebuiltModule` that interprets that graph; weights
travel as tensors through the codec. A payload naming anything else is refused:
no unpickling, no ``torch.export`` archive loaded as is, no name resolved by
walking attributes.

>>> m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
>>> r = module_from_spec(module_to_spec(m))
>>> torch.equal(r(torch.ones(1, 3)), m(torch.ones(1, 3)))
True
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch import nn

from ppdl_nb.workers.core import ops

__all__ = ["LAYERS", "ModelPayloadError", "RebuiltModule", "module_from_spec", "module_to_spec"]


class ModelPayloadError(ValueError):
    """A model description names something outside the allowlist, or is malformed."""


# layer name -> (class, constructor argument names read from an instance)
LAYERS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {}


def layer(cls: type[nn.Module], *args: str) -> None:
    """Allow ``cls`` to travel, rebuilt as ``cls(**{a: instance.a for a in args})``."""
    LAYERS[cls.__name__] = (cls, args)


layer(nn.Linear, "in_features", "out_features")
for _conv in (nn.Conv1d, nn.Conv2d):
    layer(_conv, "in_channels", "out_channels", "kernel_size", "stride", "padding",
          "dilation", "groups")
layer(nn.Embedding, "num_embeddings", "embedding_dim", "padding_idx")
layer(nn.LayerNorm, "normalized_shape", "eps", "elementwise_affine")
layer(nn.GroupNorm, "num_groups", "num_channels", "eps", "affine")
layer(nn.BatchNorm1d, "num_features", "eps", "momentum", "affine", "track_running_stats")
layer(nn.BatchNorm2d, "num_features", "eps", "momentum", "affine", "track_running_stats")
for _pool in (nn.MaxPool2d, nn.AvgPool2d):
    layer(_pool, "kernel_size", "stride", "padding")
layer(nn.AdaptiveAvgPool2d, "output_size")
layer(nn.Dropout, "p")
layer(nn.Flatten, "start_dim", "end_dim")
layer(nn.Softmax, "dim")
layer(nn.LogSoftmax, "dim")
layer(nn.LeakyReLU, "negative_slope")
layer(nn.ELU, "alpha")
for _act in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Identity, nn.Softplus):
    layer(_act)

_OPERATORS = {operator.add: "operator.add", operator.sub: "operator.sub",
              operator.mul: "operator.mul", operator.truediv: "operator.truediv",
              operator.matmul: "operator.matmul", operator.neg: "operator.neg",
              operator.getitem: "operator.getitem", operator.pow: "operator.pow",
              getattr: "attr"}


def _layer_spec(module: nn.Module) -> dict[str, Any]:
    name = type(module).__name__
    if name not in LAYERS or LAYERS[name][0] is not type(module):
        raise ModelPayloadError(
            f"layer {type(module).__qualname__} cannot travel: only these layers are rebuilt "
            f"on workers: {sorted(LAYERS)}. Write it from those (and torch functions) instead"
        )
    kwargs = {a: getattr(module, a) for a in LAYERS[name][1]}
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
        kwargs["bias"] = module.bias is not None
    return {"type": name, "kwargs": kwargs}


def _encode_arg(arg: Any) -> Any:
    if isinstance(arg, torch.fx.Node):
        return {"node": arg.name}
    if isinstance(arg, tuple):
        return tuple(_encode_arg(a) for a in arg)
    if isinstance(arg, list):
        return [_encode_arg(a) for a in arg]
    if isinstance(arg, dict):
        return {"map": {k: _encode_arg(v) for k, v in arg.items()}}
    if arg is None or isinstance(arg, bool | int | float | str | slice | torch.dtype):
        return arg
    if arg is Ellipsis:
        return arg
    raise ModelPayloadError(f"a graph argument of type {type(arg).__name__} cannot travel")


def module_to_spec(module: nn.Module) -> dict[str, Any]:
    """Describe ``module`` as plain data: graph, layers and weights."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    if isinstance(module, RebuiltModule):
        return module.spec()
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as exc:
        raise ModelPayloadError(
            f"{type(module).__name__} could not be traced into a graph ({exc}); models travel "
            "as graphs of allowlisted layers and ops, so forward() must not branch on data"
        ) from exc
    layers: dict[str, Any] = {}
    nodes: list[dict[str, Any]] = []
    for node in traced.graph.nodes:
        entry: dict[str, Any] = {"name": node.name, "op": node.op}
        if node.op == "call_module":
            layers[node.target] = _layer_spec(traced.get_submodule(node.target))
            entry["target"] = node.target
        elif node.op == "call_function":
            name = _OPERATORS.get(node.target) or ops.op_name(node.target)
            if name is None:
                raise ModelPayloadError(
                    f"function {getattr(node.target, '__name__', node.target)} is not in the "
                    "allowlist of operations a worker runs (ppdl_nb.workers.core.ops.OPS)"
                )
            entry["target"] = name
        elif node.op == "call_method":
            name = f"Tensor.{node.target}"
            if name not in ops.OPS:
                raise ModelPayloadError(f"tensor method {node.target!r} is not allowlisted")
            entry["target"] = name
        elif node.op in ("get_attr", "placeholder", "output"):
            entry["target"] = str(node.target)
        entry["args"] = _encode_arg(node.args)
        entry["kwargs"] = _encode_arg(dict(node.kwargs))
        nodes.append(entry)
    state = {k: v.detach() for k, v in module.state_dict().items()}
    params = sorted(name for name, _ in module.named_parameters())
    return {"format": 1, "nodes": nodes, "layers": layers, "state": state, "params": params}


class RebuiltModule(nn.Module):
    """A model rebuilt from a spec: allowlisted layers, interpreted graph, loaded weights."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self._spec_nodes, self._spec_layers = _check_spec(spec)
        for path, lspec in self._spec_layers.items():
            cls, _ = LAYERS[lspec["type"]]
            try:
                _set_path(self, path, cls(**lspec["kwargs"]))
            except TypeError as exc:
                raise ModelPayloadError(f"bad arguments for layer {path}: {exc}") from None
        state = spec.get("state", {})
        params = set(spec.get("params", []))
        own = self.state_dict()
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise ModelPayloadError(f"weight {key!r} is not a tensor")
            if key not in own:
                holder = nn.Parameter(value.clone()) if key in params else value.clone()
                _set_path(self, key, holder)
        missing = self.load_state_dict(state, strict=True)
        del missing
        self._program = self._compile()

    def _compile(self) -> list[tuple[str, str, Callable[..., Any] | str, Any, Any]]:
        program = []
        for node in self._spec_nodes:
            op, target = node["op"], node.get("target")
            fn: Callable[..., Any] | str
            if op in ("call_function", "call_method"):
                fn = ops.resolve(target)
            else:
                fn = target
            program.append((node["name"], op, fn, node.get("args", ()), node.get("kwargs", {})))
        return program

    def spec(self) -> dict[str, Any]:
        params = sorted(name for name, _ in self.named_parameters())
        state = {k: v.detach() for k, v in self.state_dict().items()}
        return {"format": 1, "nodes": self._spec_nodes, "layers": self._spec_layers,
                "state": state, "params": params}

    def forward(self, *inputs: Any) -> Any:
        env: dict[str, Any] = {}
        feed = iter(inputs)
        for name, op, fn, args, kwargs in self._program:
            if op == "placeholder":
                env[name] = next(feed)
                continue
            a, kw = _load(args, env), _load(kwargs, env)
            if op == "output":
                return a[0]
            if op == "call_module":
                env[name] = self.get_submodule(fn)(*a, **kw)
            elif op == "get_attr":
                env[name] = _get_path(self, fn)
            else:
                env[name] = fn(*a, **kw)
        raise ModelPayloadError("model graph has no output node")


def module_from_spec(spec: Any) -> RebuiltModule:
    """Rebuild a model from :func:`module_to_spec` output; refuse anything not allowlisted."""
    if not isinstance(spec, dict):
        raise ModelPayloadError("a model payload must be a map")
    return RebuiltModule(spec)


def _check_spec(spec: dict[str, Any]) -> tuple[list[dict], dict[str, dict]]:
    if spec.get("format") != 1:
        raise ModelPayloadError(f"unknown model format {spec.get('format')!r}; expected 1")
    nodes, layers = spec.get("nodes"), spec.get("layers")
    if not isinstance(nodes, list) or not isinstance(layers, dict):
        raise ModelPayloadError("a model payload needs 'nodes' (list) and 'layers' (map)")
    for path, lspec in layers.items():
        if not (isinstance(lspec, dict) and lspec.get("type") in LAYERS):
            kind = lspec.get("type") if isinstance(lspec, dict) else lspec
            raise ModelPayloadError(f"layer {path!r} of type {kind!r} is not allowlisted")
        if not isinstance(lspec.get("kwargs"), dict):
            raise ModelPayloadError(f"layer {path!r} needs a 'kwargs' map")
        _check_path(path)
    allowed_ops = {"placeholder", "get_attr", "call_module", "call_function",
                   "call_method", "output"}
    for node in nodes:
        if not isinstance(node, dict) or node.get("op") not in allowed_ops:
            raise ModelPayloadError(f"graph node {node!r} has an unknown op")
        target = node.get("target")
        if node["op"] in ("call_function", "call_method") and target not in ops.OPS:
            raise ModelPayloadError(f"graph node calls {target!r}, which is not allowlisted")
        if node["op"] == "call_module" and target not in layers:
            raise ModelPayloadError(f"graph node calls unknown layer {target!r}")
        if node["op"] == "get_attr":
            _check_path(target)
    return nodes, layers


def _check_path(path: Any) -> None:
    if not isinstance(path, str) or not all(p.isidentifier() or p.isdigit()
                                            for p in path.split(".")):
        raise ModelPayloadError(f"bad attribute path {path!r} in model payload")
    if any(p.startswith("_") for p in path.split(".")):
        raise ModelPayloadError(f"attribute path {path!r} may not name private attributes")


def _set_path(root: nn.Module, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = root
    for part in parents:
        child = node._modules.get(part)
        if child is None:
            child = nn.Module()
            node.add_module(part, child)
        node = child
    if isinstance(value, nn.Module):
        node.add_module(leaf, value)
    elif isinstance(value, nn.Parameter):
        node.register_parameter(leaf, value)
    else:
        node.register_buffer(leaf, value)


def _get_path(root: nn.Module, path: str) -> Any:
    node: Any = root
    for part in path.split("."):
        for table in (node._modules, node._parameters, node._buffers):
            if part in table:
                node = table[part]
                break
        else:
            raise ModelPayloadError(f"model has no tensor at {path!r}")
    return node


def _load(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if "node" in value:
            return env[value["node"]]
        return {k: _load(v, env) for k, v in value.get("map", {}).items()}
    if isinstance(value, tuple):
        return tuple(_load(v, env) for v in value)
    if isinstance(value, list):
        return [_load(v, env) for v in value]
    return value
