"""Secure comparison: shares of ``[x >= 0]`` or ``[x == 0]``, exact, for any number of parties.

Assumptions: parties honest but curious; the dealer deals input-independent randomness
(seeds plus one correction to the last party), receives nothing and does not collude with
a party. Exact for every ring element: ``[x >= 0]`` is the top bit test of the signed
int64, so ``x < y`` (as ``[x - y < 0]``) is exact whenever ``x - y`` does not wrap, e.g.
for encoded values ``|x|, |y| < 2^62`` (reals below 2^46 ~ 7e13 at 16 fractional bits).

The protocol, party ``i`` holding ``x_i``; dealer request ``cmp`` with a uniform ``r``:

1. Open ``c = x + r`` (uniform: reveals nothing). Then ``x = c - r mod 2^64`` and, by
   the borrow rule of subtraction, ``msb(x) = c_63 ^ r_63 ^ [c mod 2^63 < r mod 2^63]``.
2. The 63-bit comparison ``[c' < r']`` of a public ``c'`` with a dealt ``r'`` splits into
   16 groups of 4 bits. Per group, ``[p < s]`` and ``[p == s]`` (``p`` public, ``s`` the
   dealt bits) are GF(2) polynomials in ``s`` with public coefficients; the dealer deals
   XOR shares of the 15 monomials of each group's bits, so the leaves cost no round. The
   usual tree ``lt = lt_hi ^ eq_hi lt_lo`` then combines 4 children per node: ``lt = lt3
   ^ eq3 lt2 ^ eq3 eq2 lt1 ^ eq3 eq2 eq1 lt0``, ``eq = eq3 eq2 eq1 eq0``, each node one
   opening of its 7 inputs masked by dealt bits (6 at the root, which needs no ``eq``):
   16 -> 4 -> 1, two rounds. All bits live as planes, 64 elements per int64
   (``planes.py``): the leaves are 31 ANDs and XORs of planes per group.
3. ``ge0 = 1 ^ msb(x)`` as an XOR share; convert it to an additive share with a daBit
   (a bit ``s`` dealt both XOR- and additively shared): open ``e = ge0 ^ s``, then
   ``ge0 = e + s - 2 e s``, linear in the shares of ``s``. Products ``v * ge0`` for shared
   ``v`` (ReLU: ``v = x``) cost no round more: ``v - a`` is opened in round 1 beside ``c``,
   the dealer deals ``a * s``, and ``v * ge0 = e v + (1 - 2e) (eps s + a s)``.

Equality ``[x == 0]`` is the same with ``[p == s]`` leaves over all 64 bits and AND nodes.

Rounds: 4. Sent by each party to each peer per element: 8 bytes (``c``) + 35 bits
(28 + 6 + 1; equality 16 + 4 + 1): 12.4 bytes (equality 10.6); 8 bytes more per product
(ReLU: 20.4). Dealer, per element, to the last party only: the leaves' monomials (16 x
15 bits), the nodes' and the root's higher monomials (4 x 22 and 15 bits; equality 4 x 11
and 11), ``s`` (8 bytes; ``r_63`` is folded into it) and 8 bytes per product: 50.9 bytes
(ReLU 58.9, equality 44.9; ``dealer_bytes("cmp", ...)``). Bits travel as planes of 64
elements, so a tensor's count is rounded up to a multiple of 64. Results are additive
shares of integers 0/1 (not fixed-point): ``v * ge0`` needs no truncation.

A party runs :func:`compare` as a generator: it yields :class:`Draw` (its shares of a
dealer request's random inputs come back), :class:`Dealt` (its shares of the derived
values of the latest draw) and :class:`Opening` (its shares to open; the opened values
come back), and returns its share of the result. ``simulate.run_parties`` runs it for
all parties in one process; ``tensors.spdz`` runs it on workers.

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.sharing import reconstruct
>>> xs = sim.share_float(torch.tensor([-2.0, 0.0, 3.5]), 3)   # 3 parties
>>> results = sim.run_parties([compare(i, xs[i]) for i in range(3)])
>>> reconstruct([bit for bit, _ in results]).tolist()       # [x >= 0]
[0, 1, 1]
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ppdl_nb.mpc.planes import (
    Polynomial,
    plane_bits,
    polynomial,
    secret_monomials,
    to_planes,
    words,
)
from ppdl_nb.mpc.ring import check_ring

__all__ = ["TESTS", "Dealt", "Draw", "Opening", "cmp_params", "cmp_spec", "compare"]

TESTS = ("ge0", "eq0")
GROUPS = 16  # 4-bit groups of the 64-bit word


@dataclass(frozen=True)
class Draw:
    """Ask for this party's shares of the random inputs of a dealer request."""

    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Dealt:
    """Ask for this party's shares of the derived values of a :class:`Draw`: the latest
    (``back=0``), or the one ``back`` draws before it (ops batched into one round draw
    all their requests before their first opening)."""

    back: int = 0


@dataclass(frozen=True)
class Opening:
    """Open values: ``combine`` is ``"add"`` (ring sums) or ``"xor"`` (words of ``width``
    XOR-shared bits, sent packed 8 bits per byte)."""

    combine: str
    shares: list[torch.Tensor]
    what: str = ""
    width: int = 0


Step = Draw | Dealt | Opening


# ---- the circuits -------------------------------------------------------------------------
def _bit(u: int, i: int) -> int:
    return (u >> i) & 1


def _lt_tail(u: int) -> int:
    """``eq3 lt2 ^ eq3 eq2 lt1 ^ eq3 eq2 eq1 lt0`` of u = (lt0, lt1, lt2, eq1, eq2, eq3)."""
    lt0, lt1, lt2, eq1, eq2, eq3 = (_bit(u, i) for i in range(6))
    return eq3 & (lt2 ^ (eq2 & (lt1 ^ (eq1 & lt0))))


def _leaf_ge0(p: int, s: int) -> list[int]:
    return [int(p < s), int(p == s)]


def _node_ge0(p: int, s: int) -> list[int]:
    return [_lt_tail(p ^ s), int((p ^ s) >> 3 == 0b1111)]  # eq = eq1 eq2 eq3 eq0


def _root_ge0(p: int, s: int) -> list[int]:
    return [_lt_tail(p ^ s)]


def _leaf_eq0(p: int, s: int) -> list[int]:
    return [int(p == s)]


def _and4(p: int, s: int) -> list[int]:
    return [int(p ^ s == 0b1111)]


@dataclass(frozen=True)
class _Circuit:
    leaf: Polynomial
    node: Polynomial
    root: Polynomial


@functools.cache
def _circuit(test: str) -> _Circuit:
    if test == "ge0":
        return _Circuit(polynomial(_leaf_ge0, 4, 4), polynomial(_node_ge0, 7, 7),
                        polynomial(_root_ge0, 6, 6))
    return _Circuit(polynomial(_leaf_eq0, 4, 4), polynomial(_and4, 4, 4),
                    polynomial(_and4, 4, 4))


# ---- what the dealer deals ----------------------------------------------------------------
def cmp_params(shape: Sequence[int], test: str = "ge0", products: int = 0) -> dict[str, Any]:
    """The dealer's parameters of one comparison (shapes as lists: they travel)."""
    return {"shape": [int(s) for s in shape], "test": test, "products": int(products)}


def cmp_spec(*, shape: Sequence[int], test: str = "ge0", products: int = 0) -> tuple:
    """``(bases, derived, derive)`` of a ``cmp`` request; ``bases`` and ``derived`` list
    ``(shape, width)``: width 0 for a ring element, 64 for bit planes (``planes.py``).
    Bases: ``r``, ``a_j``; the planes of the nodes' and the root's masks, and of ``t``.
    Derived: the planes of the leaves' secret monomials (``r``'s 4-bit groups) and of the
    masks' higher monomials; ``s = t ^ r_63`` (the daBit, ``r_63`` folded in; ``s = t``
    for ``eq0``) and ``a_j s`` as ring elements."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not isinstance(products, int) or products < 0:
        raise ValueError(f"products must be a non-negative int, got {products!r}")
    s = tuple(int(d) for d in shape)
    w = words(torch.Size(s).numel())
    cir = _circuit(test)
    bases = [(s, 0)] * (1 + products) + [((cir.node.k_s, 4, w), 64), ((cir.root.k_s, w), 64),
                                         ((w,), 64)]
    derived = [((len(cir.leaf.secret), GROUPS, w), 64), ((len(cir.node.higher), 4, w), 64),
               ((len(cir.root.higher), w), 64)] + [(s, 0)] * (1 + products)
    return bases, derived, functools.partial(_derive, test, products)


def _derive(test: str, products: int, secrets: list[torch.Tensor]) -> list[torch.Tensor]:
    """DEALER: the derived values from the random inputs (see :func:`cmp_spec`)."""
    r, a = secrets[0], secrets[1:1 + products]
    mask_n, mask_r, t = secrets[1 + products:]
    cir = _circuit(test)
    low = to_planes(r & (2**63 - 1) if test == "ge0" else r).view(GROUPS, 4, -1)
    s = plane_bits(t, r.numel()).view(r.shape)
    if test == "ge0":
        s ^= (r < 0).to(torch.int64)
    return [secret_monomials(cir.leaf, list(low.unbind(1))),
            secret_monomials(cir.node, list(mask_n), cir.node.higher),
            secret_monomials(cir.root, list(mask_r), cir.root.higher),
            s] + [aj * s for aj in a]


# ---- one party's protocol -----------------------------------------------------------------
def _node_inputs(test: str, lt: Any, eq: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """A level's input planes from its children's outputs (dim 0: nodes x 4 children,
    child 3 the most significant) and, for ``ge0``, each node's ``lt3`` (XORed into the
    node's ``lt`` afterwards): ``lt0 lt1 lt2 eq1 eq2 eq3 eq0`` (the root: no ``eq0``);
    for ``eq0``, ``eq0 eq1 eq2 eq3``."""
    eq = eq.unflatten(0, (-1, 4))
    if test == "eq0":
        return list(eq.unbind(1)), None
    lt = lt.unflatten(0, (-1, 4))
    u = [lt[:, 0], lt[:, 1], lt[:, 2], eq[:, 1], eq[:, 2], eq[:, 3], eq[:, 0]]
    return u, lt[:, 3]


def _level(party_index: int, poly: Polynomial, d: torch.Tensor, mask: torch.Tensor,
           higher: torch.Tensor, lt3: Any) -> list[torch.Tensor]:
    """LOCAL: a tree level's output planes from its opened masked inputs ``d``."""
    out = poly.evaluate(party_index, list(d), [*mask, *higher])
    if lt3 is not None:
        out[0] ^= lt3
    return out


def _check(x: torch.Tensor, products: Sequence[torch.Tensor]) -> None:
    check_ring(x, "x")
    for v in products:
        if check_ring(v, "a product operand").shape != x.shape:
            raise ValueError(f"product operands must have x's shape {tuple(x.shape)}, "
                             f"got {tuple(v.shape)}")


def compare(party_index: int, x: torch.Tensor, *, test: str = "ge0",
            products: Sequence[torch.Tensor] = ()
            ) -> Generator[Step, Any, tuple[torch.Tensor, list[torch.Tensor]]]:
    """PARTY ``party_index``: its additive shares of ``[x >= 0]`` (``test="ge0"``) or
    ``[x == 0]`` (``"eq0"``) as integers 0/1, and of ``v * bit`` for each ``v`` of
    ``products`` (shares of x's shape); 4 rounds (see the module)."""
    _check(x, products)
    bases = yield Draw("cmp", cmp_params(x.shape, test, len(products)))
    k = len(products)
    r, a, (mask_n, mask_r, t) = bases[0], bases[1:1 + k], bases[1 + k:]
    opened = yield Opening("add", [x + r] + [v - aj for v, aj in zip(products, a, strict=True)],
                           f"{test}: open masked input")
    c, eps = opened[0], opened[1:]
    leaf_m, node_h, root_h, s_ring, *a_s = yield Dealt()
    cir = _circuit(test)
    c_planes = to_planes(c)
    top = c_planes[63].clone()
    if test == "ge0":
        c_planes[63] = 0  # bit 63 is not compared: it enters as c_63 ^ r_63
    leaves = cir.leaf.evaluate(party_index, list(c_planes.view(GROUPS, 4, -1).unbind(1)),
                               list(leaf_m))
    u, lt3 = _node_inputs(test, leaves[0], leaves[-1])
    (d,) = yield Opening("xor", [torch.stack(u) ^ mask_n], f"{test}: open masked level 1", 64)
    nodes = _level(party_index, cir.node, d, mask_n, node_h, lt3)
    u, lt3 = _node_inputs(test, nodes[0], nodes[-1])
    if test == "ge0":
        u = u[:6]
    (d,) = yield Opening("xor", [torch.stack(u).squeeze(1) ^ mask_r],
                         f"{test}: open masked root", 64)
    bit = _level(party_index, cir.root, d, mask_r, root_h,
                 None if lt3 is None else lt3.squeeze(0))[0]
    if test == "ge0" and party_index == 0:  # ge0 = 1 ^ msb(x) = 1 ^ c_63 ^ r_63 ^ lt
        bit ^= ~top  # (r_63 is folded into the daBit: s = t ^ r_63)
    (e,) = yield Opening("xor", [bit ^ t], f"{test}: open masked bit", 64)
    e = plane_bits(e, x.numel()).view(x.shape)
    return _b2a(party_index, e, s_ring, products, eps, a_s)


def _b2a(party_index: int, e: torch.Tensor, s_ring: torch.Tensor,
         products: Sequence[torch.Tensor], eps: list[torch.Tensor], a_s: list[torch.Tensor]
         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LOCAL: ``b = e + (1 - 2e) s`` and ``v b = e v + (1 - 2e)(eps s + a s)``."""
    flip = 1 - 2 * e
    b = flip * s_ring
    if party_index == 0:
        b += e
    prods = [e * v + flip * (ep * s_ring + asj)
             for v, ep, asj in zip(products, eps, a_s, strict=True)]
    return b, prods
