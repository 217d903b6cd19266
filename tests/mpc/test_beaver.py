"""Differential tests: each shared op against plaintext torch on decode(encode(inputs))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import PARTY_COUNTS, ULP, data, roundtrip

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.beaver import beaver_mul_finish, beaver_open, beaver_square_open
from ppdl_nb.mpc.dealer import simulate_dealer
from ppdl_nb.mpc.encoding import encode
from ppdl_nb.mpc.sharing import add, add_public, mul_public, neg, sub

small = st.integers(1, 6)
parties = st.sampled_from(PARTY_COUNTS)
seeds = st.integers(0, 2**31)


def check(got, want, terms=1):
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= terms * ULP  # k exact terms, one truncation


@settings(max_examples=60, deadline=None)
@given(st.lists(small, min_size=1, max_size=3), parties, seeds)
def test_mul(shape, n, seed):
    x, y = data(shape, seed), data(shape, seed + 1)
    got = sim.reveal(sim.mul(sim.share_float(x, n), sim.share_float(y, n)))
    check(got, roundtrip(x) * roundtrip(y))


@pytest.mark.parametrize("n", [2, 3])
def test_mul_broadcasts(n):
    x, y = data((4, 1), 1), data((5,), 2)
    got = sim.reveal(sim.mul(sim.share_float(x, n), sim.share_float(y, n)))
    check(got, roundtrip(x) * roundtrip(y))


@settings(max_examples=60, deadline=None)
@given(st.lists(small, min_size=0, max_size=1), small, small, small, parties, seeds)
def test_matmul(batch, rows, k, cols, n, seed):
    x, y = data((*batch, rows, k), seed), data((k, cols), seed + 1)
    got = sim.reveal(sim.matmul(sim.share_float(x, n), sim.share_float(y, n)))
    check(got, roundtrip(x) @ roundtrip(y), terms=k + 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 1), parties, seeds)
def test_conv2d(batch, c_in, c_out, ksize, stride, pad, n, seed):
    x, w = data((batch, c_in, 6, 6), seed), data((c_out, c_in, ksize, ksize), seed + 1)
    got = sim.reveal(sim.conv2d(sim.share_float(x, n), sim.share_float(w, n), stride=stride,
                                padding=pad))
    want = F.conv2d(roundtrip(x), roundtrip(w), stride=stride, padding=pad)
    check(got, want, terms=c_in * ksize * ksize + 1)


@settings(max_examples=50, deadline=None)
@given(st.lists(small, min_size=1, max_size=3), parties, seeds)
def test_square(shape, n, seed):
    x = data(shape, seed)
    check(sim.reveal(sim.square(sim.share_float(x, n))), roundtrip(x) ** 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(small, min_size=1, max_size=3), parties, seeds)
def test_linear_ops(shape, n, seed):
    x, y = data(shape, seed), data(shape, seed + 1)
    xs, ys = sim.share_float(x, n), sim.share_float(y, n)
    rx, ry = roundtrip(x), roundtrip(y)
    assert torch.equal(sim.reveal([add(a, b) for a, b in zip(xs, ys, strict=True)]), rx + ry)
    assert torch.equal(sim.reveal([sub(a, b) for a, b in zip(xs, ys, strict=True)]), rx - ry)
    assert torch.equal(sim.reveal([neg(a) for a in xs]), -rx)
    c = encode(torch.tensor(2.5))
    assert torch.equal(sim.reveal([add_public(i, a, c) for i, a in enumerate(xs)]), rx + 2.5)
    # public real multiplier: multiply by the encoding, then truncate
    prod = sim.truncate([mul_public(a, encode(torch.tensor(-1.75))) for a in xs])
    check(sim.reveal(prod), rx * -1.75)
    # public integer multiplier: no truncation needed
    assert torch.equal(sim.reveal([mul_public(a, 3) for a in xs]), rx * 3)


def test_chained_ops_keep_precision():
    # a small linear layer twice: 64x20 @ 20x10 @ 10x5, 3 parties
    x, w1, w2 = data((64, 20), 1, -1, 1), data((20, 10), 2, -1, 1), data((10, 5), 3, -1, 1)
    shares = [sim.share_float(t, 3) for t in (x, w1, w2)]
    h = sim.matmul(shares[0], shares[1])
    out = sim.reveal(sim.matmul(h, shares[2]))
    want = roundtrip(x) @ roundtrip(w1) @ roundtrip(w2)
    assert (out - want).abs().max().item() < 40 * ULP


def test_shape_mismatches_are_explained():
    t = simulate_dealer("mul", 2, x_shape=(3,), y_shape=(3,))
    z = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="triple does not fit"):
        beaver_open(z, z, t[0][0], t[0][1])
    with pytest.raises(ValueError, match="square pair"):
        beaver_square_open(z, t[0][0])
    e = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="c_share"):
        beaver_mul_finish(0, e, e, t[0][0], t[0][1], z)
    with pytest.raises(ValueError, match="party_index"):
        beaver_mul_finish(-1, e, e, *t[0])


@pytest.mark.parametrize("n", [2, 3])
def test_openings_look_the_same_for_any_secret(n):
    # a party's whole view of a product round is (eps, delta): balanced bits either way
    for value in (-100.0, 100.0):
        x = torch.full((20_000,), value, dtype=torch.float64)
        xs, ys = sim.share_float(x, n), sim.share_float(x, n)
        t = simulate_dealer("mul", n, x_shape=(20_000,), y_shape=(20_000,))
        opened = sim.open_round([beaver_open(xs[i], ys[i], t[i][0], t[i][1]) for i in range(n)])
        for view in opened:
            for bit in (0, 30, 62, 63):
                assert abs(int(((view >> bit) & 1).sum()) - 10_000) < 600, (value, bit)
