"""A private model's graph, the program steps it makes, and the program's fingerprint.

The graph is a list of layer dicts (``{"layer": "Conv2d", "stride": [1, 1], ...}``:
options only, nothing executable). :func:`build_steps` turns it, with the input's and
the weights' shapes, into the steps of a forward program (``program.py``), without
their dealer labels. The notebook builds a forward with it and adds labels; a party
that is sent the graph builds the steps itself and refuses steps that differ (other
than in labels), so the readers its data owners allowed *for this graph*
(:func:`~ppdl_nb.workers.core.policy.program_policy` with :func:`fingerprint`) read
the output, and a swapped-in graph (an identity, say) opens nothing to them.

>>> g = [{"layer": "Linear", "bias": True}, {"layer": "ReLU"}]
>>> steps, layer_of, shapes = build_steps(g, [4, 3], [[2, 3], [2]], 16)
>>> [s["op"] for s in steps], layer_of, shapes
(['local', 'bilinear', 'local', 'nonlinear'], [0, 0, 0, 1], [[4, 2], [4, 2]])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GRAPH_LAYERS", "build_steps", "digest", "fingerprint", "layer_specs",
           "normalized", "without_labels"]

_META = torch.device("meta")
_POOL_KEYS = ("kernel_size", "stride", "padding")
_CONV_KEYS = ("stride", "padding", "dilation", "groups")


_SPECS: dict[type, Callable[[nn.Module], dict[str, Any]]] = {
    nn.Linear: lambda m: {"layer": "Linear", "bias": m.bias is not None},
    nn.ReLU: lambda m: {"layer": "ReLU"},
    nn.Flatten: lambda m: {"layer": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim},
    nn.Conv2d: lambda m: {"layer": "Conv2d", "bias": m.bias is not None,
                          "stride": list(m.stride), "dilation": list(m.dilation),
                          "padding": m.padding if isinstance(m.padding, str)
                          else list(m.padding), "groups": m.groups,
                          "padding_mode": m.padding_mode},
    nn.MaxPool2d: lambda m: {"layer": "MaxPool2d", "kernel_size": m.kernel_size,
                             "stride": m.stride, "padding": m.padding,
                             "dilation": m.dilation, "ceil_mode": m.ceil_mode},
    nn.AvgPool2d: lambda m: {"layer": "AvgPool2d", "kernel_size": m.kernel_size,
                             "stride": m.stride, "padding": m.padding,
                             "ceil_mode": m.ceil_mode,
                             "count_include_pad": m.count_include_pad,
                             "divisor_override": m.divisor_override},
}


def layer_specs(layers: Sequence[nn.Module]) -> list[dict[str, Any]]:
    """The layers as a graph names them (options only, nothing executable): what a
    training program and a forward program carry."""
    out = []
    for layer in layers:
        spec = _SPECS.get(type(layer))
        if spec is None:
            raise TypeError(f"{type(layer).__name__} cannot run on shares yet; a private "
                            f"model takes {', '.join(t.__name__ for t in _SPECS)}")
        out.append(spec(layer))
    return out


class _Steps:
    def __init__(self, x_slots: int) -> None:
        self.steps: list[dict[str, Any]] = []
        self.layer_of: list[int] = []
        self.first = x_slots  # slots 0 .. first-1 are the inputs

    def add(self, layer: int, step: dict[str, Any]) -> int:
        self.steps.append(step)
        self.layer_of.append(layer)
        return self.first + len(self.steps) - 1


def _linear(b: _Steps, k: int, spec: dict, cur: int, w: list[int], shape: list[int],
            ws: list[list[int]], f: int) -> tuple[int, list[int]]:
    wt = b.add(k, {"op": "local", "fn": "t", "x": [w[0]], "params": {}})
    out = list(torch.matmul(torch.empty(shape, device=_META),
                            torch.empty(ws[0][::-1], device=_META)).shape)
    cur = b.add(k, {"op": "bilinear", "kind": "matmul", "frac_bits": f, "x": cur, "y": wt,
                    "params": {"x_shape": shape, "y_shape": ws[0][::-1]}})
    if len(w) > 1:
        cur = b.add(k, {"op": "local", "fn": "add", "x": [cur, w[1]], "params": {}})
    return cur, out


def _conv(b: _Steps, k: int, spec: dict, cur: int, w: list[int], shape: list[int],
          ws: list[list[int]], f: int) -> tuple[int, list[int]]:
    params = {"x_shape": shape, "w_shape": ws[0], **{key: spec[key] for key in _CONV_KEYS}}
    out = list(F.conv2d(torch.empty(shape, device=_META), torch.empty(ws[0], device=_META),
                        **{key: spec[key] for key in _CONV_KEYS}).shape)
    cur = b.add(k, {"op": "bilinear", "kind": "conv2d", "frac_bits": f, "x": cur, "y": w[0],
                    "params": params})
    if len(w) > 1:
        bias = b.add(k, {"op": "local", "fn": "reshape", "x": [w[1]],
                         "params": {"shape": [1, -1, 1, 1]}})
        cur = b.add(k, {"op": "local", "fn": "add", "x": [cur, bias], "params": {}})
    return cur, out


def _comparison(fn: str, meta: Callable[..., torch.Tensor]) -> Callable[..., Any]:
    def build(b: _Steps, k: int, spec: dict, cur: int, w: list[int], shape: list[int],
              ws: list[list[int]], f: int) -> tuple[int, list[int]]:
        params = {key: spec[key] for key in _POOL_KEYS if key in spec}
        out = list(meta(torch.empty(shape, device=_META), **params).shape)
        return b.add(k, {"op": "nonlinear", "fn": fn, "params": params, "x": [cur],
                         "in_shape": shape}), out
    return build


def _flatten(b: _Steps, k: int, spec: dict, cur: int, w: list[int], shape: list[int],
             ws: list[list[int]], f: int) -> tuple[int, list[int]]:
    out = list(torch.empty(shape, device=_META).flatten(spec["start_dim"],
                                                        spec["end_dim"]).shape)
    return b.add(k, {"op": "local", "fn": "reshape", "x": [cur], "params": {"shape": out}}), out


GRAPH_LAYERS: dict[str, Callable[..., tuple[int, list[int]]]] = {
    "Linear": _linear, "Conv2d": _conv, "Flatten": _flatten,
    "ReLU": _comparison("relu", lambda x: F.relu(x)),
    "MaxPool2d": _comparison("max_pool2d", F.max_pool2d),
    "AvgPool2d": _comparison("avg_pool2d", F.avg_pool2d),
}


def build_steps(graph: Sequence[dict[str, Any]], x_shape: Sequence[int],
                weight_shapes: Sequence[Sequence[int]], frac_bits: int
                ) -> tuple[list[dict[str, Any]], list[int], list[list[int]]]:
    """The forward's steps (no labels), the layer of each step, each layer's output shape.

    Slot 0 is the input, then the weights in the layers' order (``weight_shapes``)."""
    if not isinstance(graph, list) or not graph:
        raise ValueError("a graph is a non-empty list of layer dicts")
    b, shape, at, shapes = _Steps(1 + len(weight_shapes)), list(x_shape), 1, []
    cur = 0
    for k, spec in enumerate(graph):
        build = GRAPH_LAYERS.get(spec.get("layer")) if isinstance(spec, dict) else None
        if build is None:
            raise ValueError(f"a graph's layers are dicts naming one of "
                             f"{', '.join(GRAPH_LAYERS)}, got {spec!r}")
        n = (2 if spec.get("bias", True) else 1) if spec["layer"] in ("Linear", "Conv2d") \
            else 0
        w = list(range(at, at + n))
        try:
            cur, shape = build(b, k, spec, cur, w, shape,
                               [list(weight_shapes[j - 1]) for j in w], frac_bits)
        except (KeyError, IndexError, TypeError, RuntimeError) as exc:
            raise ValueError(f"layer {k} ({spec['layer']}) does not fit the graph's shapes "
                             f"or options: {exc}") from None
        at += n
        shapes.append(shape)
    if at != 1 + len(weight_shapes):
        raise ValueError(f"the graph takes {at - 1} weight tensors, {len(weight_shapes)} "
                         "were given")
    return b.steps, b.layer_of, shapes


def normalized(value: Any) -> Any:
    """``value`` as JSON would carry it (tuples as lists)."""
    return json.loads(json.dumps(value))


def without_labels(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if any(not isinstance(s, dict) for s in steps):
        raise TypeError("a program step is a dict")
    return normalized([{k: v for k, v in s.items() if k not in ("label", "trunc_label")}
                       for s in steps])


def fingerprint(graph: Sequence[dict[str, Any]], owner: str, frac_bits: int) -> str:
    """The name of a private forward in allowances: a hash of its graph, the weights'
    owner and the precision (16 hex digits)."""
    return digest({"kind": "inference", "graph": normalized(list(graph)), "owner": owner,
                   "frac_bits": frac_bits})


def digest(program: Any) -> str:
    """A program's name in allowances: 16 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(program, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
