"""The notebook's side of a private forward run as one program (``spdz/program.py``).

:func:`run_program` turns a private model's layers into program steps, takes the labels
(and the dealer's requests) of every product and comparison from the session, exactly as
the layer-by-layer ops would (so randomness dealt ahead with ``session.deal_ahead`` is
used), and sends one request to each party and one to the dealer. The parties run every
layer peer to peer; each replies with its share of the output and per-step figures, from
which the per-layer chart is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ppdl_nb.tensors.fixed import FixedPrecisionTensor
from ppdl_nb.tensors.pointer import wrap_reply
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.tensors.spdz.session import NONLINEAR, MPCSession, out_shape
from ppdl_nb.workers.core.codec import Ref

__all__ = ["run_program"]

_POOLS = {nn.MaxPool2d: "max_pool2d", nn.AvgPool2d: "avg_pool2d"}


class _Builder:
    """Program steps for a chain of layers, the slots they read and the dealer's requests."""

    def __init__(self, session: MPCSession, x: FixedPrecisionTensor,
                 weights: Sequence[Sequence[FixedPrecisionTensor]]) -> None:
        self.session, self.f = session, x.frac_bits
        self.inputs = [x] + [w for ws in weights for w in ws]
        self.steps: list[dict[str, Any]] = []
        self.deal: list[Any] = []
        self.layer_of: list[int] = []  # the layer each step belongs to
        self.shape = list(x.shape)

    def add(self, layer: int, step: dict[str, Any]) -> int:
        self.steps.append(step)
        self.layer_of.append(layer)
        return len(self.inputs) + len(self.steps) - 1

    def product(self, layer: int, kind: str, params: dict[str, Any], x: int, y: int) -> int:
        (label, tlabel), deal = self.session.take(kind, params, self.f)
        self.deal.extend(deal)
        self.shape = out_shape(kind, params)
        return self.add(layer, {"op": "bilinear", "kind": kind, "params": params, "x": x,
                                "y": y, "label": label, "trunc_label": tlabel,
                                "frac_bits": self.f})

    def nonlinear(self, layer: int, fn: str, params: dict[str, Any], x: int,
                  shape: list[int]) -> int:
        (label, _), deal = self.session.take(NONLINEAR + fn,
                                             {"shapes": [self.shape], "params": params}, 0)
        self.deal.extend(deal)
        self.shape = shape
        return self.add(layer, {"op": "nonlinear", "fn": fn, "params": params, "x": [x],
                                "label": label})

    def local(self, layer: int, fn: str, x: list[int], **params: Any) -> int:
        return self.add(layer, {"op": "local", "fn": fn, "x": x, "params": params})


def _layer_steps(b: _Builder, k: int, layer: nn.Module, cur: int, w: list[int]) -> int:
    meta = layer(torch.empty(b.shape, device="meta"))  # the output's shape, no weights
    if isinstance(layer, nn.Linear):
        wt = b.local(k, "t", [w[0]])
        cur = b.product(k, "matmul", {"x_shape": b.shape,
                                      "y_shape": [layer.in_features, layer.out_features]},
                        cur, wt)
        return b.local(k, "add", [cur, w[1]]) if len(w) > 1 else cur
    if isinstance(layer, nn.Conv2d):
        params = {"x_shape": b.shape, "w_shape": list(layer.weight.shape),
                  "stride": layer.stride, "padding": layer.padding,
                  "dilation": layer.dilation, "groups": layer.groups}
        cur = b.product(k, "conv2d", params, cur, w[0])
        if len(w) > 1:
            bias = b.local(k, "reshape", [w[1]], shape=[1, -1, 1, 1])
            cur = b.local(k, "add", [cur, bias])
        return cur
    if isinstance(layer, nn.ReLU):
        return b.nonlinear(k, "relu", {}, cur, list(meta.shape))
    if type(layer) in _POOLS:
        params = {"kernel_size": layer.kernel_size, "stride": layer.stride,
                  "padding": layer.padding}
        return b.nonlinear(k, _POOLS[type(layer)], params, cur, list(meta.shape))
    if isinstance(layer, nn.Flatten):
        b.shape = list(meta.shape)
        return b.local(k, "reshape", [cur], shape=b.shape)
    raise TypeError(f"layer {type(layer).__name__} has no program steps")


def run_program(layers: Sequence[nn.Module], weights: Sequence[Sequence[FixedPrecisionTensor]],
                x: FixedPrecisionTensor) -> tuple[FixedPrecisionTensor, list[dict[str, Any]]]:
    """Run the chain ``layers`` (weights shared like ``x``) on ``x`` as one program; the
    output and, per layer, its rounds, the bytes of the openings the parties sent each
    other, and the seconds the parties spent in it (party 0's clock)."""
    session = x.child.session
    b = _Builder(session, x, weights)
    cur, slot, shapes = 0, 1, []
    for k, (layer, ws) in enumerate(zip(layers, weights, strict=True)):
        cur = _layer_steps(b, k, layer, cur, list(range(slot, slot + len(ws))))
        slot += len(ws)
        shapes.append(list(b.shape))  # the layer's output shape
    if not b.steps:  # a model of nothing but Dropout/Identity
        return x, []
    label = session.label()

    def args(i: int) -> dict[str, Any]:
        return {"label": label, "steps": b.steps,
                "inputs": [Ref(t.child.shares[i].id_at_location) for t in b.inputs]}

    replies = session.run("program", args, b.deal, name="private forward")
    parts = [wrap_reply(p, r["result"], p.context)
             for p, r in zip(session.parties, replies, strict=True)]
    out = FixedPrecisionTensor(SharedTensor(parts, session), b.f)
    return out, _per_layer(layers, shapes, b, replies[0].get("extra") or [], session.n)


def _per_layer(layers: Sequence[nn.Module], shapes: list[list[int]], b: _Builder,
               figures: list[Any], n: int) -> list[dict[str, Any]]:
    stats = [{"layer": type(layer).__name__, "shape": shape, "rounds": 0, "bytes": 0,
              "seconds": 0.0} for layer, shape in zip(layers, shapes, strict=True)]
    for k, (rounds, sent, seconds) in zip(b.layer_of, figures, strict=False):
        stats[k]["rounds"] += int(rounds)
        stats[k]["bytes"] += int(sent) * n  # every party sends as much as party 0
        stats[k]["seconds"] += float(seconds)
    return stats
