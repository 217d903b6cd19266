from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppdl_nb.mpc.encoding import ENCODE_BOUND_BITS, decode, encode
from ppdl_nb.mpc.ring import check_ring, msb, shift_right_logical, wrap

EDGES = [
    -(2**63), -(2**63) + 1, -(2**62), -(2**62) + 1, -(2**53) - 1, -(2**53), -65537, -65536,
    -65535, -32768, -32769, -3, -2, -1, 0, 1, 2, 32767, 32768, 65535, 65536, 2**53,
    2**53 + 1, 2**62 - 1, 2**62, 2**63 - 1,
]


def exact_decode(v: int, f: int) -> float:
    return float(v) / 2.0**f  # Python's int -> float rounds correctly; / 2^f is exact


@pytest.mark.parametrize("f", [0, 1, 8, 16, 20, 40])
def test_decode_is_exact_at_the_edges(f):
    v = torch.tensor(EDGES, dtype=torch.int64)
    got = decode(v, f).tolist()
    assert got == [exact_decode(e, f) for e in EDGES]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20),
       st.integers(0, 40))
def test_decode_matches_correct_rounding(values, f):
    got = decode(torch.tensor(values, dtype=torch.int64), f).tolist()
    assert got == [exact_decode(v, f) for v in values]


def test_negative_decoding_where_crypten_041_errs():
    # CrypTen 0.4.1 divides negatives by (scale - 1); exact decoding of -k/2^16 must hold
    v = torch.arange(-70000, 1, dtype=torch.int64)
    assert decode(v).tolist() == [k / 65536 for k in range(-70000, 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=30))
def test_roundtrip_within_half_ulp(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    err = (decode(encode(x)) - x).abs().max().item()
    assert err <= 2.0**-17


def test_encode_near_the_bound():
    f = 16
    limit = 2.0 ** (ENCODE_BOUND_BITS - f)
    ok = torch.tensor([limit - 1.0, -(limit - 1.0), -limit + 2**-6], dtype=torch.float64)
    v = encode(ok, f)
    assert decode(v, f).tolist() == ok.tolist()
    for bad in (limit, -limit, 1e300):
        with pytest.raises(ValueError, match="too large for fixed point"):
            encode(torch.tensor([bad], dtype=torch.float64), f)


def test_encode_rounds_half_to_even_and_accepts_float32_and_ints():
    assert encode(torch.tensor([0.5, 1.5, -0.5]), 0).tolist() == [0, 2, 0]
    assert encode(torch.tensor([1, -2]), 4).tolist() == [16, -32]
    assert encode(1.25, 2).tolist() == 5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_encode_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinity"):
        encode(torch.tensor([1.0, bad]))


@pytest.mark.parametrize("f", [-1, 62, 1.5, True])
def test_frac_bits_validated(f):
    with pytest.raises(ValueError, match="frac_bits"):
        encode(torch.tensor([1.0]), f)


def test_decode_rejects_non_ring():
    with pytest.raises(TypeError, match="int64"):
        decode(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_ring([1, 2])


def test_ring_helpers():
    t = torch.tensor([-1, 0, 2**62, -(2**63)], dtype=torch.int64)
    assert msb(t).tolist() == [1, 0, 0, 1]
    assert shift_right_logical(t, 62).tolist() == [3, 0, 1, 2]
    assert shift_right_logical(t, 0).tolist() == t.tolist()
    assert wrap(2**64 + 5) == 5 and wrap(2**63) == -(2**63)
    with pytest.raises(ValueError):
        shift_right_logical(t, 64)
    assert math.isclose(decode(torch.tensor([2**16]), 16).item(), 1.0)
