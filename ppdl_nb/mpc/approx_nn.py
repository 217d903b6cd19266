"""Activations over additive shares: sigmoid, tanh and softmax, from :mod:`.approx`.

Written once over the ops of :mod:`.approx` (see there). Where the ops offer secure
comparison (``ops.supports("ge0")``, ``ops.supports("max")``) the recipes use it and work
on a wide range (exp's: ``|x| <= 256`` by default); without it, on a narrower one:

* ``sigmoid``: with ``ge0``, CrypTen's branch: ``r = 1 / (1 + e^-|x|)`` (the denominator is
  in [1, 2]: Newton from the linear guess ``(24 - 8d) / 17``), then ``r`` or ``1 - r`` by
  the sign. Without it, ``1 / (1 + e^-x)`` with the general reciprocal, for
  ``|x| <= cfg.sigmoid_max``.
* ``tanh(x) = 2 sigmoid(2x) - 1`` (sigmoid computed with one more bit, so no precision
  is lost in the doubling).
* ``softmax``: ``e^(x - m) / sum``, ``m`` the secure max along ``dim`` where there is one
  (any logits, the lowest at most 256 below the max), else the mean, which is linear (logits
  whose spread, max - min, is at most ``cfg.softmax_spread``).

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.sim_ops import run_simulated
>>> xs = sim.share_float(torch.tensor([[1.0, 2.0, 3.0]]), 2)
>>> ys, traffic = run_simulated(softmax, xs)
>>> [round(v, 3) for v in sim.reveal(ys)[0].tolist()], traffic.rounds
([0.09, 0.245, 0.665], 71)
"""

from __future__ import annotations

import math
from typing import Any

from ppdl_nb.mpc.approx import (
    DEFAULT,
    EXP_BITS_CAP,
    ApproxConfig,
    Step,
    _mul,
    _rescale,
    exp,
    reciprocal,
)

__all__ = ["sigmoid", "softmax", "tanh"]

SCALE_BITS = 20  # public 1/d as round(2^20 / d)


def _sigmoid_branch(ops: Any, x: Any, cfg: ApproxConfig, out_bits: int) -> Step:
    w = cfg.work_bits
    b, (xb,) = yield from ops.ge0(x, products=[x])  # b: ring integers 0/1; xb = x b
    a = ops.sub(ops.mul_int(xb, 2), x)  # |x| = (2b - 1) x
    e = yield from exp(ops, ops.neg(a), cfg, hi=0.0, out_bits=w)  # e^-|x| in (0, 1]
    d = ops.add_public(e, 1.0, w)
    r = yield from reciprocal(ops, d, cfg, lo=1.0, hi=2.0, in_bits=w, out_bits=out_bits,
                              iterations=cfg.sigmoid_iterations, initial=(24 / 17, -8 / 17))
    flip = ops.add_public(ops.mul_int(r, 2), -1.0, out_bits)  # 2r - 1
    chosen = yield from ops.mul(b, flip, 0)
    return ops.add(ops.add_public(ops.neg(r), 1.0, out_bits), chosen)  # 1 - r + b (2r - 1)


def sigmoid(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *,
            out_bits: int | None = None) -> Step:
    """Shares of ``1 / (1 + e^-x)``; without ``ge0``, for ``|x| <= cfg.sigmoid_max``."""
    out_bits = ops.frac_bits if out_bits is None else out_bits
    if ops.supports("ge0"):
        return (yield from _sigmoid_branch(ops, x, cfg, out_bits))
    e = yield from exp(ops, ops.neg(x), cfg, hi=cfg.sigmoid_max, lo=-cfg.sigmoid_max)
    d = ops.add_public(e, 1.0, ops.frac_bits)
    return (yield from reciprocal(ops, d, cfg, lo=1.0, hi=1 + math.exp(cfg.sigmoid_max),
                                  out_bits=out_bits))


def tanh(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT) -> Step:
    """Shares of ``tanh x = 2 sigmoid(2x) - 1``; without ``ge0``, for
    ``|x| <= cfg.sigmoid_max / 2``."""
    fb = ops.frac_bits
    s = yield from sigmoid(ops, ops.mul_int(x, 2), cfg, out_bits=fb + 1)
    return ops.add_public(s, -1.0, fb)  # s at fb + 1 bits is 2s at fb bits


def softmax(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *, dim: int = -1) -> Step:
    """Shares of ``softmax(x, dim)`` (see the module docstring for the input range)."""
    fb, w = ops.frac_bits, cfg.work_bits
    d = ops.size(x, dim)
    inv_d = round(2**SCALE_BITS / d)
    if ops.supports("max"):
        m = yield from ops.max(x, dim)
        top, q_range = 0.0, (1 / d, 1.0)
    else:  # the mean: a shift like the max, and linear (one truncation)
        m = yield from ops.truncate(ops.mul_int(ops.sum(x, dim), inv_d), SCALE_BITS)
        top, q_range = cfg.softmax_spread, (1.0, math.exp(cfg.softmax_spread))
    # e (<= 1) times r / d (<= 1 / sum e): at most 2^(e_bits + fb + SCALE_BITS) < 2^62
    e_bits = min(w, 61 - fb - SCALE_BITS)
    e = yield from exp(ops, ops.sub(x, m), cfg, hi=top, lo=-top or None, out_bits=e_bits)
    total = ops.mul_int(ops.sum(e, dim), inv_d)  # the mean of e^(x - m), in q_range
    q_bits = max(fb, EXP_BITS_CAP - cfg.exp_iterations)  # exp in reciprocal takes them free
    q = yield from _rescale(ops, total, e_bits + SCALE_BITS, q_bits)
    r = yield from reciprocal(ops, q, cfg, lo=q_range[0], hi=q_range[1], in_bits=q_bits)
    return (yield from _mul(ops, e, ops.mul_int(r, inv_d), e_bits + SCALE_BITS))
