"""DP-SGD inside the shares: per-example clipping and Gaussian noise, nobody seeing either.

With ``max_grad_norm`` set, :func:`.train_step.train_step` takes its gradients from
:func:`dp_gradients` instead of the plain backward:

1. **Per-example norms without per-example gradients** (the "ghost" norm): a
   ``Linear`` layer's gradient for example ``i`` is the outer product ``g_i a_i^T``
   (``g``: the gradient at its output, ``a``: its input) plus ``g_i`` for the bias, so
   its squared norm is ``|g_i|^2 (|a_i|^2 + 1)``. The backward first runs without weight
   gradients (the input gradients do not depend on the clipping), then every layer's
   squares are computed at once.
2. **Clip factors** ``c_i = min(1, C / |grad_i|)``: ``max(n_i, C^2)`` by one secure
   comparison, then the inverse square root of :mod:`.approx` on its stated range
   ``[0.1, 100]`` after a public rescaling: norms up to ``sqrt(1000) C`` are clipped,
   and an example whose squared norm is beyond ``1000 C^2`` is *dropped* (its factor
   times a secure ``[n_i <= 1000 C^2]`` bit): either way it adds at most ``C``, which
   is what the privacy proof needs. Factors carry a ``1 - 10^-3`` margin for the
   approximation's relative error (2.5e-4 on that range, docs/MPC_APPROX.md).
3. **Weight gradients** of the clipped examples, every layer's products in shared
   rounds, and **noise**: each of the ``n`` parties adds Gaussian noise of standard
   deviation ``sigma C / sqrt(n - 1)`` to its share of each summed gradient, so that
   even a party that removes its own part leaves ``sigma C`` (as DP-FedAvg's holders
   do); the samples come from AES-CTR keyed from ``os.urandom`` (:meth:`.prg.PRG.normal`).

Only ``Linear`` layers may hold parameters here (ReLU and Flatten in between): the ghost
norm is what keeps per-example clipping affordable on shares.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import torch

from ppdl_nb.mpc import approx
from ppdl_nb.mpc.approx_party import PartyOps
from ppdl_nb.mpc.batching import together
from ppdl_nb.mpc.comparison import compare
from ppdl_nb.mpc.encoding import encode
from ppdl_nb.mpc.nonlinear import truncate
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.train_layers import LAYERS, product

__all__ = ["DROP_RATIO", "MARGIN", "dp_gradients"]

Proto = Generator[Any, Any, Any]
DROP_RATIO = 1000.0  # examples with squared norm above DROP_RATIO * C^2 are dropped
MARGIN = 1e-3
_INV_SQRT_BITS = 16  # the approximation's precision (its range check holds at 16 bits)
_S = 24  # public constants as round(c 2^24)


def _scaled(ix: int, x: torch.Tensor, c: float, extra_shift: int = 0) -> Proto:
    """Shares of ``x * c`` (public ``c``), shifted down ``extra_shift`` more bits."""
    return (yield from truncate(ix, x * round(c * 2**_S), _S + extra_shift))


def _clip_factors(ix: int, n2: torch.Tensor, clip: float, f: int) -> Proto:
    """Shares of ``c_i`` at ``f`` bits (see the module, step 2)."""
    lo, hi = round(clip**2 * 2**f), DROP_RATIO * clip**2
    diff = f - _INV_SQRT_BITS
    (bit, (over,)), (keep, _) = yield from together([
        compare(ix, n2 - (lo if ix == 0 else 0), products=[n2]),  # n >= C^2, n [n >= C^2]
        compare(ix, (round(hi * 2**f) if ix == 0 else 0) - n2)])  # n <= 1000 C^2
    floor = bit * (-lo) + (lo if ix == 0 else 0)  # C^2 (1 - bit), in shares
    nc = over + floor  # max(n, C^2)
    scaled = yield from _scaled(ix, nc, 0.1 / clip**2, diff)  # in [0.1, 100], 16 bits
    r = yield from approx.inv_sqrt(PartyOps(ix, frac_bits=_INV_SQRT_BITS), scaled,
                                   approx.DEFAULT, lo=0.1, hi=100.0)
    kept = yield from product(ix, "mul", r, keep, 0)
    return (yield from _scaled(ix, kept, math.sqrt(0.1) * (1 - MARGIN), -diff))


def dp_gradients(ix: int, n_parties: int, layers: Sequence[dict[str, Any]],
                 per_layer: list[list[torch.Tensor]], saved: list[Any], g: torch.Tensor,
                 *, clip: float, noise_multiplier: float, f: int) -> Proto:
    """PARTY ``ix``: its shares of every parameter's clipped, noised gradient sum (the
    flat list, in the layers' order); ``g``: the loss gradient at the output."""
    outs: dict[int, torch.Tensor] = {}
    for k in range(len(layers) - 1, -1, -1):
        spec, ws = layers[k], per_layer[k]
        if spec["layer"] == "Linear":
            outs[k] = g
            if not any(per_layer[j] for j in range(k)):
                break
            g = yield from product(ix, "matmul", g, ws[0], f)
        elif ws:
            raise ValueError(f"DP training takes parameters in Linear layers only, not in "
                             f"{spec['layer']}")
        else:
            _, g = yield from LAYERS[spec["layer"]].backward(ix, spec, g, saved[k], ws, f,
                                                             True)
    order = sorted(outs)
    squares = yield from together(
        [product(ix, "mul", t, t, f) for k in order for t in (outs[k], saved[k])])
    one = round(2**f) if ix == 0 else 0  # the bias's input: a constant 1
    norms = [(sq_g.sum(1), sq_a.sum(1) + (one if len(per_layer[k]) > 1 else 0))
             for k, sq_g, sq_a in zip(order, squares[::2], squares[1::2], strict=True)]
    terms = yield from together([product(ix, "mul", a, b, f) for a, b in norms])
    c = yield from _clip_factors(ix, sum(terms), clip, f)
    clipped = yield from together([product(ix, "mul", outs[k], c[:, None].expand_as(outs[k]),
                                            f) for k in order])
    sums = yield from together([product(ix, "matmul", gk.t(), saved[k], f)
                                for k, gk in zip(order, clipped, strict=True)])
    grads: dict[int, list[torch.Tensor]] = {
        k: [dw, gk.sum(0)][:len(per_layer[k])]
        for k, dw, gk in zip(order, sums, clipped, strict=True)}
    std = noise_multiplier * clip / math.sqrt(n_parties - 1)
    flat = [t for k in range(len(layers)) for t in grads.get(k, [])]
    if std:
        prg = PRG()  # a fresh seed from os.urandom: this party's noise is its secret
        flat = [t + encode(prg.normal(t.shape) * std, f) for t in flat]
    return flat
