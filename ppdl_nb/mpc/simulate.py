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
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ppdl_nb.mpc import beaver, nonlinear
from ppdl_nb.mpc.bits import pack_words, unpack_words, xor_reconstruct
from ppdl_nb.mpc.comparison import Dealt, Draw, Opening
from ppdl_nb.mpc.dealer import (
    check_correction,
    deal,
    dealer_bytes,
    dealer_seeds,
    expand_parts,
    simulate_dealer,
)
from ppdl_nb.mpc.encoding import DEFAULT_FRAC_BITS, decode, encode
from ppdl_nb.mpc.prg import PRG, new_seed
from ppdl_nb.mpc.sharing import pack, reconstruct, share, unpack
from ppdl_nb.mpc.truncation import trunc_finish, trunc_open

__all__ = ["Traffic", "absolute", "avg_pool2d", "clamp", "compare", "conv2d", "matmul",
           "max_dim", "max_pool2d", "maximum", "mul", "open_round", "open_xor_round", "plan",
           "relu",
           "relu_deriv", "reveal", "run_parties", "share_float", "sign", "square",
           "truncate"]

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


def open_xor_round(
    openings: Sequence[Sequence[torch.Tensor]], width: int, traffic: Traffic | None = None,
    what: str = ""
) -> list[torch.Tensor]:
    """Open one round of XOR-shared words of ``width`` bits: each party's bits go packed,
    8 per byte, in one message; the opened words come back."""
    n = len(openings)
    shapes = [t.shape for t in openings[0]]
    messages = [pack_words(torch.cat([t.reshape(-1) for t in o]), width) for o in openings]
    flat = unpack_words(xor_reconstruct(messages), (sum(int(s.numel()) for s in shapes),),
                        width)
    if traffic is not None:
        traffic.rounds += 1
        traffic.bytes_per_party += (n - 1) * messages[0].numel()
        traffic.log.append(what)
    parts = torch.split(flat, [int(s.numel()) for s in shapes])
    return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]


def _draw_all(step: Draw, n: int, traffic: Traffic | None
              ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Dealer and every party for one request: each party's bases and derived shares."""
    seeds, label = dealer_seeds(n), new_seed()
    correction = deal(step.kind, seeds, label, **step.params)
    if traffic is not None:
        traffic.dealer_bytes += dealer_bytes(step.kind, **step.params)
    bases, derived = [], []
    for i in range(n):
        b, d = expand_parts(step.kind, seeds[i], label, i, n, **step.params)
        bases.append(b)
        derived.append(d if d is not None else check_correction(step.kind, correction,
                                                                 **step.params))
    return bases, derived


def run_parties(parties: Sequence[Generator], traffic: Traffic | None = None) -> list[Any]:
    """Run one protocol generator per party (``comparison.compare`` and what is built on
    it) in lockstep: deal what they draw, open what they open; their results, in order."""
    n, values, dealt = len(parties), [None] * len(parties), []
    while True:
        steps, done = [], []
        for gen, value in zip(parties, values, strict=True):
            try:
                steps.append(gen.send(value))
            except StopIteration as end:
                done.append(end.value)
        if done:
            if len(done) != n:
                raise RuntimeError("the parties' protocols ended out of step")
            return done
        step = steps[0]
        if isinstance(step, Draw):
            values, derived = _draw_all(step, n, traffic)
            dealt.append(derived)
        elif isinstance(step, Dealt):
            values = dealt[-1 - step.back]
        elif isinstance(step, Opening):
            shares = [st.shares for st in steps]
            opened = (open_xor_round(shares, step.width, traffic, step.what)
                      if step.combine == "xor" else open_round(shares, traffic, step.what))
            values = [opened] * n
        else:
            raise TypeError(f"a party yielded {type(step).__name__}")


def plan(protocol: Generator) -> list[tuple[str, dict[str, Any]]]:
    """The dealer requests ``(kind, params)`` a protocol draws, in order, found by running
    it as party 0 of 2 on its own: its openings answer with its own shares and its draws
    come from a throwaway seed (the requests of this package's protocols depend on
    shapes and settings only, never on values). About a third of a full simulation's
    work: no dealer, one party."""
    log: list[tuple[str, dict[str, Any]]] = []
    value, derived = None, []
    while True:
        try:
            step = protocol.send(value)
        except StopIteration:
            return log
        if isinstance(step, Draw):
            log.append((step.kind, dict(step.params)))
            value, d = expand_parts(step.kind, b"plan" * 8, b"%d" % len(log), 0, 2,
                                    **step.params)
            derived.append(d)
        elif isinstance(step, Dealt):
            value = derived[-1 - step.back]
        elif isinstance(step, Opening):
            value = list(step.shares)
        else:
            raise TypeError(f"a protocol yielded {type(step).__name__}")


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


# ---- comparison and what is built on it (see comparison.py, nonlinear.py) -----------------
def _run(proto: Callable[..., Generator], operands: Sequence[Shares],
         traffic: Traffic | None, *args: Any, **kwargs: Any) -> list[Any]:
    n = len(operands[0])
    return run_parties([proto(i, *[o[i] for o in operands], *args, **kwargs)
                        for i in range(n)], traffic)


def _fixed(bits: Shares, frac_bits: int) -> Shares:
    """Integer shares (0/1, -1) as fixed-point values, exactly (a local shift)."""
    return [b << frac_bits for b in bits]


def compare(xs: Shares, ys: Shares, op: str, *, frac_bits: int = DEFAULT_FRAC_BITS,
            traffic: Traffic | None = None) -> Shares:
    """``x op y`` for ``op`` in ge, lt, le, gt, eq, ne: fixed-point 0.0 / 1.0 (4 rounds)."""
    return _fixed(_run(nonlinear.cmp, [xs, ys], traffic, op), frac_bits)


def relu(xs: Shares, *, traffic: Traffic | None = None) -> Shares:
    """ReLU of a shared fixed-point tensor (4 rounds, no truncation)."""
    return _run(nonlinear.relu, [xs], traffic)


def relu_deriv(xs: Shares, *, frac_bits: int = DEFAULT_FRAC_BITS,
               traffic: Traffic | None = None) -> Shares:
    """``[x > 0]`` as fixed-point 0.0 / 1.0."""
    return _fixed(_run(nonlinear.relu_deriv, [xs], traffic), frac_bits)


def sign(xs: Shares, *, frac_bits: int = DEFAULT_FRAC_BITS,
         traffic: Traffic | None = None) -> Shares:
    """``torch.sign`` as fixed-point -1.0 / 0.0 / 1.0."""
    return _fixed(_run(nonlinear.sign, [xs], traffic), frac_bits)


def absolute(xs: Shares, *, traffic: Traffic | None = None) -> Shares:
    """``|x|`` (4 rounds)."""
    return _run(nonlinear.abs_, [xs], traffic)


def maximum(xs: Shares, ys: Shares, *, traffic: Traffic | None = None) -> Shares:
    """Elementwise ``torch.maximum`` of two shared tensors."""
    return _run(nonlinear.maximum, [xs, ys], traffic)


def clamp(xs: Shares, lo: float | None = None, hi: float | None = None, *,
          frac_bits: int = DEFAULT_FRAC_BITS, traffic: Traffic | None = None) -> Shares:
    """``x.clamp(lo, hi)`` for public real bounds (4 rounds)."""
    enc = [None if v is None else int(encode(torch.tensor(float(v)), frac_bits))
           for v in (lo, hi)]
    return _run(nonlinear.clamp, [xs], traffic, *enc)


def max_dim(xs: Shares, dim: int, *, frac_bits: int = DEFAULT_FRAC_BITS,
            traffic: Traffic | None = None) -> tuple[Shares, Shares]:
    """``x.max(dim)``: shares of the values and of the (first) indices, both fixed-point."""
    res = _run(nonlinear.max_dim, [xs], traffic, dim, index=True, frac_bits=frac_bits)
    return [r[0] for r in res], [r[1] for r in res]


def max_pool2d(xs: Shares, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
               traffic: Traffic | None = None) -> Shares:
    """``F.max_pool2d`` of a shared tensor (4 rounds per halving of the window)."""
    return _run(nonlinear.max_pool2d, [xs], traffic, kernel_size, stride, padding)


def avg_pool2d(xs: Shares, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
               traffic: Traffic | None = None) -> Shares:
    """``F.avg_pool2d`` of a shared tensor (one truncation round)."""
    return _run(nonlinear.avg_pool2d, [xs], traffic, kernel_size, stride, padding)
