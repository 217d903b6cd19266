"""Ops built on secure comparison: ``<``, ``==``, ReLU, sign, abs, max / argmax, pooling.

Each is one party's protocol, a generator in the style of :func:`.comparison.compare`
(run it for all parties with ``simulate.run_parties``, or on workers through
``tensors.spdz``). Shares are additive over Z_2^64; results of tests are shares of the
*integers* 0/1 (``compare`` returns them so), and values stay in the encoding of their
inputs: ``v * bit`` needs no truncation. Public constants (``lo``/``hi`` of clamp, pads)
are ring integers, already encoded.

Bound: exact whenever the differences involved do not wrap, e.g. encoded inputs with
``|x| < 2^62`` (reals below 2^46 ~ 7e13 at 16 fractional bits); max-pooling pads with
``-2^62``. Rounds: 4 per comparison; max over ``n`` elements takes ``ceil(log2 n)``
comparisons in sequence (a tree of pairs: the left, lower index wins ties, as torch's
``max`` returns the first index of the maximum).

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> xs = sim.share_float(torch.tensor([[1.0, 4.0, 4.0, -2.0]]), 2)
>>> res = sim.run_parties([max_dim(i, xs[i], -1, index=True) for i in range(2)])
>>> sim.reveal([r[0] for r in res]).tolist(), sim.reveal([r[1] for r in res]).tolist()
([4.0], [1.0])
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ppdl_nb.mpc.comparison import Dealt, Draw, Opening, cmp_params, compare
from ppdl_nb.mpc.encoding import DEFAULT_FRAC_BITS
from ppdl_nb.mpc.truncation import trunc_finish, trunc_open

__all__ = ["CMP_OPS", "OPS", "POOL_PAD", "abs_", "avg_pool2d", "clamp", "cmp", "max_dim",
           "max_pool2d", "maximum", "party_op", "relu", "relu_deriv", "requests", "sign",
           "truncate"]

Proto = Generator[Any, Any, Any]
POOL_PAD = -(2**62)  # what max-pooling pads with: below every value in the bound
# op -> (compare y - x instead of x - y, test, negate the result)
CMP_OPS = {"ge": (False, "ge0", False), "lt": (False, "ge0", True),
           "le": (True, "ge0", False), "gt": (True, "ge0", True),
           "eq": (False, "eq0", False), "ne": (False, "eq0", True)}


def _public(party_index: int, value: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """A share of a public ring value: party 0 holds it, the others zero."""
    v = torch.as_tensor(value, dtype=torch.int64)
    return (v if party_index == 0 else torch.zeros_like(v)).expand_as(like)


def _one_minus(party_index: int, b: torch.Tensor) -> torch.Tensor:
    return (1 - b) if party_index == 0 else -b


def cmp(party_index: int, x: torch.Tensor, y: torch.Tensor, op: str) -> Proto:
    """Shares of ``x op y`` (``op`` in ``CMP_OPS``: ge, lt, le, gt, eq, ne) as 0/1."""
    if op not in CMP_OPS:
        raise ValueError(f"op must be one of {', '.join(CMP_OPS)}, got {op!r}")
    swap, test, negate = CMP_OPS[op]
    d = y - x if swap else x - y
    b, _ = yield from compare(party_index, d, test=test)
    return _one_minus(party_index, b) if negate else b


def relu(party_index: int, x: torch.Tensor) -> Proto:
    """Shares of ``max(x, 0)``, in x's encoding: 4 rounds, no truncation."""
    _, (z,) = yield from compare(party_index, x, products=[x])
    return z


def relu_deriv(party_index: int, x: torch.Tensor) -> Proto:
    """Shares of ``[x > 0]`` as 0/1 (torch's ReLU gradient: 0 at 0)."""
    b, _ = yield from compare(party_index, -x)
    return _one_minus(party_index, b)


def sign(party_index: int, x: torch.Tensor) -> Proto:
    """Shares of ``sign(x)`` in {-1, 0, 1} (integers): ``[x >= 0] - [-x >= 0]``."""
    b, _ = yield from compare(party_index, torch.stack([x, -x]))
    return b[0] - b[1]


def abs_(party_index: int, x: torch.Tensor) -> Proto:
    """Shares of ``|x|`` = ``2 relu(x) - x``."""
    z = yield from relu(party_index, x)
    return 2 * z - x


def maximum(party_index: int, x: torch.Tensor, y: torch.Tensor) -> Proto:
    """Shares of the elementwise ``max(x, y)`` = ``y + (x - y) [x >= y]``."""
    x, y = torch.broadcast_tensors(x, y)
    d = x - y
    _, (z,) = yield from compare(party_index, d, products=[d])
    return y + z


def clamp(party_index: int, x: torch.Tensor, lo: int | None = None,
          hi: int | None = None) -> Proto:
    """Shares of ``x.clamp(lo, hi)`` for public encoded bounds: one comparison of both."""
    if lo is None and hi is None:
        raise ValueError("clamp needs lo, hi or both")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clamp needs lo <= hi, got {lo} > {hi}")
    if hi is None:  # lo + relu(x - lo)
        return _public(party_index, lo, x) + (yield from relu(party_index, x - _public(
            party_index, lo, x)))
    h = _public(party_index, hi, x)
    if lo is None:  # hi - relu(hi - x)
        return h - (yield from relu(party_index, h - x))
    low = _public(party_index, lo, x)
    z = yield from relu(party_index, torch.stack([x - low, x - h]))
    return low + z[0] - z[1]


def max_dim(party_index: int, x: torch.Tensor, dim: int, *, index: bool = False,
            frac_bits: int = DEFAULT_FRAC_BITS) -> Proto:
    """Shares of ``x.max(dim)`` (and of its first index, encoded with ``frac_bits``
    fractional bits like a value, if ``index``): a tree of ``ceil(log2 n)`` comparisons."""
    v = x.movedim(dim, -1)
    n = v.shape[-1]
    if n == 0:
        raise ValueError("max of an empty dimension")
    idx = _public(party_index, torch.arange(n) << frac_bits, v).clone() if index else None
    while v.shape[-1] > 1:
        m = v.shape[-1] // 2
        left, right, rest = v[..., 0:2 * m:2], v[..., 1:2 * m:2], v[..., 2 * m:]
        d = left - right
        ops = [d] if idx is None else [d, idx[..., 0:2 * m:2] - idx[..., 1:2 * m:2]]
        _, prods = yield from compare(party_index, d, products=ops)
        v = torch.cat([right + prods[0], rest], -1)
        if idx is not None:
            idx = torch.cat([idx[..., 1:2 * m:2] + prods[1], idx[..., 2 * m:]], -1)
    return (v[..., 0], idx[..., 0]) if idx is not None else v[..., 0]


def _windows(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int], pad_value: int) -> torch.Tensor:
    """``(..., C, H, W)`` -> ``(..., C, oH, oW, kH * kW)`` windows (pad first)."""
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), value=pad_value)
    w = x.unfold(-2, kernel[0], stride[0]).unfold(-2, kernel[1], stride[1])
    return w.flatten(-2)


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool2d(party_index: int, x: torch.Tensor, kernel_size: Any, stride: Any = None,
               padding: Any = 0) -> Proto:
    """Shares of ``F.max_pool2d(x, kernel_size, stride, padding)`` (no dilation)."""
    k = _pair(kernel_size)
    s, p = _pair(stride if stride is not None else kernel_size), _pair(padding)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half the kernel {k}, as in torch")
    w = _windows(x, k, s, p, POOL_PAD if party_index == 0 else 0)
    return (yield from max_dim(party_index, w, -1))


def truncate(party_index: int, x: torch.Tensor, frac_bits: int) -> Proto:
    """Shares of ``x / 2^frac_bits`` (exact truncation, one round; ``truncation.py``)."""
    (r,) = yield Draw("trunc", {"shape": list(x.shape), "frac_bits": frac_bits})
    (c,) = yield Opening("add", [trunc_open(party_index, x, r)], "truncate")
    r_hi, r_msb = yield Dealt()
    return trunc_finish(party_index, c, r_hi, r_msb, frac_bits)


AVG_BITS = 24  # the divisor 1/(kH kW) is applied as round(2^24 / (kH kW)), then truncated


def avg_pool2d(party_index: int, x: torch.Tensor, kernel_size: Any, stride: Any = None,
               padding: Any = 0) -> Proto:
    """Shares of ``F.avg_pool2d`` (zeros padded and counted, torch's default): local sums,
    then one truncation. Error below ``|window sum| 2^-25`` plus one unit; the encoded
    window sums must stay below ``2^(62 - 24) / (kH kW)``."""
    k = _pair(kernel_size)
    s, p = _pair(stride if stride is not None else kernel_size), _pair(padding)
    sums = _windows(x, k, s, p, 0).sum(-1)
    return (yield from truncate(party_index, sums * round(2**AVG_BITS / (k[0] * k[1])),
                                AVG_BITS))


# ---- by name: what workers run, and what the dealer deals for it --------------------------
def _one(fn: Any) -> Any:
    return lambda i, xs, prm: fn(i, xs[0])


def _pool(fn: Any) -> Any:
    return lambda i, xs, prm: fn(i, xs[0], prm["kernel_size"], prm.get("stride"),
                                 prm.get("padding", 0))


def _max_both(i: int, xs: list[torch.Tensor], prm: dict[str, Any]) -> Proto:
    v, idx = yield from max_dim(i, xs[0], prm["dim"], index=True,
                                frac_bits=prm.get("frac_bits", DEFAULT_FRAC_BITS))
    return torch.stack([v, idx])  # one result: values, then indices


OPS: dict[str, Any] = {
    "cmp": lambda i, xs, prm: cmp(i, xs[0], xs[1] if len(xs) > 1 else torch.zeros_like(xs[0]),
                                  prm["op"]),
    "relu": _one(relu), "relu_deriv": _one(relu_deriv), "sign": _one(sign), "abs": _one(abs_),
    "maximum": lambda i, xs, prm: maximum(i, xs[0], xs[1]),
    "clamp": lambda i, xs, prm: clamp(i, xs[0], prm.get("lo"), prm.get("hi")),
    "max": _max_both, "max_pool2d": _pool(max_pool2d), "avg_pool2d": _pool(avg_pool2d),
}


def party_op(name: str, party_index: int, inputs: list[torch.Tensor],
             params: dict[str, Any]) -> Proto:
    """The protocol of op ``name`` (a key of ``OPS``) for one party: one result tensor
    (``max`` stacks values and indices)."""
    fn = OPS.get(name)
    if fn is None:
        raise ValueError(f"no comparison op {name!r}; known: {', '.join(sorted(OPS))}")
    return fn(party_index, list(inputs), dict(params))


def _max_plan(shape: tuple[int, ...], products: int) -> list[tuple[str, dict[str, Any]]]:
    """The comparisons of a tree max over the last dim of ``shape``."""
    out, n = [], shape[-1]
    while n > 1:
        out.append(("cmp", cmp_params((*shape[:-1], n // 2), "ge0", products)))
        n = n // 2 + n % 2
    return out


def _pooled(shape: Sequence[int], prm: dict[str, Any]) -> tuple[int, ...]:
    k = _pair(prm["kernel_size"])
    s = _pair(prm.get("stride") if prm.get("stride") is not None else prm["kernel_size"])
    p = _pair(prm.get("padding", 0))
    out = [(shape[-2 + j] + 2 * p[j] - k[j]) // s[j] + 1 for j in range(2)]
    return (*shape[:-2], *out)


def requests(name: str, shapes: Sequence[Sequence[int]], params: dict[str, Any]
             ) -> list[tuple[str, dict[str, Any]]]:
    """The dealer requests ``(kind, params)`` that op ``name`` draws, in order, for inputs
    of ``shapes``: what the notebook asks the dealer for before the parties run it."""
    s = tuple(torch.broadcast_shapes(*[torch.Size(sh) for sh in shapes]))
    if name == "cmp":
        return [("cmp", cmp_params(s, CMP_OPS[params["op"]][1]))]
    simple = {"relu": (s, 1), "abs": (s, 1), "maximum": (s, 1), "relu_deriv": (s, 0),
              "sign": ((2, *s), 0)}
    if name in simple:
        return [("cmp", cmp_params(simple[name][0], "ge0", simple[name][1]))]
    if name == "clamp":
        both = params.get("lo") is not None and params.get("hi") is not None
        return [("cmp", cmp_params((2, *s) if both else s, "ge0", 1))]
    if name == "max":
        dim = params["dim"] % max(len(s), 1)
        return _max_plan((*s[:dim], *s[dim + 1:], s[dim]), 2)
    if name == "max_pool2d":
        k = _pair(params["kernel_size"])
        return _max_plan((*_pooled(s, params), k[0] * k[1]), 1)
    if name == "avg_pool2d":
        return [("trunc", {"shape": list(_pooled(s, params)), "frac_bits": AVG_BITS})]
    raise ValueError(f"no comparison op {name!r}; known: {', '.join(sorted(OPS))}")
