"""Secure comparison (comparison.py) and its bit machinery (bits.py): exact, at the edges."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import PARTY_COUNTS, full_range

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.bits import pack_bits, pack_words, unpack_bits, unpack_words
from ppdl_nb.mpc.comparison import compare
from ppdl_nb.mpc.dealer import check_correction, deal, dealer_bytes, dealer_seeds
from ppdl_nb.mpc.planes import (
    plane_bits,
    planes_of_bits,
    polynomial,
    secret_monomials,
    to_planes,
)
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.sharing import reconstruct, share

TOP = 2**63 - 1
EDGES = [-(2**63), -(2**63) + 1, -(2**62) - 1, -(2**62), -(2**62) + 1, -(2**32), -65536,
         -2, -1, 0, 1, 2, 65536, 2**32, 2**62 - 1, 2**62, 2**62 + 1, TOP - 1, TOP]


def run(x, n, test="ge0", products=0, traffic=None, view=None):
    xs = share(x, n, PRG())
    ops = [[xs[i]] * products for i in range(n)]
    gens = [compare(i, xs[i], test=test, products=ops[i]) for i in range(n)]
    if view is not None:
        gens = [_spy(g, view) if i == 0 else g for i, g in enumerate(gens)]
    res = sim.run_parties(gens, traffic)
    bit = reconstruct([r[0] for r in res])
    return bit, [reconstruct([r[1][j] for r in res]) for j in range(products)]


def _spy(gen, view):
    """Party 0's protocol, recording every opened value it receives."""
    value = None
    while True:
        try:
            step = gen.send(value)
        except StopIteration as end:
            return end.value
        value = yield step
        if type(step).__name__ == "Opening":
            view.append([v.clone() for v in value])


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_sign_and_zero_tests_are_exact_at_the_edges(n):
    x = torch.tensor(EDGES * 20)
    bit, (prod,) = run(x, n, products=1)
    assert torch.equal(bit, (x >= 0).long())
    assert torch.equal(prod, torch.where(x >= 0, x, 0))  # relu, exactly
    z = torch.tensor(EDGES + [0] * 10)
    bit, _ = run(z, n, "eq0")
    assert torch.equal(bit, (z == 0).long())


@pytest.mark.parametrize("n", [2, 3])
def test_any_ring_element(n):
    x = full_range((2000,), n)
    x[::7] = 0
    assert torch.equal(run(x, n)[0], (x >= 0).long())
    assert torch.equal(run(x, n, "eq0")[0], (x == 0).long())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=3), st.sampled_from([2, 3]), st.integers(0, 2**31))
def test_any_shape(shape, n, seed):
    x = full_range(shape, seed) >> (seed % 64)  # values of every size, near 0 included
    bit, (prod,) = run(x, n, products=1)
    assert bit.shape == x.shape and torch.equal(bit, (x >= 0).long())
    assert torch.equal(prod, torch.where(x >= 0, x, 0))


@pytest.mark.parametrize("n", [2, 3])
def test_rounds_and_bytes_per_comparison(n):
    m = 1024  # bits travel as planes of 64 elements
    t = sim.Traffic()
    run(full_range((m,), 5), n, traffic=t)
    per_peer = 8 * m + (28 + 6 + 1) * m // 8
    assert t.rounds == 4 and t.bytes_per_party == (n - 1) * per_peer
    assert t.bytes_per_party / m <= 150 * (n - 1) / 2 and per_peer / m < 13
    # leaves 16 x 15 monomials, nodes 4 x 22, root 15 bits; the daBit 8 bytes
    assert 8 * t.dealer_bytes == (343 + 64) * m == 8 * dealer_bytes("cmp", shape=[m])
    t = sim.Traffic()
    run(full_range((m,), 5), n, products=1, traffic=t)  # relu: the same rounds, 8 B more
    assert t.rounds == 4 and t.bytes_per_party == (n - 1) * (per_peer + 8 * m)
    assert 8 * t.dealer_bytes == (343 + 128) * m
    t = sim.Traffic()
    run(full_range((m,), 5), n, "eq0", traffic=t)
    assert t.rounds == 4 and 8 * t.dealer_bytes == (16 * 15 + 4 * 11 + 11 + 64) * m
    assert t.bytes_per_party == (n - 1) * (8 * m + (16 + 4 + 1) * m // 8)


def test_what_a_party_sees_is_uniform():
    # every value opened to a party, for x all-negative or all-zero: balanced bits
    for x in (torch.full((4000,), -1), torch.zeros(4000, dtype=torch.int64)):
        view = []
        run(x, 3, view=view)
        c = view[0][0]
        assert abs(int(((c >> 63) & 1).sum()) - 2000) < 200
        for opened, inputs in zip(view[1:], (7, 6, 1), strict=True):
            d = opened[0].reshape(inputs, -1)  # bit planes, one row per masked input
            bits = torch.stack([plane_bits(row, row.numel() * 64) for row in d]).double()
            assert (bits.mean(1) - 0.5).abs().max() < 0.05


def test_bits_pack_and_unpack():
    b = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1, 1], dtype=torch.uint8)
    assert pack_bits(b).tolist() == [0b10001101, 0b11]
    assert torch.equal(unpack_bits(pack_bits(b), (10,)), b)
    for width, shape in [(29, (5, 3)), (7, (13,)), (1, (3, 3)), (6, (0,)), (8, (16,)),
                         (64, (3, 2))]:
        w = torch.randint(-2**63, 2**63 - 1, shape) if width == 64 else \
            torch.randint(0, 2**width, shape)
        packed = pack_words(w, width)
        assert packed.dtype == torch.uint8 and packed.numel() <= (w.numel() + 7) // 8 * width
        assert torch.equal(unpack_words(packed, shape, width), w)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_words(torch.zeros(3, dtype=torch.uint8), (9,), 7)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_words(torch.zeros(12, dtype=torch.uint8), (2,), 64)
    with pytest.raises(ValueError, match="packed bytes"):
        unpack_bits(torch.zeros(3, dtype=torch.uint8), (10,))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 64, 500])
def test_any_function_from_dealt_monomials(n, size):
    g = torch.Generator().manual_seed(n * size)
    truth = torch.randint(0, 2, (8, 16, 2), generator=g)  # a random F: 3 public, 4 secret bits
    poly = polynomial(lambda p, s: truth[p, s].tolist(), 3, 4)
    p, s = (torch.randint(0, k, (size,), generator=g) for k in (8, 16))
    mono = secret_monomials(poly, list(to_planes(s, 4)))
    shares = [torch.randint(-2**63, 2**63 - 1, mono.shape, generator=g) for _ in range(n - 1)]
    for sh in shares:
        mono = mono ^ sh
    public = list(to_planes(p, 3))
    out = poly.evaluate(0, public, list(mono))
    for i, sh in enumerate(shares, start=1):
        out = [a ^ b for a, b in zip(out, poly.evaluate(i, public, list(sh)), strict=True)]
    assert torch.equal(torch.stack([plane_bits(o, size) for o in out], -1), truth[p, s])


def test_planes_are_the_bits_of_64_elements_per_word():
    x = full_range((300,), 3)
    planes = to_planes(x)
    assert planes.shape == (64, 5)
    for j in (0, 1, 31, 32, 62, 63):
        assert torch.equal(plane_bits(planes[j], 300), (x >> j) & 1)
    assert torch.equal(planes_of_bits((x >> 7) & 1), planes[7])
    assert to_planes(torch.zeros(0, dtype=torch.int64)).shape == (64, 0)


def test_requests_and_corrections_are_checked():
    seeds = dealer_seeds(2)
    with pytest.raises(ValueError, match="test must be"):
        deal("cmp", seeds, b"l", shape=[2], test="lt")
    with pytest.raises(ValueError, match="products"):
        deal("cmp", seeds, b"l", shape=[2], products=-1)
    corr = deal("cmp", seeds, b"l", shape=[2])
    assert [tuple(c.shape) for c in corr] == [(15, 16, 1), (22, 4, 1), (15, 1), (2,)]
    assert all(c.dtype == torch.int64 for c in corr)
    with pytest.raises(ValueError, match="correction"):
        check_correction("cmp", [c.to(torch.int32) for c in corr], shape=[2])
    xs = share(torch.zeros(2, dtype=torch.int64), 2, PRG())
    with pytest.raises(ValueError, match="x's shape"):
        next(compare(0, xs[0], products=[torch.zeros(3, dtype=torch.int64)]))
    with pytest.raises(TypeError, match="int64"):
        next(compare(0, xs[0].double()))
