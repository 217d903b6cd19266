"""Approximations over additive shares: exp, reciprocal, inverse square root and log.

(``sigmoid``, ``tanh`` and ``softmax`` build on these in :mod:`.approx_nn`; the accuracy
of each, measured by the tests, is in :mod:`.approx_table` and docs/MPC_APPROX.md.)

Each function is written once, as a generator over a small *ops* interface, so that the
same recipe runs with all parties in one process (:class:`~.sim_ops.SimOps`) and as one
party's protocol (:class:`~.approx_party.PartyOps`, whose steps ``yield`` dealer requests
and openings, for workers). The ops:

* local, no traffic: ``add(x, y)``, ``sub(x, y)``, ``neg(x)``, ``mul_int(x, k)`` (public
  integer), ``add_public(x, value, bits)`` (the real ``value`` encoded at ``bits``
  fractional bits, added once), ``sum(x, dim)`` (kept dimension), ``size(x, dim)``;
* protocol steps, generators: ``mul(x, y, shift)`` and ``square(x, shift)``, a Beaver
  product followed by an exact truncation by ``shift`` bits (2 rounds, or 1 when
  ``shift == 0``); ``truncate(x, shift)`` (1 round);
* optional, where ``supports(name)``: ``ge0(x, products=())``, shares of the bit
  ``x >= 0`` as ring integers 0/1 and of ``v * bit`` for each ``v`` of ``products`` (in
  the comparison's rounds), and ``max(x, dim)``, shares of the maximum along ``dim``
  (kept). Secure comparison provides them; without them sigmoid and softmax work on a
  stated range.

Fixed point: inputs and outputs carry ``ops.frac_bits`` (16) fractional bits; in between,
values carry as many more bits as the bound of exact truncation allows (an encoded
product must stay below 2^62), so that rounding stays near one unit in the last place of
the output. Each recipe checks its bounds from the ranges of :class:`ApproxConfig`.

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.sim_ops import run_simulated
>>> xs = sim.share_float(torch.tensor([0.5, 4.0]), 2)
>>> ys, traffic = run_simulated(reciprocal, xs)
>>> [round(v, 4) for v in sim.reveal(ys).tolist()], traffic.rounds
([2.0, 0.25], 60)
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DEFAULT", "ApproxConfig", "exp", "inv_sqrt", "log", "reciprocal"]

Step = Generator[Any, Any, Any]
EXP_BITS_CAP = 30  # 1 + x/2^n (about 1) squared at 30 bits stays below 2^62


def _exp_plan(n: int, hi: float) -> list[int]:
    """Fractional bits of ``y_0 .. y_{n-1}``, the values squared (``y_k ~ e^(x/2^(n-k))``)."""
    plan = []
    for k in range(n):
        top = 1.01 * math.exp(max(hi, 0.0) / 2 ** (n - k))
        plan.append(min(EXP_BITS_CAP, math.floor(30.9 - math.log2(top))))
    if plan[-1] < 16:
        raise ValueError(f"exp of inputs up to {hi:g} overflows the 2^62 bound of exact "
                         "truncation (e^x must stay below 2^30): keep x <= 20")
    return plan


@dataclass(frozen=True)
class ApproxConfig:
    """Iterations and input ranges of the approximations (one object for all of them).

    The ranges are part of the method: they fix the extra fractional bits each recipe
    carries (see the module docstring); the accuracy table holds for the defaults.
    """

    exp_iterations: int = 8  # exp(x) = (1 + t + t^2/2 + t^3/6)^(2^n)
    exp_degree: int = 3  # Taylor terms of e^t; 1: CrypTen's (1 + t)^(2^n)
    exp_max: float = 20.0  # largest x given to exp (e^x < 2^30 keeps its squares exact)
    reciprocal_iterations: int = 10  # Newton y <- y (2 - x y); at most, if fewer will do
    reciprocal_range: tuple[float, float] = (0.01, 100.0)
    inv_sqrt_iterations: int = 5  # Newton y <- y (3 - x y^2) / 2
    inv_sqrt_range: tuple[float, float] = (0.1, 100.0)
    log_iterations: int = 2  # Householder y <- y - sum_k h^k / k, h = 1 - x e^-y
    log_order: int = 8
    log_range: tuple[float, float] = (0.01, 100.0)
    sigmoid_iterations: int = 2  # Newton for 1 / (1 + e^-|x|) in [1, 2] (with ge0)
    sigmoid_max: float = 4.0  # |x| bound of sigmoid when no comparison is available
    softmax_spread: float = 4.0  # max - min of logits when no secure max is available
    work_bits: int = 24  # fractional bits of the Newton iterates (at most 30)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith(("iterations", "order", "degree", "bits")):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"ApproxConfig.{f.name} must be an int >= 0, got {v!r}")
            elif f.name.endswith("range"):
                if not (isinstance(v, tuple) and len(v) == 2 and 0 < v[0] < v[1] < math.inf):
                    raise ValueError(f"ApproxConfig.{f.name} must be (lo, hi) with "
                                     f"0 < lo < hi, got {v!r}")
            elif not 0 < v < math.inf:
                raise ValueError(f"ApproxConfig.{f.name} must be positive, got {v!r}")
        if not 1 <= self.exp_iterations <= 14 or self.exp_degree not in (1, 2, 3):
            raise ValueError("ApproxConfig needs 1 <= exp_iterations <= 14 and exp_degree "
                             f"1 to 3, got {self.exp_iterations} and {self.exp_degree}")
        if not 16 <= self.work_bits <= 30 or self.log_order < 1:
            raise ValueError("ApproxConfig needs 16 <= work_bits <= 30 and log_order >= 1")
        _exp_plan(self.exp_iterations, self.exp_max)  # raises if exp_max is too large


DEFAULT = ApproxConfig()


# ---- helpers over the ops --------------------------------------------------------------
def _mul(ops: Any, x: Any, y: Any, shift: int) -> Step:
    """Product of shares truncated by ``shift`` bits (``shift <= 0``: scaled up instead)."""
    z = yield from ops.mul(x, y, max(shift, 0))
    return ops.mul_int(z, 1 << -shift) if shift < 0 else z


def _square(ops: Any, x: Any, shift: int) -> Step:
    z = yield from ops.square(x, max(shift, 0))
    return ops.mul_int(z, 1 << -shift) if shift < 0 else z


def _rescale(ops: Any, x: Any, have: int, want: int) -> Step:
    """``x`` at ``have`` fractional bits to ``want`` bits: exact shift up, or truncation."""
    if want >= have:
        return ops.mul_int(x, 1 << (want - have))
    return (yield from ops.truncate(x, have - want))


def _bits_for(max_product: float, cap: int, what: str) -> int:
    """Most fractional bits (<= cap) at which a product of magnitude up to
    ``max_product`` of two such values stays below 2^62 when encoded."""
    bits = min(cap, math.floor((61.9 - math.log2(max(max_product, 1.0))) / 2))
    if bits < 16:
        raise ValueError(f"{what}: the range is too wide for exact truncation at 16 "
                         f"fractional bits (products up to {max_product:.3g}); narrow it")
    return bits


def _check_square_input(bound: float, bits: int, what: str) -> None:
    if math.log2(max(bound, 1e-300)) + bits >= 30.9:
        raise ValueError(f"{what}: inputs up to {bound:.3g} at {bits} fractional bits are "
                         "too large to square exactly; narrow the range")


# ---- exp -------------------------------------------------------------------------------
def exp(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *, hi: float | None = None,
        lo: float | None = None, in_bits: int | None = None,
        out_bits: int | None = None) -> Step:
    """Shares of ``e^x``: ``(1 + t + t^2/2 + t^3/6)^(2^n)``, ``t = x / 2^n``, by ``n``
    squarings (the Taylor terms up to ``cfg.exp_degree``; degree 1 is CrypTen's).

    ``hi`` bounds ``x`` from above (default ``cfg.exp_max``) and sets the extra bits; ``lo``
    from below (default ``-2^n``; the base stays in [0, 1] down to there).
    ``in_bits`` / ``out_bits``: fractional bits of ``x`` and of the result.
    """
    n, fb = cfg.exp_iterations, ops.frac_bits
    in_bits = fb if in_bits is None else in_bits
    out_bits = fb if out_bits is None else out_bits
    hi = cfg.exp_max if hi is None else hi
    bound = max(abs(hi), 2.0**n if lo is None else abs(lo))
    plan = _exp_plan(n, hi)
    if cfg.exp_degree >= 2:
        _check_square_input(bound, in_bits, "exp")
    t = yield from _rescale(ops, x, in_bits + n, plan[0])  # same integers, n more bits
    y = ops.add_public(t, 1.0, plan[0])
    if cfg.exp_degree >= 2:  # t^2 / 2 = x^2 / 2^(2n+1)
        half_t2 = yield from _square(ops, x, 2 * (in_bits + n) + 1 - plan[0])
        y = ops.add(y, half_t2)
    if cfg.exp_degree == 3:  # t^3 / 6 = (t^2 / 2) (x / 3) / 2^n, 1/3 to s bits
        s = min(20, math.floor(61.5 - plan[0] - in_bits - math.log2(bound**3 / 6 / 4**n)))
        third = ops.mul_int(x, round(2**s / 3))
        y = ops.add(y, (yield from _mul(ops, half_t2, third, in_bits + s + n)))
    for k in range(n):
        want = plan[k + 1] if k + 1 < n else out_bits
        y = yield from _square(ops, y, 2 * plan[k] - want)
    return y


# ---- reciprocal and inverse square root ------------------------------------------------
def _newton_reciprocal(ops: Any, x: Any, y: Any, bits: tuple[int, int, int, int],
                       iterations: int) -> Step:
    in_bits, y_bits, w, out_bits = bits
    for i in range(iterations):
        xy = yield from _mul(ops, x, y, in_bits + y_bits - w)
        d = ops.add_public(ops.neg(xy), 2.0, w)  # 2 - x y
        want = out_bits if i == iterations - 1 else w
        y = yield from _mul(ops, y, d, y_bits + w - want)
        y_bits = want
    return (yield from _rescale(ops, y, y_bits, out_bits))


def _reciprocal_iterations(lo: float, hi: float, out_bits: int, cap: int) -> int:
    """Newton steps from CrypTen's guess that bring ``1/x`` within a quarter unit of
    ``out_bits`` on [lo, hi] (the error ``1 - x y`` squares each step), at most ``cap``."""
    need = 0
    for k in range(4001):
        x = lo * (hi / lo) ** (k / 4000)
        e0 = abs(1 - x * (3 * math.exp(1 - 2 * x) + 0.003))
        target = 2.0 ** -(out_bits + 2) * min(1.0, x)  # relative, for an absolute bound
        if e0 >= 1:
            raise ValueError(f"reciprocal: CrypTen's initial guess diverges at {x:.3g}; "
                             "narrow the range")
        if e0 > target:
            need = max(need, math.ceil(math.log2(math.log(target) / math.log(e0))))
    return min(cap, need)


def reciprocal(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *,
               lo: float | None = None, hi: float | None = None,
               in_bits: int | None = None, out_bits: int | None = None,
               iterations: int | None = None,
               initial: tuple[float, float] | None = None) -> Step:
    """Shares of ``1/x`` for ``lo <= x <= hi`` (``cfg.reciprocal_range``; ``x > 0``).

    Newton ``y <- y (2 - x y)`` from CrypTen's guess ``3 e^(1 - 2x) + 0.003``, or from the
    linear guess ``initial = (c0, c1)``: ``c0 + c1 x`` (no rounds). Without ``iterations``,
    as many as the range needs, at most ``cfg.reciprocal_iterations``.
    """
    fb = ops.frac_bits
    lo, hi = cfg.reciprocal_range if lo is None else (lo, hi)
    in_bits = fb if in_bits is None else in_bits
    out_bits = fb if out_bits is None else out_bits
    if iterations is None:
        iterations = cfg.reciprocal_iterations
        if initial is None:
            iterations = _reciprocal_iterations(lo, hi, out_bits, iterations)
    if initial is None:
        y0_max = 3 * math.exp(1 - 2 * lo) + 0.003
    else:
        y0_max = max(abs(initial[0] + initial[1] * lo), abs(initial[0] + initial[1] * hi))
    w = _bits_for(2 * max(y0_max, 1 / lo), cfg.work_bits, "reciprocal")
    if initial is None:
        _check_square_input(2 * hi, in_bits, "reciprocal")
        z = ops.add_public(ops.mul_int(x, -2), 1.0, in_bits)
        e = yield from exp(ops, z, cfg, hi=1 - 2 * lo, lo=1 - 2 * hi, in_bits=in_bits,
                           out_bits=w)
        y, y_bits = ops.add_public(ops.mul_int(e, 3), 0.003, w), w
    else:  # c1 with 6 more bits than x: c0 + c1 x at in_bits + 6
        y_bits = in_bits + 6
        y = ops.add_public(ops.mul_int(x, round(initial[1] * 64)), initial[0], y_bits)
    return (yield from _newton_reciprocal(ops, x, y, (in_bits, y_bits, w, out_bits),
                                          iterations))


def inv_sqrt(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *,
             lo: float | None = None, hi: float | None = None) -> Step:
    """Shares of ``1/sqrt(x)`` for ``lo <= x <= hi`` (``cfg.inv_sqrt_range``).

    Newton ``y <- y (3 - x y^2) / 2`` from CrypTen's guess
    ``2.2 e^-(x/2 + 0.2) + 0.2 - x/1024`` (2.2 taken as 35/16).
    """
    fb = ops.frac_bits
    lo, hi = cfg.inv_sqrt_range if lo is None else (lo, hi)
    y_max = max(2.2 * math.exp(-0.2 - lo / 2) + 0.2, 1 / math.sqrt(lo))
    w = _bits_for(max(y_max**2, 3 * y_max), cfg.work_bits, "inv_sqrt")
    y_bits = max(w, fb + 10)  # x / 1024 exact
    if 2 * y_bits + 2 * math.log2(y_max) >= 61.9:
        raise ValueError("inv_sqrt: the range is too wide for exact truncation; narrow it")
    z = ops.add_public(ops.neg(x), -0.2, fb + 1)  # -(x/2 + 0.2): -x at fb + 1 bits
    e = yield from exp(ops, z, cfg, hi=-0.2 - lo / 2, lo=-0.2 - hi / 2, in_bits=fb + 1,
                       out_bits=y_bits - 4)
    y = ops.add(ops.mul_int(e, 35), ops.mul_int(x, -(1 << (y_bits - fb - 10))))
    y = ops.add_public(y, 0.2, y_bits)
    iterations = cfg.inv_sqrt_iterations
    for i in range(iterations):
        a = yield from _square(ops, y, 2 * y_bits - w)  # y^2 at w bits
        b = yield from _mul(ops, x, a, fb)  # x y^2 at w bits
        c = ops.add_public(ops.neg(b), 3.0, w)
        want = fb if i == iterations - 1 else w
        y = yield from _mul(ops, y, c, y_bits + w + 1 - want)  # y c / 2
        y_bits = want
    return (yield from _rescale(ops, y, y_bits, fb))


# ---- log -------------------------------------------------------------------------------
def _householder_step(ops: Any, x: Any, y: Any, cfg: ApproxConfig,
                      rng: tuple[float, float], y_bits: int, want: int) -> Step:
    """``y - sum_{k<=order} h^k / k`` with ``h = 1 - x e^-y``, at ``want`` bits."""
    fb, w, scale = ops.frac_bits, cfg.work_bits, 16
    e = yield from exp(ops, ops.neg(y), cfg, hi=1 - math.log(rng[0]),
                       lo=-1 - math.log(rng[1]), in_bits=y_bits, out_bits=w)
    xe = yield from _mul(ops, x, e, fb)  # x e^-y at w bits
    h = ops.add_public(ops.neg(xe), 1.0, w)
    total, power = ops.mul_int(h, 1 << scale), h  # sum_k h^k round(2^scale / k)
    for k in range(2, cfg.log_order + 1):
        power = yield from _mul(ops, power, h, w)
        total = ops.add(total, ops.mul_int(power, round(2**scale / k)))
    y_up = ops.mul_int(y, 1 << (w + scale - y_bits))
    return (yield from ops.truncate(ops.sub(y_up, total), w + scale - want))


def log(ops: Any, x: Any, cfg: ApproxConfig = DEFAULT, *,
        lo: float | None = None, hi: float | None = None) -> Step:
    """Shares of ``ln x`` for ``lo <= x <= hi`` (``cfg.log_range``).

    CrypTen's: ``y = x/120 - 20 e^(-2x - 1) + 3``, then ``cfg.log_iterations``
    Householder steps of order ``cfg.log_order``.
    """
    fb = ops.frac_bits
    lo, hi = cfg.log_range if lo is None else (lo, hi)
    y_bits = EXP_BITS_CAP - cfg.exp_iterations  # exp(-y) takes y without a truncation
    _check_square_input(max(abs(math.log(lo)), math.log(hi), 3 + hi / 120) + 1, y_bits,
                        "log")
    up = y_bits + 8  # the initial guess at 8 more bits, then one truncation
    z = ops.add_public(ops.mul_int(x, -2), -1.0, fb)
    e = yield from exp(ops, z, cfg, hi=-1 - 2 * lo, lo=-1 - 2 * hi, out_bits=up)
    y = ops.add(ops.mul_int(e, -20), ops.mul_int(x, round(2 ** (up - fb) / 120)))
    y = yield from ops.truncate(ops.add_public(y, 3.0, up), 8)
    for i in range(cfg.log_iterations):
        want = fb if i == cfg.log_iterations - 1 else y_bits
        y = yield from _householder_step(ops, x, y, cfg, (lo, hi), y_bits, want)
        y_bits = want
    return (yield from _rescale(ops, y, y_bits, fb))
