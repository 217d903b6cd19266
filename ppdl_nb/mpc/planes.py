"""Bit planes: XOR-shared bits of 64 elements in one int64, and Boolean functions on them.

A comparison works on bits, and a tensor of ``n`` elements has ``n`` of each. Kept as
*planes* (word ``w`` of a plane holds that bit of elements ``64 w`` to ``64 w + 63``),
every XOR, AND and opening handles 64 elements per machine word, and an opening's bytes
are the planes themselves (no packing). :func:`to_planes` turns int64 values into their
64 planes (a 64 x 64 bit-matrix transpose per block of 64 elements); :func:`plane_bits`
turns one plane back into 0/1 values.

Products of shared bits need the dealer. :class:`Polynomial` evaluates any Boolean
function ``F(p, s)`` of public bits ``p`` and secret bits ``s`` without a round, from
its algebraic normal form over GF(2): ``F = XOR over (A, B) of p^A s^B``. The public
monomials ``p^A`` are ANDs of public planes; the secret ones ``s^B`` are dealt as XOR
shares (:func:`secret_monomials`), so a party's share of ``F`` is XORs and ANDs of its
monomial shares with public planes. Two uses in :mod:`ppdl_nb.mpc.comparison`:

* ``p`` an opened value, ``s`` a dealt random value: ``[p < s]`` of 4-bit groups;
* ``u`` shared bits masked by dealt bits ``a``: open ``d = u ^ a``; then ``G(u) =
  G(d ^ a)`` is a polynomial in ``(d, a)``: a function of several shared bits costs one
  round (the multi-input generalization of a GF(2) Beaver triple).

>>> import torch
>>> lt = polynomial(lambda p, s: [int(p < s)], 2, 2)   # [p < s] for 2-bit numbers
>>> p, s = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 3, 2, 0])
>>> pp, sp = to_planes(p, 2), to_planes(s, 2)            # 2 planes of one word each
>>> mono = secret_monomials(lt, list(sp))                # one party holds everything
>>> plane_bits(lt.evaluate(0, list(pp), list(mono))[0], 4).tolist()
[1, 1, 0, 0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Polynomial", "plane_bits", "planes_of_bits", "polynomial", "secret_monomials",
           "to_planes", "words"]

_ROW = torch.arange(64)
_STAGES = [(j, sum(((1 << j) - 1) << k for k in range(0, 64, 2 * j)))
           for j in (32, 16, 8, 4, 2, 1)]
_STAGES = [(j, m - (1 << 64) if m >= 1 << 63 else m) for j, m in _STAGES]  # as int64


def words(n: int) -> int:
    """Words per plane for ``n`` elements."""
    return (int(n) + 63) // 64


def to_planes(x: torch.Tensor, bits: int = 64) -> torch.Tensor:
    """The low ``bits`` planes of int64 values ``x`` (flattened): ``(bits, words(n))``,
    bit ``k`` of ``planes[j, w]`` is bit ``j`` of element ``64 w + k`` (padding: 0)."""
    flat = x.reshape(-1)
    n, w = flat.numel(), words(flat.numel())
    a = torch.zeros(w * 64, dtype=torch.int64)
    a[:n] = flat
    a = a.view(w, 64)
    for j, m in _STAGES:  # swap the off-diagonal j x j blocks, halving j
        v = a.view(w, 64 // (2 * j), 2, j)
        lo, hi = v[:, :, 0, :], v[:, :, 1, :]
        t = (lo >> j).bitwise_xor_(hi).bitwise_and_(m)
        hi ^= t
        lo ^= t << j
    return a[:, :bits].t().contiguous()


def plane_bits(plane: torch.Tensor, n: int) -> torch.Tensor:
    """One plane (``(words(n),)`` int64) back to ``n`` values 0/1 (int64)."""
    return ((plane.unsqueeze(-1) >> _ROW) & 1).reshape(-1)[:n]


def planes_of_bits(bits: torch.Tensor) -> torch.Tensor:
    """0/1 values (flattened) as one plane: the inverse of :func:`plane_bits`."""
    return to_planes(bits, 1)[0]


@dataclass(frozen=True)
class Polynomial:
    """``F(p, s)`` over GF(2), ``k_p`` public and ``k_s`` secret bits, several outputs.

    ``terms[o]`` lists, for output ``o``, pairs ``(B, (A, ...))``: the secret monomial
    ``s^B`` times the XOR of the public monomials ``p^A`` (bit sets as ints; ``B = 0`` is
    the constant 1, which party 0 holds). ``secret`` lists the secret monomials a party
    needs shares of, in the order :meth:`evaluate` takes them: the single bits first
    (``1 << j``), then the higher ones ascending.
    """

    k_p: int
    k_s: int
    terms: tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]
    secret: tuple[int, ...]
    flip: bool = False  # the terms are in the complemented public bits (fewer of them)

    @property
    def higher(self) -> tuple[int, ...]:
        """The secret monomials of degree >= 2 (what a dealer deals beside masks)."""
        return self.secret[self.k_s:]

    def evaluate(self, party_index: int, p: Sequence[torch.Tensor],
                 s: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """LOCAL: this party's XOR shares of each output, from the public planes ``p``
        (``k_p`` of them) and its shares ``s`` of the monomials ``self.secret``."""
        if self.flip:
            p = [~q for q in p]
        public: dict[int, torch.Tensor] = {}

        def mono(a: int) -> torch.Tensor:
            if a not in public:
                low = a & -a
                public[a] = p[low.bit_length() - 1] if a == low else mono(a ^ low) & mono(low)
            return public[a]

        index = {b: j for j, b in enumerate(self.secret)}
        out = []
        for terms in self.terms:
            acc = torch.zeros_like(p[0] if p else s[0])
            for b, alist in terms:
                if b == 0 and party_index != 0:
                    continue
                share = s[index[b]] if b else None
                if alist == (0,):  # coefficient 1
                    if share is None:
                        acc.bitwise_not_()
                    else:
                        acc ^= share
                    continue
                planes = [mono(a) for a in alist if a]
                if len(planes) == 1 and alist[0]:  # one public monomial: one pass
                    acc ^= planes[0] if share is None else planes[0] & share
                    continue
                coef = _xor_of(planes, 0 in alist)
                acc ^= coef if share is None else coef.bitwise_and_(share)
            out.append(acc)
        return out


def _xor_of(planes: list[torch.Tensor], flip: bool) -> torch.Tensor:
    """A fresh plane: the XOR of ``planes`` (negated when ``flip``, i.e. XOR 1)."""
    out = planes[0].clone() if len(planes) == 1 else planes[0] ^ planes[1]
    for q in planes[2:]:
        out ^= q
    return out.bitwise_not_() if flip else out


def _mobius(values: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Truth tables -> ANF coefficients along ``dim`` (size 2^k), GF(2) Moebius transform."""
    v = values.movedim(dim, -1).clone()
    idx = torch.arange(1 << k)
    for i in range(k):
        hi = idx[(idx >> i) & 1 == 1]
        v[..., hi] ^= v[..., hi ^ (1 << i)]
    return v.movedim(-1, dim)


def polynomial(fn: Callable[[int, int], Sequence[int]], k_p: int, k_s: int) -> Polynomial:
    """The :class:`Polynomial` of ``fn(p, s) -> bits`` (``k_p``, ``k_s`` <= 8)."""
    if not (0 <= k_p <= 8 and 1 <= k_s <= 8):
        raise ValueError(f"polynomial takes up to 8 public and 8 secret bits, got {k_p}, {k_s}")
    return _polynomial(fn, k_p, k_s)


@functools.cache
def _polynomial(fn: Callable[[int, int], Sequence[int]], k_p: int, k_s: int) -> Polynomial:
    truth = torch.tensor([[list(fn(p, s)) for s in range(1 << k_s)] for p in range(1 << k_p)],
                         dtype=torch.uint8)  # (p, s, out)
    # in the public bits or their complements, whichever needs fewer XORs of planes
    # ([p < s] has 31 terms in ~p and 161 in p)
    made = [_terms(t, k_p, k_s) for t in (truth, truth.flip(0))]
    flip = _cost(made[1]) < _cost(made[0])
    terms = made[flip]
    used = {b for t in terms for b, _ in t if b}
    singles = tuple(1 << j for j in range(k_s))
    higher = tuple(sorted(b for b in used if b & (b - 1)))
    return Polynomial(k_p, k_s, terms, singles + higher, flip)


def _terms(truth: torch.Tensor, k_p: int, k_s: int) -> tuple:
    coef = _mobius(_mobius(truth, k_p, 0), k_s, 1)
    terms = []
    for o in range(coef.shape[-1]):
        by_b: dict[int, list[int]] = {}
        for a, b in coef[..., o].nonzero().tolist():
            by_b.setdefault(b, []).append(a)
        terms.append(tuple((b, tuple(a)) for b, a in sorted(by_b.items())))
    return tuple(terms)


def _cost(terms: tuple) -> int:
    return sum(len(a) for t in terms for _, a in t)


def secret_monomials(poly: Polynomial, s: Sequence[torch.Tensor],
                     which: Sequence[int] | None = None) -> torch.Tensor:
    """DEALER: the planes of the secret monomials ``which`` (default ``poly.secret``) of
    the secret bits' planes ``s`` (``k_s`` of them), stacked on a new first dim."""
    made: dict[int, torch.Tensor] = {1 << j: s[j] for j in range(poly.k_s)}

    def mono(b: int) -> torch.Tensor:
        if b not in made:
            low = b & -b
            made[b] = mono(b ^ low) & made[low]
        return made[b]

    return torch.stack([mono(b) for b in (poly.secret if which is None else which)])
