"""XOR-shared bits: packing for the wire, and Boolean functions evaluated from dealt monomials.

A bit ``b`` is XOR-shared when party ``i`` holds ``b_i`` with ``b = b_0 ^ ... ^ b_{n-1}``.
Locally, bits shared together live in the low bits of an int64 *word* per element (XOR
shares of a word are XOR shares of each of its bits). XOR with a share or a public bit,
and AND with a public bit, are local; a public constant is XORed in by party 0 only.
What travels is packed, 8 bits per byte (:func:`pack_words`), and an opening is the XOR
of everyone's packed bytes, not their sum.

Products of shared bits need help from the dealer. The trick here evaluates any Boolean
function ``F(p, s)`` of a public ``p`` (``k_p`` bits) and a dealt secret ``s`` (``k_s``
bits) without a round: as a polynomial in ``s`` over GF(2) (its algebraic normal form),
``F(p, s) = XOR_m T[p, m] * s^m`` where ``s^m`` is the product of the bits of ``s`` named
by the monomial ``m``. The coefficients ``T[p, m]`` are public once ``p`` is, and the dealer
deals XOR shares of every monomial ``s^m`` that some ``T[., m]`` needs, so each party's
share of ``F(p, s)`` is a local XOR of its monomial shares (:func:`anf_table`,
:func:`monomials`, :func:`eval_table`). Two uses:

* ``p`` a public (opened) value, ``s`` a dealt random value: ``[p < s]`` of 4-bit groups.
* ``u`` shared bits masked by dealt bits ``a``: open ``d = u ^ a``; then ``G(u) = G(d ^ a)``
  is ``F(d, a)``: any function of up to 6 shared bits costs one round of ``k`` opened bits
  (the multi-input generalization of a GF(2) Beaver triple).

>>> import torch
>>> t = anf_table(lambda p, s: [int(p < s)], 2, 2)    # [p < s] for 2-bit numbers
>>> t.higher                                          # s0 s1 is needed (as monomial 3)
(3,)
>>> p, s = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 3, 2, 0])
>>> word = monomial_word(t, s, higher_monomials(t, s))   # one party holds everything
>>> eval_table(0, t, p, word).tolist()
[1, 1, 0, 0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["AnfTable", "anf_table", "direct_codes", "eval_table", "higher_monomials",
           "monomial_word", "monomials_of", "pack_bits", "pack_words", "unpack_bits",
           "unpack_words", "xor_reconstruct"]

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Flatten 0/1 values into bytes, 8 per byte (the last byte padded with zeros)."""
    flat = bits.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8) << _SHIFTS).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: 0/1 ``uint8`` values of ``shape``."""
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise TypeError(f"packed bits must be a 1-D uint8 tensor, got {packed.dtype} "
                        f"of shape {tuple(packed.shape)}")
    n = int(torch.Size(shape).numel())
    if packed.numel() != (n + 7) // 8:
        raise ValueError(f"{packed.numel()} packed bytes cannot hold {n} bits exactly; "
                         f"expected {(n + 7) // 8}")
    bits = (packed.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.reshape(-1)[:n].reshape(tuple(shape))


def pack_words(words: torch.Tensor, width: int) -> torch.Tensor:
    """The low ``width`` bits of each int64 word, packed 8 bits per byte.

    Up to 8 bits, 8 words at a time: their ``8 * width`` bits fill ``width`` bytes of an
    int64 (``ceil(n / 8) * width`` bytes for ``n`` words)."""
    flat = words.reshape(-1)
    if width > 8:
        return pack_bits((flat.unsqueeze(-1) >> torch.arange(width)) & 1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = (flat.reshape(-1, 8) << (width * torch.arange(8))).sum(-1)
    return groups.view(torch.uint8).reshape(-1, 8)[:, :width].reshape(-1)


def unpack_words(packed: torch.Tensor, shape: Sequence[int], width: int) -> torch.Tensor:
    """Inverse of :func:`pack_words`: int64 words of ``shape``."""
    n = int(torch.Size(shape).numel())
    if width > 8:
        bits = unpack_bits(packed, (*shape, width)).to(torch.int64)
        return (bits << torch.arange(width)).sum(-1)
    groups = (n + 7) // 8
    if packed.dtype != torch.uint8 or packed.shape != (groups * width,):
        raise ValueError(f"{tuple(packed.shape)} packed bytes ({packed.dtype}) cannot hold "
                         f"{n} words of {width} bits; expected {groups * width} uint8")
    full = torch.zeros(groups, 8, dtype=torch.uint8)
    full[:, :width] = packed.reshape(groups, width)
    words = (full.view(torch.int64) >> (width * torch.arange(8))) & ((1 << width) - 1)
    return words.reshape(-1)[:n].reshape(tuple(shape))


def xor_reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """XOR of the parties' bit shares (or packed bytes): the opened bits."""
    if not shares:
        raise ValueError("xor_reconstruct needs at least one share")
    out = shares[0].clone()
    for s in shares[1:]:
        out ^= s
    return out


@dataclass(frozen=True)
class AnfTable:
    """Coefficients of ``s -> F(p, s)`` for each public ``p``, over a word of monomials.

    A party's monomial shares travel and compute as one int64 *word*: bit ``j`` is its
    share of ``s^(1 << j)`` (the bits of ``s`` themselves) for ``j < k_s``, then of the
    monomials ``higher`` (degree >= 2) in order. ``masks[p, out]`` selects the monomials
    of output ``out``'s polynomial; ``const[p, out]`` is its constant term.
    """

    masks: torch.Tensor  # int64 (2^k_p, outputs)
    const: torch.Tensor  # int64 (2^k_p, outputs), 0/1
    higher: tuple[int, ...]  # monomials of degree >= 2 any coefficient needs, ascending
    k_s: int

    @property
    def width(self) -> int:
        """Bits of a monomial word."""
        return self.k_s + len(self.higher)


def _mobius(values: torch.Tensor, k: int) -> torch.Tensor:
    """Truth tables (last dim over s) -> ANF coefficients, GF(2) Moebius transform."""
    v = values.clone()
    idx = torch.arange(1 << k)
    for i in range(k):
        hi = idx[(idx >> i) & 1 == 1]
        v[..., hi] ^= v[..., hi ^ (1 << i)]
    return v


def anf_table(fn: Callable[[int, int], Sequence[int]], k_p: int, k_s: int) -> AnfTable:
    """Tabulate ``fn(p, s) -> bits`` (``k_p``, ``k_s`` <= 8) as an :class:`AnfTable`."""
    if not (0 <= k_p <= 8 and 1 <= k_s <= 8):
        raise ValueError(f"anf_table takes up to 8 public and 8 secret bits, got {k_p}, {k_s}")
    return _anf_table(fn, k_p, k_s)


@functools.cache
def _anf_table(fn: Callable[[int, int], Sequence[int]], k_p: int, k_s: int) -> AnfTable:
    truth = torch.tensor([[list(fn(p, s)) for s in range(1 << k_s)] for p in range(1 << k_p)],
                         dtype=torch.uint8).transpose(1, 2)  # (p, out, s)
    coef = _mobius(truth, k_s)
    used = coef.amax((0, 1))
    higher = tuple(m for m in range(1 << k_s) if m & (m - 1) and used[m])
    if k_s + len(higher) > 63:
        raise ValueError(f"the function needs {k_s + len(higher)} monomials; at most 63 fit")
    cols = [1 << j for j in range(k_s)] + list(higher)
    sel = coef[..., cols].to(torch.int64)
    masks = (sel << torch.arange(len(cols))).sum(-1)
    return AnfTable(masks, coef[..., 0].to(torch.int64), higher, k_s)


@functools.cache
def _higher_lookup(k: int, higher: tuple[int, ...]) -> torch.Tensor:
    """For every value ``v`` of ``k`` bits, the word of its ``higher`` monomials."""
    v = torch.arange(1 << k)
    out = torch.zeros(1 << k, dtype=torch.int64)
    for j, m in enumerate(higher):
        out |= ((v & m) == m).to(torch.int64) << j
    return out


def higher_monomials(table: AnfTable, s: torch.Tensor) -> torch.Tensor:
    """DEALER: the word of ``table.higher`` monomials of secret values ``s`` (int64,
    ``k_s`` bits each): bit ``j`` is the product of the bits of ``s`` in ``higher[j]``."""
    return _higher_lookup(table.k_s, table.higher).take(s)


def monomial_word(table: AnfTable, s: torch.Tensor, higher: torch.Tensor) -> torch.Tensor:
    """A party's monomial word from its shares of ``s`` and of the higher monomials."""
    return s | (higher << table.k_s)


@functools.cache
def _word_lookup(k: int, higher: tuple[int, ...]) -> torch.Tensor:
    return torch.arange(1 << k) | (_higher_lookup(k, higher) << k)


def monomials_of(table: AnfTable, s: torch.Tensor) -> torch.Tensor:
    """DEALER: the whole monomial word of secret values ``s`` (one lookup)."""
    return _word_lookup(table.k_s, table.higher).take(s)


@functools.cache
def _parity16() -> torch.Tensor:
    v, out = torch.arange(1 << 16), torch.zeros(1 << 16, dtype=torch.int64)
    for i in range(16):
        out ^= (v >> i) & 1
    return out


def _parity(v: torch.Tensor, width: int) -> torch.Tensor:
    """Parity of the low ``width`` bits of each int64 (a 64 Ki-entry table, 16 at a time)."""
    table = _parity16()
    out = table.take(v & 0xFFFF)
    for shift in range(16, width, 16):
        out ^= table.take((v >> shift) & 0xFFFF)
    return out


DIRECT_BITS = 20  # tables of public x word bits up to this size are looked up directly


@functools.cache
def direct_codes(table: AnfTable) -> tuple[torch.Tensor, torch.Tensor]:
    """``F`` for every (public value, monomial word): outputs packed as the bits of one
    byte, indexed by ``p << width | word`` (the constant terms apart, for party 0)."""
    words = torch.arange(1 << table.width)
    bits = _parity(table.masks.unsqueeze(1) & words.view(1, -1, 1), table.width)
    codes = (bits << torch.arange(bits.shape[-1])).sum(-1)
    const = (table.const << torch.arange(bits.shape[-1])).sum(-1)
    return codes.flatten().to(torch.uint8), const


def eval_table(party_index: int, table: AnfTable, p: torch.Tensor,
               word: torch.Tensor) -> torch.Tensor:
    """LOCAL: this party's XOR shares of ``F(p, s)``, its outputs as the bits of one int64
    per element (bit ``o``: output ``o``), from the public ``p`` and its shares of the
    monomial word (:func:`monomial_word`)."""
    k_p = table.masks.shape[0].bit_length() - 1
    if k_p + table.width <= DIRECT_BITS:  # one lookup per element
        codes, const = direct_codes(table)
        out = codes.take((p << table.width) | word).to(torch.int64)
    else:
        bits = _parity(table.masks[p] & word.unsqueeze(-1), table.width)
        out = bits[..., 0] if bits.shape[-1] == 1 else (
            bits << torch.arange(bits.shape[-1])).sum(-1)
        const = (table.const << torch.arange(table.const.shape[-1])).sum(-1)
    if party_index == 0:
        out ^= const.take(p)
    return out
