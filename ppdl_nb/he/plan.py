"""What HE can evaluate: a model's layers as a plan of affine maps and squares.

CKKS adds and multiplies; nothing else. A model qualifies if it is a chain of
``Conv2d`` (first layer only: one input channel, no padding, no dilation), ``Linear``,
squares (``x * x`` or ``x ** 2``) and flattens. Each affine layer and each square
spends one level of the modulus chain. Any other layer (ReLU, pooling, softmax, ...)
raises :class:`UnsupportedLayerError` saying what to use instead.

>>> import torch
>>> class Sq(torch.nn.Module):
...     def forward(self, x):
...         return x * x
>>> plan = compile_plan(torch.nn.Sequential(torch.nn.Linear(4, 3), Sq(), torch.nn.Linear(3, 2)))
>>> [layer.kind for layer in plan.layers], plan.depth
(['linear', 'square', 'linear'], 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ppdl_nb.workers.core.modules import module_to_spec

__all__ = ["HELayer", "Plan", "UnsupportedLayerError", "compile_plan", "reference"]


class UnsupportedLayerError(ValueError):
    """A layer that homomorphic encryption (CKKS) cannot evaluate."""


@dataclass
class HELayer:
    """One step: ``conv`` (weight [C, kh, kw], stride), ``linear`` (weight [out, in]), or
    ``square``."""

    kind: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    name: str = ""


@dataclass
class Plan:
    layers: list[HELayer] = field(default_factory=list)

    @property
    def depth(self) -> int:
        """Levels the plan spends (one per affine layer and per square)."""
        return len(self.layers)

    @property
    def outputs(self) -> int:
        last = self.layers[-1]
        return int(last.weight.shape[0])

    def describe(self) -> list[dict[str, Any]]:
        """The public architecture: kinds and shapes, no weights."""
        return [{"kind": la.kind, "name": la.name, "stride": list(la.stride),
                 "shape": list(la.weight.shape) if la.weight is not None else []}
                for la in self.layers]


_UNSUPPORTED_HINT = ("HE evaluates only additions and multiplications: replace ReLU/Sigmoid/"
                     "Tanh by a square activation (x * x), pooling by a strided convolution, "
                     "drop softmax (apply it after decryption), and retrain")


def compile_plan(model: torch.nn.Module | dict) -> Plan:
    """The HE plan of ``model`` (a module or its wire spec); UnsupportedLayerError if none."""
    spec = model if isinstance(model, dict) else module_to_spec(model)
    state, layers = spec["state"], spec.get("layers", {})
    plan, last = Plan(), None
    for node in spec["nodes"]:
        op, target, args = node["op"], node["target"], node["args"]
        if op == "placeholder":
            last = node["name"]
            continue
        if op == "output":
            break
        inputs = [a["node"] for a in args if isinstance(a, dict) and "node" in a]
        if not inputs or inputs[0] != last:
            raise UnsupportedLayerError(f"{node['name']}: HE plans are a chain of layers (a "
                                        "single layer goes in nn.Sequential); branches and "
                                        "skip connections are not supported")
        step = _step(node, op, target, args, inputs, layers, state)
        if step is not None:
            if step.kind == "conv" and plan.layers:
                raise UnsupportedLayerError(f"{node['name']}: a convolution must be the first "
                                            "layer (its input is packed by the data owner)")
            plan.layers.append(step)
        last = node["name"]
    if not plan.layers or plan.layers[-1].kind == "square":
        raise UnsupportedLayerError("an HE plan must end with a Linear layer (the logits)")
    return plan


def _step(node: dict, op: str, target: str, args: tuple, inputs: list[str],
          layers: dict, state: dict) -> HELayer | None:
    name = node["name"]
    if op == "call_function" and target == "operator.mul" and inputs == [inputs[0]] * 2 \
            and len(args) == 2:
        return HELayer("square", name=name)
    if op == "call_function" and target == "operator.pow" and len(args) == 2 and args[1] == 2:
        return HELayer("square", name=name)
    if op == "call_method" and target in ("Tensor.view", "Tensor.reshape", "Tensor.flatten"):
        return None  # our packing is already flat (channel-major, like torch)
    if op == "call_module":
        lspec = layers[target]
        kind, kw = lspec["type"], lspec["kwargs"]
        if kind == "Flatten":
            return None
        if kind not in ("Linear", "Conv2d"):
            raise UnsupportedLayerError(f"layer {target} ({kind}) cannot be evaluated under "
                                        f"HE. {_UNSUPPORTED_HINT}")
        bias = state.get(f"{target}.bias")
        weight = state[f"{target}.weight"].detach().double()
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else \
            bias.detach().double()
        if kind == "Linear":
            return HELayer("linear", weight, bias, name=target)
        if kind == "Conv2d":
            if kw["in_channels"] != 1 or kw["groups"] != 1 or any(kw["padding"]) or \
                    tuple(kw["dilation"]) != (1, 1):
                raise UnsupportedLayerError(
                    f"{target}: HE convolutions take one input channel, no padding, no "
                    f"dilation (got {kw}); pad the image before encrypting instead")
        return HELayer("conv", weight[:, 0], bias, tuple(kw["stride"]), name=target)
    raise UnsupportedLayerError(f"{name} ({target}) cannot be evaluated under HE. "
                                f"{_UNSUPPORTED_HINT}")


def windows(plan: Plan, image: tuple[int, int]) -> int:
    """Output positions of the first convolution on an ``image``-sized input."""
    conv = plan.layers[0]
    kh, kw = conv.weight.shape[1:]
    return ((image[0] - kh) // conv.stride[0] + 1) * ((image[1] - kw) // conv.stride[1] + 1)


def features(plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """The data owner's input rows [batch, n]: im2col patches (window-major) for a conv
    plan, flattened inputs otherwise."""
    first = plan.layers[0]
    if first.kind == "conv":
        img = x.reshape(x.shape[0], 1, *image_shape(x))
        cols = F.unfold(img.double(), first.weight.shape[1:], stride=first.stride)
        return cols.transpose(1, 2).reshape(x.shape[0], -1)  # index = window * K + k
    return x.reshape(x.shape[0], -1).double()


def features_from_description(first: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """:func:`features` from the first layer's public description (``Plan.describe``),
    for the data owner, who has no weights."""
    if first["kind"] != "conv":
        return x.reshape(x.shape[0], -1).double()
    shape = first["shape"]
    fake = Plan([HELayer("conv", torch.ones(shape[0], *shape[1:]), torch.zeros(shape[0]),
                         tuple(first.get("stride", (1, 1))))])
    return features(fake, x)


def image_shape(x: torch.Tensor) -> tuple[int, int]:
    """The (H, W) of images given as [B, H, W], [B, 1, H, W] or [B, H*W] (square)."""
    if x.dim() >= 3:
        return int(x.shape[-2]), int(x.shape[-1])
    side = int(round(x.shape[1] ** 0.5))
    if side * side != x.shape[1]:
        raise ValueError(f"rows of {x.shape[1]} values are no square image; pass [B, H, W]")
    return side, side


def first_matrix(plan: Plan, n_features: int) -> torch.Tensor:
    """The first layer as a dense matrix from :func:`features` to its flat output."""
    first = plan.layers[0]
    if first.kind == "linear":
        return first.weight
    c = first.weight.shape[0]
    k = first.weight[0].numel()
    p = n_features // k
    m = torch.zeros(c * p, n_features, dtype=torch.float64)
    kern = first.weight.reshape(c, k)
    for w in range(p):
        m[w::p, w * k:(w + 1) * k] = kern  # output c * p + w
    return m


def first_bias(plan: Plan, rows: int) -> torch.Tensor:
    first = plan.layers[0]
    return first.bias.repeat_interleave(rows // first.bias.numel()) if first.kind == "conv" \
        else first.bias


def reference(plan: Plan, x: torch.Tensor) -> list[torch.Tensor]:
    """Plaintext activations after each layer, [batch, n] float64 (for differential checks)."""
    h = features(plan, x)
    m = first_matrix(plan, h.shape[1])
    h = h @ m.T + first_bias(plan, m.shape[0])
    out = [h]
    for layer in plan.layers[1:]:
        h = h * h if layer.kind == "square" else h @ layer.weight.T + layer.bias
        out.append(h)
    return out
