"""Layers of encrypted training: each one's forward and backward on one party's shares.

A layer is registered by name in :data:`LAYERS` (``@layer(name, params)``): ``params(spec)``
says how many parameter tensors it takes, ``forward(ix, spec, x, ws, f)`` returns its
output share and what its backward keeps, ``backward(ix, spec, g, saved, ws, f, need_dx)``
returns the parameters' gradients (batch sums, ``f`` fractional bits) and the input's
gradient (None when ``need_dx`` is false). Both are one party's protocols (generators of
:mod:`.comparison`'s ``Draw`` / ``Opening`` / ``Dealt``); independent products share
rounds through :func:`.batching.together`. ``spec`` is the layer's dict from the
training program (options only: nothing executable travels). ``Conv2d``, ``MaxPool2d`` and
``AvgPool2d`` live in :mod:`.train_conv` (imported at the end of this module).

>>> sorted(LAYERS)
['AvgPool2d', 'Conv2d', 'Flatten', 'Linear', 'MaxPool2d', 'ReLU']
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import torch

from ppdl_nb.mpc.batching import together
from ppdl_nb.mpc.beaver import add_c, beaver_cross_terms, beaver_open
from ppdl_nb.mpc.comparison import Dealt, Draw, Opening, compare
from ppdl_nb.mpc.nonlinear import truncate

__all__ = ["LAYERS", "Layer", "layer", "product"]

Proto = Generator[Any, Any, Any]


def product(ix: int, kind: str, x: torch.Tensor, y: torch.Tensor, shift: int,
            **params: Any) -> Proto:
    """Shares of ``x op y`` (Beaver), truncated by ``shift`` bits: 1 round, 2 with shift."""
    shapes = {"x_shape": list(x.shape)} | ({"w_shape": list(y.shape)} if kind == "conv2d"
                                           else {"y_shape": list(y.shape)})
    a, b = yield Draw(kind, shapes | params)
    eps, delta = yield Opening("add", list(beaver_open(x, y, a, b)), kind)
    z = beaver_cross_terms(kind, ix, eps, delta, a, b, **params)
    (c,) = yield Dealt()
    z = add_c(z, c)
    return (yield from truncate(ix, z, shift)) if shift else z


# ---- layers: forward (output, what the backward keeps) and backward ------------------------
class Layer(NamedTuple):
    params: Callable[[dict[str, Any]], int]  # how many parameter tensors
    forward: Callable[..., Proto]  # (ix, spec, x, ws, f) -> (y, saved)
    backward: Callable[..., Proto]  # (ix, spec, g, saved, ws, f, need_dx) -> (grads, dx)


LAYERS: dict[str, Layer] = {}


def layer(name: str, params: Callable[[dict[str, Any]], int]
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a layer's forward and backward (``fn`` returns both)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        fwd, bwd = fn()
        LAYERS[name] = Layer(params, fwd, bwd)
        return fn

    return register


def _lin_params(spec: dict[str, Any]) -> int:
    return 2 if spec.get("bias", True) else 1


@layer("Linear", _lin_params)
def _linear() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list[torch.Tensor], f: int) -> Proto:
        z = yield from product(ix, "matmul", x, ws[0].t(), f)
        return (z + ws[1] if len(ws) > 1 else z), x

    def backward(ix: int, spec: dict, g: torch.Tensor, x: torch.Tensor,
                 ws: list[torch.Tensor], f: int, need_dx: bool) -> Proto:
        jobs = [product(ix, "matmul", g.t(), x, f)]
        if need_dx:
            jobs.append(product(ix, "matmul", g, ws[0], f))
        dw, *dx = yield from together(jobs)
        return [dw, g.sum(0)][:len(ws)], (dx[0] if dx else None)

    return forward, backward


@layer("ReLU", lambda spec: 0)
def _relu() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list, f: int) -> Proto:
        # [-x >= 0] = 1 - [x > 0]: the gradient is 0 at 0, as torch's
        le0, (neg,) = yield from compare(ix, -x, products=[x])
        return x - neg, (1 - le0 if ix == 0 else -le0)

    def backward(ix: int, spec: dict, g: torch.Tensor, bit: torch.Tensor, ws: list,
                 f: int, need_dx: bool) -> Proto:
        return [], (yield from product(ix, "mul", g, bit, 0))

    return forward, backward


@layer("Flatten", lambda spec: 0)
def _flatten() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list, f: int) -> Proto:
        return x.flatten(spec.get("start_dim", 1), spec.get("end_dim", -1)), x.shape
        yield  # a generator

    def backward(ix: int, spec: dict, g: torch.Tensor, shape: torch.Size, ws: list,
                 f: int, need_dx: bool) -> Proto:
        return [], g.reshape(shape)
        yield

    return forward, backward


from ppdl_nb.mpc import train_conv as _train_conv  # noqa: E402, F401  (registers its layers)
