from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mpc_helpers import PARTY_COUNTS

from ppdl_nb.mpc.dealer import KINDS, deal, dealer_bytes, dealer_seeds, expand, simulate_dealer
from ppdl_nb.mpc.ring import msb, shift_right_logical
from ppdl_nb.mpc.sharing import reconstruct


def opened(per_party, index):
    return reconstruct([p[index] for p in per_party])


@pytest.mark.parametrize("n", PARTY_COUNTS)
def test_triples_satisfy_their_relation(n):
    t = simulate_dealer("mul", n, x_shape=(3, 1), y_shape=(4,))
    assert torch.equal(opened(t, 0) * opened(t, 1), opened(t, 2))
    assert opened(t, 2).shape == (3, 4)
    t = simulate_dealer("matmul", n, x_shape=(2, 5, 3), y_shape=(3, 4))
    assert torch.equal(opened(t, 0) @ opened(t, 1), opened(t, 2))
    kw = {"stride": 2, "padding": 1}
    t = simulate_dealer("conv2d", n, x_shape=(2, 3, 6, 6), w_shape=(4, 3, 3, 3), **kw)
    assert torch.equal(F.conv2d(opened(t, 0), opened(t, 1), **kw), opened(t, 2))
    t = simulate_dealer("square", n, shape=(7,))
    assert torch.equal(opened(t, 0) ** 2, opened(t, 1))
    t = simulate_dealer("trunc", n, shape=(1000,), frac_bits=16)
    r = opened(t, 0)
    assert torch.equal(shift_right_logical(r, 16), opened(t, 1))
    # the top bit's shares are right modulo 2^f: only msb * 2^(64-f) is ever used
    assert torch.equal(msb(r), opened(t, 2) & 0xFFFF)
    assert 400 < int(msb(r).sum()) < 600  # the mask is uniform: top bit balanced


def test_only_the_last_party_receives_anything():
    seeds = dealer_seeds(3)
    corr = deal("matmul", seeds, b"req-7", x_shape=(4, 5), y_shape=(5, 6))
    assert [tuple(c.shape) for c in corr] == [(4, 6)]
    assert dealer_bytes("matmul", x_shape=(4, 5), y_shape=(5, 6)) == 8 * 24
    assert dealer_bytes("trunc", shape=(10,), frac_bits=16) == 100  # r>>f 8 B, msb 2 B
    assert dealer_bytes("trunc", shape=(10,), frac_bits=20) == 120
    narrow = deal("trunc", seeds, b"req-8", shape=(10,), frac_bits=16)
    assert [c.dtype for c in narrow] == [torch.int64, torch.int16]
    shares = [expand("matmul", seeds[i], b"req-7", i, 3, corr if i == 2 else None,
                     x_shape=(4, 5), y_shape=(5, 6)) for i in range(3)]
    assert torch.equal(opened(shares, 0) @ opened(shares, 1), opened(shares, 2))
    # parties 0..n-2 derive theirs without the dealer saying anything more
    again = expand("matmul", seeds[0], b"req-7", 0, 3, x_shape=(4, 5), y_shape=(5, 6))
    assert all(torch.equal(a, b) for a, b in zip(again, shares[0], strict=True))


def test_labels_give_fresh_triples():
    seeds = dealer_seeds(2)
    a1 = expand("square", seeds[0], b"l1", 0, 2, shape=(16,))[0]
    a2 = expand("square", seeds[0], b"l2", 0, 2, shape=(16,))[0]
    assert not torch.equal(a1, a2)


def test_requests_are_validated():
    seeds = dealer_seeds(2)
    with pytest.raises(ValueError, match="known kinds"):
        deal("relu", seeds, b"x", shape=(2,))
    assert set(KINDS) == {"mul", "matmul", "conv2d", "conv2d_wgrad", "conv2d_xgrad", "square",
                          "trunc", "cmp"}
    with pytest.raises(ValueError, match="correction"):
        expand("square", seeds[1], b"x", 1, 2, shape=(2,))
    with pytest.raises(ValueError, match="correction"):
        expand("square", seeds[0], b"x", 0, 2, [torch.zeros(2, dtype=torch.int64)], shape=(2,))
    with pytest.raises(ValueError, match="shapes"):
        expand("square", seeds[1], b"x", 1, 2, [torch.zeros(3, dtype=torch.int64)], shape=(2,))
    with pytest.raises(TypeError, match="label"):
        deal("square", seeds, "text", shape=(2,))
    with pytest.raises(ValueError, match="frac_bits"):
        deal("trunc", seeds, b"x", shape=(2,), frac_bits=0)
    with pytest.raises(ValueError, match="at least 2"):
        deal("square", seeds[:1], b"x", shape=(2,))
    with pytest.raises(ValueError, match="party_index"):
        expand("square", seeds[0], b"x", 5, 2, shape=(2,))
    with pytest.raises(ValueError, match="n_parties"):
        dealer_seeds(1)
    with pytest.raises(RuntimeError):  # shapes that do not multiply
        deal("matmul", seeds, b"x", x_shape=(2, 3), y_shape=(4, 5))
