from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import PARTY_COUNTS

from ppdl_nb.mpc.dealer import simulate_dealer
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.sharing import reconstruct, share
from ppdl_nb.mpc.truncation import TRUNC_BOUND_BITS, trunc_finish, trunc_open

LOW, HIGH = -(2**TRUNC_BOUND_BITS), 2**TRUNC_BOUND_BITS - 1
EDGES = [LOW, LOW + 1, LOW + 2**16 - 1, -(2**40) - 1, -65537, -65536, -65535, -32768, -1, 0,
         1, 32767, 32768, 65535, 65536, 65537, 2**40 + 1, HIGH - 2**16, HIGH - 1, HIGH]


def truncate(values, n, f, view=None):
    x = torch.tensor(values, dtype=torch.int64)
    xs = share(x, n, PRG())
    masks = simulate_dealer("trunc", n, shape=tuple(x.shape), frac_bits=f)
    c = reconstruct([trunc_open(i, xs[i], masks[i][0]) for i in range(n)])
    if view is not None:
        view.append(c)
    return reconstruct([trunc_finish(i, c, masks[i][1], masks[i][2], f) for i in range(n)])


def assert_floor_or_next(values, got, f):
    for v, y in zip(values, got.tolist(), strict=True):
        assert y in (v >> f, (v >> f) + 1), (v, y)  # >> on Python ints is floor division


@pytest.mark.parametrize("n", PARTY_COUNTS)
@pytest.mark.parametrize("f", [1, 16, 20, 32, 61])
def test_edges_of_the_range(n, f):
    # each edge repeated so that many different masks (and carries) are exercised
    values = EDGES * 50
    assert_floor_or_next(values, truncate(values, n, f), f)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(LOW, HIGH), min_size=1, max_size=30), st.sampled_from(PARTY_COUNTS),
       st.integers(1, 40))
def test_any_input_in_bound(values, n, f):
    assert_floor_or_next(values, truncate(values, n, f), f)


@pytest.mark.parametrize("n", [2, 3])
def test_rounding_is_unbiased(n):
    # x = 5.25 and -5.25 with f = 16: results are floor or floor+1, mean near x
    for real in (5.25, -5.25):
        v = int(real * 2**16)
        got = truncate([v] * 20_000, n, 16).to(torch.float64)
        assert abs(got.mean().item() - v / 2**16) < 0.02
    exact = truncate([3 << 16] * 100, n, 16)  # exact multiples truncate exactly
    assert exact.tolist() == [3] * 100


def test_the_opened_value_reveals_nothing():
    # what every party sees (c) for x = LOW and x = HIGH: top bits balanced either way
    for x in (LOW, HIGH):
        view = []
        truncate([x] * 20_000, 3, 16, view)
        c = view[0]
        for bit in (0, 40, 62, 63):
            ones = int(((c >> bit) & 1).sum())
            assert abs(ones - 10_000) < 600, (x, bit)


def test_inputs_are_validated():
    z = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="does not fit"):
        trunc_open(0, z, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="frac_bits"):
        trunc_finish(0, z, z, z, 0)
    with pytest.raises(ValueError, match="party_index"):
        trunc_open(-1, z, z)
    with pytest.raises(TypeError, match="int64"):
        trunc_open(0, z.double(), z)
