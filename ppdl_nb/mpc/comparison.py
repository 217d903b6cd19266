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
   XOR shares of the 15 monomials of each group's bits, so the leaves cost no round
   (``bits.py``). The usual tree ``lt = lt_hi ^ eq_hi lt_lo`` then combines 4 children
   per node: ``lt = lt3 ^ eq3 lt2 ^ eq3 eq2 lt1 ^ eq3 eq2 eq1 lt0``, ``eq = eq3 eq2 eq1
   eq0``, each node one opening of its 7 inputs masked by dealt bits (6 at the root, which
   needs no ``eq``): 16 -> 4 -> 1, two rounds.
3. ``ge0 = 1 ^ msb(x)`` as an XOR share; convert it to an additive share with a daBit
   (a bit ``s`` dealt both XOR- and additively shared): open ``e = ge0 ^ s``, then
   ``ge0 = e + s - 2 e s``, linear in the shares of ``s``. Products ``v * ge0`` for shared
   ``v`` (ReLU: ``v = x``) cost no round more: ``v - a`` is opened in round 1 beside ``c``,
   the dealer deals ``a * s``, and ``v * ge0 = e v + (1 - 2e) (eps s + a s)``.

Equality ``[x == 0]`` is the same with ``[p == s]`` leaves over all 64 bits and AND nodes.

Rounds: 4. Sent by each party to each peer per element: 8 bytes (``c``) + 35 bits
(28 + 6 + 1; equality 16 + 4 + 1), packed across elements: 12.4 bytes (equality 10.6);
8 bytes more per product (ReLU: 20.4). Dealer, per element, to the last party only: the
leaves' monomial words (16 x 15 bits, as int16), the nodes' and the root's (4 x 22 bits
as int32, 15 bits as int16), ``s`` (8 bytes; ``r_63`` is folded into it) and 8 bytes per
product: 58 bytes (ReLU 66, equality 50; ``dealer_bytes("cmp", ...)``). Results are
additive shares of integers 0/1 (not fixed-point): ``v * ge0`` needs no truncation.

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

from ppdl_nb.mpc.bits import (
    AnfTable,
    anf_table,
    direct_codes,
    eval_table,
    higher_monomials,
    monomial_word,
    monomials_of,
)
from ppdl_nb.mpc.ring import check_ring

__all__ = ["TESTS", "Dealt", "Draw", "Opening", "cmp_params", "cmp_spec", "compare"]

TESTS = ("ge0", "eq0")
GROUPS = 16  # 4-bit groups of the 64-bit word
_GROUP_SHIFTS = 4 * torch.arange(GROUPS)


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
    leaf: AnfTable
    node: AnfTable
    root: AnfTable


@functools.cache
def _circuit(test: str) -> _Circuit:
    if test == "ge0":
        return _Circuit(anf_table(_leaf_ge0, 4, 4), anf_table(_node_ge0, 7, 7),
                        anf_table(_root_ge0, 6, 6))
    return _Circuit(anf_table(_leaf_eq0, 4, 4), anf_table(_and4, 4, 4), anf_table(_and4, 4, 4))


# ---- what the dealer deals ----------------------------------------------------------------
def cmp_params(shape: Sequence[int], test: str = "ge0", products: int = 0) -> dict[str, Any]:
    """The dealer's parameters of one comparison (shapes as lists: they travel)."""
    return {"shape": [int(s) for s in shape], "test": test, "products": int(products)}


def cmp_spec(*, shape: Sequence[int], test: str = "ge0", products: int = 0) -> tuple:
    """``(bases, derived, derive)`` of a ``cmp`` request; ``bases`` and ``derived`` list
    ``(shape, width)``: width 0 for a ring element, else the bits of an XOR-shared word.
    Bases: ``r``, ``a_j``; the masks of the nodes and of the root, ``t``. Derived: the
    leaves' monomial words, the nodes' and root's higher monomials; ``s = t ^ r_63`` (the
    daBit, ``r_63`` folded in; ``s = t`` for ``eq0``) and ``a_j s`` as ring elements."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not isinstance(products, int) or products < 0:
        raise ValueError(f"products must be a non-negative int, got {products!r}")
    s = tuple(int(d) for d in shape)
    cir = _circuit(test)
    bases = [(s, 0)] * (1 + products) + [(s + (4,), cir.node.k_s), (s, cir.root.k_s), (s, 1)]
    derived = [(s + (GROUPS,), cir.leaf.width), (s + (4,), len(cir.node.higher)),
               (s, len(cir.root.higher))] + [(s, 0)] * (1 + products)
    return bases, derived, functools.partial(_derive, test, products)


def _derive(test: str, products: int, secrets: list[torch.Tensor]) -> list[torch.Tensor]:
    """DEALER: the derived values from the random inputs (see :func:`cmp_spec`)."""
    r, a = secrets[0], secrets[1:1 + products]
    mask_n, mask_r, t = secrets[1 + products:]
    cir = _circuit(test)
    low = r & (2**63 - 1) if test == "ge0" else r
    nibbles = low.unsqueeze(-1) >> _GROUP_SHIFTS
    nibbles &= 15
    s = t ^ (r < 0).to(torch.int64) if test == "ge0" else t
    return [monomials_of(cir.leaf, nibbles),
            higher_monomials(cir.node, mask_n), higher_monomials(cir.root, mask_r),
            s] + [aj * s for aj in a]


# ---- one party's protocol -----------------------------------------------------------------
# where each child's (lt, eq) goes in its node's input word: lt0, lt1, lt2 -> bits 0-2,
# eq1, eq2, eq3 -> bits 3-5, eq0 -> bit 6 (not at the root); lt3 (bit 7 for the leaves)
# is XORed into the node's lt afterwards. eq0 test: eq_j -> bit j.
_PLACES = {"ge0": [(0, 6), (1, 3), (2, 4), (7, 5)], "eq0": [(0,), (1,), (2,), (3,)]}
_LT_PLACES = torch.tensor([1, 2, 4, 0])
_EQ_PLACES = torch.tensor([0, 8, 16, 32])
_AND_PLACES = torch.tensor([1, 2, 4, 8])


@functools.cache
def _leaf_tables(test: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The leaves' outputs already placed in their node's input word, for party 0 (the
    constants folded in) and for the others: indexed by ``j << (4 + width) | p << width |
    word`` for a group at child position ``j``."""
    leaf = _circuit(test).leaf
    codes, const = direct_codes(leaf)
    codes = codes.to(torch.int64)
    p_of = torch.arange(codes.numel()) >> leaf.width
    out = []
    for c in (codes ^ const[p_of], codes):
        per_child = [sum(((c >> o) & 1) << place for o, place in enumerate(places))
                     for places in _PLACES[test]]
        out.append(torch.cat(per_child).to(torch.uint8))
    return out[0], out[1]


def _leaves(party_index: int, test: str, c: torch.Tensor, word: torch.Tensor
            ) -> tuple[torch.Tensor, Any]:
    """LOCAL: the level-1 nodes' input words (and ``lt3``) from the opened ``c`` and this
    party's leaf monomial words: one table lookup per 4-bit group."""
    width = _circuit(test).leaf.width
    index = c.unsqueeze(-1) >> _GROUP_SHIFTS  # in place from here: (..., 16) int64 passes
    index &= 15
    if test == "ge0":
        index[..., -1] &= 7  # bit 63 is not compared: it enters as c_63 ^ r_63
    index <<= width
    index |= word
    index |= (torch.arange(GROUPS) % 4) << (4 + width)
    table = _leaf_tables(test)[0 if party_index == 0 else 1]
    u = table.take(index).unflatten(-1, (4, 4)).sum(-1)
    return (u & 127, u >> 7) if test == "ge0" else (u, None)


def _children(test: str, codes: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The root's input word ``u`` (and ``lt3``) from its 4 children's output codes (dim
    -1; bit 0: lt, bit 1: eq; for ``eq0`` bit 0: eq)."""
    if test == "eq0":
        return (codes * _AND_PLACES).sum(-1), None
    u = ((codes & 1) * _LT_PLACES).sum(-1) + ((codes >> 1) * _EQ_PLACES).sum(-1)
    return u, codes[..., 3] & 1


def _level(party_index: int, table: AnfTable, d: torch.Tensor, mask: torch.Tensor,
           higher: torch.Tensor, lt3: Any) -> torch.Tensor:
    """LOCAL: a tree level's output codes from its opened masked inputs ``d``."""
    res = eval_table(party_index, table, d, monomial_word(table, mask, higher))
    return res if lt3 is None else res ^ lt3


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
    leaf_w, node_h, root_h, s_ring, *a_s = yield Dealt()
    cir = _circuit(test)
    u, lt3 = _leaves(party_index, test, c, leaf_w)
    (d,) = yield Opening("xor", [u ^ mask_n], f"{test}: open masked level 1", cir.node.k_s)
    u, lt3 = _children(test, _level(party_index, cir.node, d, mask_n, node_h, lt3))
    (d,) = yield Opening("xor", [u ^ mask_r], f"{test}: open masked root", cir.root.k_s)
    bit = _level(party_index, cir.root, d, mask_r, root_h, lt3)
    if test == "ge0" and party_index == 0:  # ge0 = 1 ^ msb(x) = 1 ^ c_63 ^ r_63 ^ lt
        bit ^= (c >= 0).to(torch.int64)  # (r_63 is folded into the daBit: s = t ^ r_63)
    (e,) = yield Opening("xor", [bit ^ t], f"{test}: open masked bit", 1)
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
