from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import full_range

from ppdl_nb.mpc.limbs import (
    limb_plan,
    ring_addmm_,
    ring_conv2d,
    ring_matmul,
    ring_method,
    split_limbs,
)

dims = st.integers(1, 9)


@settings(max_examples=80, deadline=None)
@given(st.lists(dims, min_size=0, max_size=2), dims, dims, dims, st.integers(0, 2**31))
def test_limb_matmul_equals_int64_bit_for_bit(batch, n, k, m, seed):
    a = full_range((*batch, n, k), seed)
    b = full_range((k, m), seed + 1)
    assert torch.equal(ring_matmul(a, b, method="limbs"), torch.matmul(a, b))
    assert torch.equal(ring_matmul(a, b), torch.matmul(a, b))  # auto


@pytest.mark.parametrize("k", [1, 300, 2048, 2049, 5000])
def test_limb_matmul_at_extreme_values_and_both_limb_widths(k):
    # all-extreme operands make every limb product as large as the exactness bound allows
    for va, vb in [(-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1), (-(2**63), 2**63 - 1),
                   (-(2**62) - 2**41, 2**21 + 2**43)]:
        a = torch.full((2, k), va, dtype=torch.int64)
        b = torch.full((k, 3), vb, dtype=torch.int64)
        assert torch.equal(ring_matmul(a, b, method="limbs"), a @ b)
    a, b = full_range((3, k), k), full_range((k, 2), k + 1)
    assert torch.equal(ring_matmul(a, b, method="limbs"), a @ b)


def test_vector_operands_follow_torch_matmul():
    a, b = full_range((7,), 5), full_range((7,), 6)
    m = full_range((7, 4), 7)
    assert torch.equal(ring_matmul(a, b, method="limbs"), a @ b)
    assert torch.equal(ring_matmul(a, m, method="limbs"), a @ m)
    assert torch.equal(ring_matmul(m.T, a, method="limbs"), m.T @ a)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
       st.integers(4, 7), st.integers(1, 2), st.integers(0, 1), st.integers(0, 2**31))
def test_limb_conv2d_equals_int64_bit_for_bit(batch, c_in, c_out, ksize, hw, stride, pad, seed):
    x = full_range((batch, c_in, hw, hw), seed)
    w = full_range((c_out, c_in, ksize, ksize), seed + 1)
    want = F.conv2d(x, w, stride=stride, padding=pad)
    got = ring_conv2d(x, w, stride=stride, padding=pad, method="limbs")
    assert torch.equal(got, want)


def test_grouped_conv_and_extremes():
    x = torch.full((1, 4, 5, 5), -(2**63), dtype=torch.int64)
    w = torch.full((6, 2, 3, 3), 2**63 - 1, dtype=torch.int64)
    want = F.conv2d(x, w, groups=2, padding=1)
    assert torch.equal(ring_conv2d(x, w, groups=2, padding=1, method="limbs"), want)


def test_limb_plan_and_split():
    assert limb_plan(2048) == (22, 3) and limb_plan(2049) == (16, 4)
    assert limb_plan(2**23) == (16, 4) and limb_plan(2**23 + 1) is None and limb_plan(0) is None
    x = full_range((1000,), 9)
    limbs = split_limbs(x, 22, 3)
    assert all(limb.abs().max() <= 2**21 for limb in limbs)
    back = sum(limb.to(torch.int64) * (1 << (22 * i)) for i, limb in enumerate(limbs))
    assert torch.equal(back, x)


def test_method_override_and_validation():
    a, b = full_range((3, 3), 1), full_range((3, 3), 2)
    with ring_method("limbs"):
        assert torch.equal(ring_matmul(a, b), a @ b)
    with ring_method("int64"):
        assert torch.equal(ring_matmul(a, b), a @ b)
    with pytest.raises(ValueError, match="method"):
        ring_matmul(a, b, method="fast")
    with pytest.raises(TypeError, match="int64"):
        ring_matmul(a.double(), b)
    with pytest.raises(ValueError, match="4-D"):
        ring_conv2d(a, b)


@pytest.mark.parametrize("k", [128, 256, 512, 1024])
def test_limbs_at_their_most_negative(k):
    # low limbs of exactly -2^21 make k-term sums reach k * 2^42: the conversion edge
    v = -(2**21) - (2**21 << 22)  # limbs 0 and 1 are both -2^21
    a = torch.full((2, k), v, dtype=torch.int64)
    assert split_limbs(a, 22, 3)[0].min() == -(2**21)
    assert torch.equal(ring_matmul(a, a.T.contiguous(), method="limbs"), a @ a.T)
    x = torch.full((1, k, 1, 1), v, dtype=torch.int64)
    w = torch.full((1, k, 1, 1), v, dtype=torch.int64)
    assert torch.equal(ring_conv2d(x, w, method="limbs"), F.conv2d(x, w))


@pytest.mark.parametrize("method", ["int64", "limbs", "auto"])
def test_addmm_accumulates_in_place_bit_for_bit(method):
    a, b, z = full_range((5, 7), 11), full_range((7, 3), 12), full_range((5, 3), 13)
    want = z + a @ b
    out = ring_addmm_(z, a, b, method=method)
    assert out is z and torch.equal(z, want)
    z3 = full_range((2, 5, 3), 14)  # batched: falls back to the general product
    want3 = z3 + full_range((2, 5, 7), 15) @ b
    assert torch.equal(ring_addmm_(z3, full_range((2, 5, 7), 15), b, method=method), want3)
