"""All parties in one process: the protocol steps run in turn, traffic counted.

This is what the SharedTensor layer does across workers, minus the messages. It exists
for tests, benchmarks and teaching: every opening goes through :func:`open_round`, which
packs each party's openings into one message and counts rounds and bytes.

>>> import torch
>>> t = Traffic()
>>> xs = share_float(torch.tensor([1.5, -2.0]), 3)
>>> ys = share_float(torch.tensor([2.0, 0.25]), 3)
>>> reveal(mul(xs, ys, traffic=t)).tolist(), t.rounds
([3.0, -0.5], 2)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ppdl_nb.mpc import beaver
from ppdl_nb.mpc.dealer import dealer_bytes, simulate_dealer
from ppdl_nb.mpc.encoding import DEFAULT_FRAC_BITS, decode, encode
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.sharing import pack, reconstruct, share, unpack
from ppdl_nb.mpc.truncation import trunc_finish, trunc_open

__all__ = ["Traffic", "matmul", "mul", "open_round", "reveal", "share_float", "square",
           "truncate", "conv2d"]

Shares = list[torch.Tensor]


@dataclass
class Traffic:
    """Counts of one computation: rounds, bytes each party sends, bytes from the dealer."""

    rounds: int = 0
    bytes_per_party: int = 0  # online, each party to all its peers (all-to-all opening)
    dealer_bytes: int = 0
    log: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.rounds} rounds, {self.bytes_per_party} B sent per party, "
                f"{self.dealer_bytes} B from the dealer")


def open_round(
    openings: Sequence[Sequence[torch.Tensor]], traffic: Traffic | None = None, what: str = ""
) -> list[torch.Tensor]:
    """Open one round: ``openings[i]`` are party i's shares to open, sent as one message."""
    n = len(openings)
    shapes = [t.shape for t in openings[0]]
    messages = [pack(o) for o in openings]
    opened = unpack(reconstruct(messages), shapes)
    if traffic is not None:
        traffic.rounds += 1
        traffic.bytes_per_party += (n - 1) * 8 * messages[0].numel()
        traffic.log.append(what)
    return opened


def share_float(
    x: torch.Tensor, n_parties: int, frac_bits: int = DEFAULT_FRAC_BITS,
    generator: PRG | None = None,
) -> Shares:
    """Encode and share a real tensor (the data owner's step)."""
    return share(encode(x, frac_bits), n_parties, generator or PRG())


def reveal(shares: Sequence[torch.Tensor], frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Reconstruct and decode (what the result's owner does)."""
    return decode(reconstruct(shares), frac_bits)


def truncate(xs: Shares, frac_bits: int = DEFAULT_FRAC_BITS,
             traffic: Traffic | None = None) -> Shares:
    """Divide a shared value by 2^frac_bits (one round, see ``truncation.py``)."""
    n = len(xs)
    masks = simulate_dealer("trunc", n, shape=tuple(xs[0].shape), frac_bits=frac_bits)
    if traffic is not None:
        traffic.dealer_bytes += dealer_bytes("trunc", shape=tuple(xs[0].shape),
                                             frac_bits=frac_bits)
    (c,) = open_round([[trunc_open(i, xs[i], masks[i][0])] for i in range(n)], traffic,
                      "trunc")
    return [trunc_finish(i, c, masks[i][1], masks[i][2], frac_bits) for i in range(n)]


def _bilinear(kind: str, finish: Callable, xs: Shares, ys: Shares, frac_bits: int,
              traffic: Traffic | None, **params) -> Shares:
    n = len(xs)
    shapes = {"x_shape": tuple(xs[0].shape),
              ("w_shape" if kind == "conv2d" else "y_shape"): tuple(ys[0].shape)}
    triples = simulate_dealer(kind, n, **shapes, **params)
    if traffic is not None:
        traffic.dealer_bytes += dealer_bytes(kind, **shapes, **params)
    opened = open_round(
        [beaver.beaver_open(xs[i], ys[i], triples[i][0], triples[i][1]) for i in range(n)],
        traffic, kind)
    eps, delta = opened
    zs = [finish(i, eps, delta, *triples[i]) for i in range(n)]
    return truncate(zs, frac_bits, traffic) if frac_bits else zs


def mul(xs: Shares, ys: Shares, *, frac_bits: int = DEFAULT_FRAC_BITS,
        traffic: Traffic | None = None) -> Shares:
    """Elementwise product of two shared fixed-point tensors, truncated (2 rounds)."""
    return _bilinear("mul", beaver.beaver_mul_finish, xs, ys, frac_bits, traffic)


def matmul(xs: Shares, ys: Shares, *, frac_bits: int = DEFAULT_FRAC_BITS,
           traffic: Traffic | None = None) -> Shares:
    """Matrix product of two shared fixed-point tensors, truncated (2 rounds)."""
    return _bilinear("matmul", beaver.beaver_matmul_finish, xs, ys, frac_bits, traffic)


def conv2d(xs: Shares, ws: Shares, *, stride: int = 1, padding: int = 0, dilation: int = 1,
           groups: int = 1, frac_bits: int = DEFAULT_FRAC_BITS,
           traffic: Traffic | None = None) -> Shares:
    """conv2d of shared input and shared weights (no bias), truncated (2 rounds)."""
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    finish = functools.partial(beaver.beaver_conv2d_finish, **kw)
    return _bilinear("conv2d", finish, xs, ws, frac_bits, traffic, **kw)


def square(xs: Shares, *, frac_bits: int = DEFAULT_FRAC_BITS,
           traffic: Traffic | None = None) -> Shares:
    """Elementwise square of a shared fixed-point tensor, truncated (2 rounds)."""
    n = len(xs)
    pairs = simulate_dealer("square", n, shape=tuple(xs[0].shape))
    if traffic is not None:
        traffic.dealer_bytes += dealer_bytes("square", shape=tuple(xs[0].shape))
    (eps,) = open_round([[beaver.beaver_square_open(xs[i], pairs[i][0])] for i in range(n)],
                        traffic, "square")
    zs = [beaver.beaver_square_finish(i, eps, *pairs[i]) for i in range(n)]
    return truncate(zs, frac_bits, traffic) if frac_bits else zs
