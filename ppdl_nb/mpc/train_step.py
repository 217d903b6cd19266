"""One SGD step of a network on secret shares: forward, loss gradient, backward, update.

Every value stays shared: the inputs and one-hot labels of a batch, every activation,
every gradient and the weights (and the momentum buffers). The step is one party's
protocol, a generator in the style of :func:`.comparison.compare` (run all parties in one
process with ``simulate.run_parties``; on workers, ``tensors.spdz``'s ``train`` routine
runs it), built from the protocols of this package:

* **forward**: Beaver products with exact truncation (``Linear``, ``Conv2d``), the
  secure comparison for ``ReLU`` (its bit is kept for the backward: ``ReLU``'s gradient
  costs one product, no comparison), window sums for ``AvgPool2d``;
* **loss**: softmax cross-entropy's gradient ``softmax(logits) - onehot`` (the
  approximations of :mod:`.approx_nn`, with the secure max) or MSE's ``2 (out - y) / C``;
* **backward**: per layer, the weight gradient and the input gradient are independent
  products, so they share their opening rounds (:func:`.batching.together`);
* **update** (PyTorch's SGD: ``v = momentum v + g + weight_decay w``, ``w -= lr v``,
  ``g`` the batch mean): every parameter's update is one truncation of
  ``(round(m 2^S) u + round(lr/B 2^S) G + round(lr wd 2^S) w) / 2^S`` with ``u = lr v``
  and ``G`` the batch sum, all in one round.

Fixed point: ``frac_bits`` fractional bits throughout (20 by default: at 16, ``lr x
gradient`` of a batch of 64 comes within a few units of the last place; the bound of
exact truncation, ``|x| < 2^62`` before a truncation, leaves products of reals up to
``2^(62 - 2 f)`` = 4M at 20 bits).

Layers travel as a list of ``{"layer": name, ...options}`` dicts (:data:`LAYERS`:
nothing executable), parameters as a flat list of shares in the layers' order.

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> _ = torch.manual_seed(0); net = torch.nn.Linear(3, 2)
>>> layers = [{"layer": "Linear"}]
>>> x, y = torch.randn(4, 3), torch.eye(2)[[0, 1, 1, 0]]
>>> cfg = TrainConfig(lr=0.5, loss="mse", frac_bits=20)
>>> sh = lambda t: sim.share_float(t, 2, 20)
>>> ws, xs, ys = [sh(p.detach()) for p in net.parameters()], sh(x), sh(y)
>>> out = sim.run_parties([train_step(i, layers, [w[i] for w in ws], [], xs[i], ys[i],
...                                   cfg) for i in range(2)])
>>> torch.optim.SGD(net.parameters(), lr=0.5).zero_grad()
>>> torch.nn.functional.mse_loss(net(x), y).backward()
>>> with torch.no_grad():
...     _ = [p.sub_(0.5 * p.grad) for p in net.parameters()]
>>> new_w = sim.reveal([o.weights[0] for o in out], 20)
>>> bool((new_w - net.weight).abs().max() < 1e-4)
True
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch

from ppdl_nb.mpc import approx, approx_nn
from ppdl_nb.mpc.approx import ApproxConfig
from ppdl_nb.mpc.approx_party import PartyOps
from ppdl_nb.mpc.batching import together
from ppdl_nb.mpc.nonlinear import clamp, truncate
from ppdl_nb.mpc.train_dp import dp_gradients
from ppdl_nb.mpc.train_layers import LAYERS, product

__all__ = ["LOSSES", "UPDATE_BITS", "StepResult", "TrainConfig", "train_step"]

Proto = Generator[Any, Any, Any]
UPDATE_BITS = 24  # public step constants (lr / B, momentum, lr x wd) as round(c 2^24)
LOSSES = ("cross_entropy", "mse")
LOSS_FLOOR = 1e-3  # the opened loss reads p_y below this as this (log's range)


@dataclass(frozen=True)
class TrainConfig:
    """The step's hyperparameters (public: they are part of the training program)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    frac_bits: int = 20
    open_loss: bool = False  # compute the batch's summed loss, to be opened
    max_grad_norm: float | None = None  # DP-SGD in the shares (train_dp.py): clip norm C
    noise_multiplier: float = 0.0  # and noise std sigma C on each summed gradient
    approx: ApproxConfig = field(default_factory=ApproxConfig)

    def __post_init__(self) -> None:
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 16:
                raise ValueError(f"{name} must be a number in [0, 16), got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.max_grad_norm is not None and (
                isinstance(self.max_grad_norm, bool) or not isinstance(
                    self.max_grad_norm, int | float) or not 0 < self.max_grad_norm < 1e3):
            raise ValueError(f"max_grad_norm must be a number in (0, 1000), got "
                             f"{self.max_grad_norm!r}")
        if isinstance(self.noise_multiplier, bool) or not isinstance(
                self.noise_multiplier, int | float) or not 0 <= self.noise_multiplier < 1e3:
            raise ValueError(f"noise_multiplier must be a number in [0, 1000), got "
                             f"{self.noise_multiplier!r}")
        if self.noise_multiplier and self.max_grad_norm is None:
            raise ValueError("noise_multiplier needs max_grad_norm: noise without clipping "
                             "bounds nothing (DP-SGD clips each example's gradient first)")
        if not isinstance(self.frac_bits, int) or not 12 <= self.frac_bits <= 24:
            raise ValueError(f"frac_bits must be an int in [12, 24], got {self.frac_bits!r}")

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["approx"] = {k: list(v) if isinstance(v, tuple) else v
                       for k, v in d["approx"].items()}
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise TypeError("a training configuration is a dict")
        d = dict(d)
        cfg = d.pop("approx", {}) or {}
        if not isinstance(cfg, dict):
            raise TypeError("a training configuration's approx is a dict")
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"unknown training settings {sorted(set(d) - known)}")
        return cls(**d, approx=ApproxConfig(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in cfg.items()}))


class StepResult(NamedTuple):
    """One party's shares after a step: parameters, momentum buffers (``lr x v``; empty
    without momentum) and, if ``open_loss``, the batch's summed loss (else None)."""

    weights: list[torch.Tensor]
    velocity: list[torch.Tensor]
    loss: torch.Tensor | None


# ---- the step ------------------------------------------------------------------------------
def _loss_grad(ix: int, out: torch.Tensor, y: torch.Tensor, cfg: TrainConfig
               ) -> Proto:
    """Shares of dLoss/dout times the batch size (the update divides by it), and of the
    batch's summed loss when ``open_loss``."""
    f = cfg.frac_bits
    if cfg.loss == "mse":
        c = out.shape[1] if out.dim() > 1 else 1
        diff = out - y
        g = yield from truncate(ix, diff * round(2 ** UPDATE_BITS * 2 / c), UPDATE_BITS)
        if not cfg.open_loss:
            return g, None
        sq = yield from product(ix, "mul", diff, diff, f)
        return g, sq.sum() if c == 1 else (yield from truncate(
            ix, sq.sum().reshape(1) * round(2 ** UPDATE_BITS / c), UPDATE_BITS))
    ops = PartyOps(ix, frac_bits=f)
    p = yield from approx_nn.softmax(ops, out, cfg.approx, dim=1)
    if not cfg.open_loss:
        return p - y, None
    py = yield from product(ix, "mul", p, y, f)
    py = yield from clamp(ix, py.sum(1), lo=round(LOSS_FLOOR * 2**f))
    logs = yield from approx.log(ops, py, cfg.approx, lo=LOSS_FLOOR, hi=1.0)
    return p - y, -logs.sum()


def _update(ix: int, w: torch.Tensor, g: torch.Tensor, u: torch.Tensor | None,
            cfg: TrainConfig, batch: int) -> Proto:
    s = UPDATE_BITS
    total = g * round(cfg.lr / batch * 2**s)
    if cfg.weight_decay:
        total = total + w * round(cfg.lr * cfg.weight_decay * 2**s)
    if u is not None:
        total = total + u * round(cfg.momentum * 2**s)
    step = yield from truncate(ix, total, s)
    return w - step, step


def _split(layers: Sequence[dict[str, Any]], weights: Sequence[torch.Tensor]
           ) -> list[list[torch.Tensor]]:
    out, at = [], 0
    for spec in layers:
        if not isinstance(spec, dict) or spec.get("layer") not in LAYERS:
            raise ValueError(f"a training layer is one of {', '.join(LAYERS)}, got {spec!r}")
        k = LAYERS[spec["layer"]].params(spec)
        out.append(list(weights[at:at + k]))
        at += k
    if at != len(weights):
        raise ValueError(f"the layers take {at} parameter tensors, {len(weights)} were given")
    return out


def train_step(ix: int, layers: Sequence[dict[str, Any]], weights: Sequence[torch.Tensor],
               velocity: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               cfg: TrainConfig, *, parties: int = 2) -> Proto:
    """PARTY ``ix`` of ``parties``: one SGD step on its shares; a :class:`StepResult`.

    ``velocity``: the momentum buffers from the last step (empty on the first, or
    without momentum). ``x``, ``y``: the batch and its targets (one-hot for cross-entropy),
    encoded at ``cfg.frac_bits``. With ``cfg.max_grad_norm``, DP-SGD's clipped and
    noised gradients (:mod:`.train_dp`)."""
    f, per_layer = cfg.frac_bits, _split(layers, weights)
    saved, h = [], x
    for spec, ws in zip(layers, per_layer, strict=True):
        h, keep = yield from LAYERS[spec["layer"]].forward(ix, spec, h, ws, f)
        saved.append(keep)
    g, loss = yield from _loss_grad(ix, h, y, cfg)
    if cfg.max_grad_norm is not None:
        flat_g = yield from dp_gradients(ix, parties, layers, per_layer, saved, g,
                                         clip=cfg.max_grad_norm,
                                         noise_multiplier=cfg.noise_multiplier, f=f)
    else:
        flat_g = yield from _gradients(ix, layers, per_layer, saved, g, f)
    new_w, new_v = yield from _update_all(ix, weights, velocity, flat_g, cfg, x.shape[0])
    return StepResult(new_w, new_v, loss)


def _gradients(ix: int, layers: Sequence[dict[str, Any]], per_layer: list[list[torch.Tensor]],
               saved: list[Any], g: torch.Tensor, f: int) -> Proto:
    """The backward: every parameter's gradient (batch sums), flat in the layers' order."""
    grads: list[list[torch.Tensor]] = [[] for _ in layers]
    for k in range(len(layers) - 1, -1, -1):
        spec = layers[k]
        need_dx = any(per_layer[j] for j in range(k))  # a parameter before it
        grads[k], g = yield from LAYERS[spec["layer"]].backward(ix, spec, g, saved[k],
                                                                per_layer[k], f, need_dx)
        if not need_dx:
            break
    return [t for gs in grads for t in gs]


def _update_all(ix: int, weights: Sequence[torch.Tensor], velocity: Sequence[torch.Tensor],
                flat_g: list[torch.Tensor], cfg: TrainConfig, batch: int) -> Proto:
    if cfg.momentum and not velocity:
        velocity = [torch.zeros_like(w) for w in weights]
    if velocity and len(velocity) != len(weights):
        raise ValueError(f"{len(velocity)} momentum buffers for {len(weights)} parameters")
    us = list(velocity) if cfg.momentum else [None] * len(weights)
    updated = yield from together([_update(ix, w, gw, u, cfg, batch)
                                   for w, gw, u in zip(weights, flat_g, us, strict=True)])
    return [w for w, _ in updated], ([u for _, u in updated] if cfg.momentum else [])
