"""Secret-shared arithmetic against plain torch, for 2 and 3 parties.

Differential tests decode both sides: the reference is torch on decode(encode(x)), so
the only error measured is the protocol's (truncation: one unit in the last place).
Each runs round by round (the notebook starts each round) and fused (one request per
party, the parties running both openings themselves, concurrently: here on virtual
workers called from several threads; tests/mpc/test_fused.py runs it between kernels).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.workers.transport.virtual import VirtualNetwork

ULP = 2.0**-16
ELEMENTWISE_TOL = 2.0**-15


def _workers(n_parties: int, fused: bool):
    net = VirtualNetwork()
    names = ["p0", "p1", "p2", "p3"][:n_parties]
    parties = [ppdl_nb.VirtualWorker(n, network=net) for n in names]
    dealer = ppdl_nb.VirtualWorker("dealer", network=net)
    session_for(parties, dealer).fused = fused
    return parties, dealer


GROUPS = {f"{n}{'-fused' if fused else ''}": _workers(n, fused)
          for fused in (False, True) for n in (2, 3)}
PARTIES = list(GROUPS)  # "2", "3", "2-fused", "3-fused"


def q(x: torch.Tensor) -> torch.Tensor:
    """decode(encode(x)): the value the protocol actually computes on."""
    return mpc.decode(mpc.encode(x))


def shared(x: torch.Tensor, n: str):
    parties, dealer = GROUPS[n]
    return ppdl_nb.share(x, *parties, dealer=dealer)


values = st.floats(-100, 100, allow_nan=False, width=32)


@st.composite
def pairs(draw, max_dims=3):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=max_dims))
    n = 1
    for d in shape:
        n *= d
    a = torch.tensor(draw(st.lists(values, min_size=n, max_size=n))).reshape(shape)
    b = torch.tensor(draw(st.lists(values, min_size=n, max_size=n))).reshape(shape)
    return a.double(), b.double()


@pytest.mark.parametrize("n", PARTIES)
@settings(max_examples=12, deadline=None)
@given(pairs())
def test_elementwise_ops_match_torch(n, ab):
    a, b = ab
    xa, xb = shared(a, n), shared(b, n)
    qa, qb = q(a), q(b)
    cases = {
        "add": (xa + xb, qa + qb),
        "sub": (xa - xb, qa - qb),
        "neg": (-xa, -qa),
        "add_public": (xa + 3.25, qa + 3.25),
        "mul": (xa * xb, qa * qb),
        "square": (xa.square(), qa * qa),
        "mul_public_int": (xa * 3, qa * 3),
        "mul_public_float": (xa * 0.5, qa * 0.5),
        "div_public": (xa / 4, qa / 4),
    }
    for name, (got, want) in cases.items():
        torch.testing.assert_close(got.get(), want, atol=ELEMENTWISE_TOL, rtol=0,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("n", PARTIES)
@settings(max_examples=10, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 4), st.data())
def test_matmul_matches_torch(n, rows, k, cols, data):
    a = torch.tensor(data.draw(st.lists(values, min_size=rows * k, max_size=rows * k)))
    b = torch.tensor(data.draw(st.lists(values, min_size=k * cols, max_size=k * cols)))
    a, b = a.reshape(rows, k).double(), b.reshape(k, cols).double()
    got = (shared(a, n) @ shared(b, n)).get()
    torch.testing.assert_close(got, q(a) @ q(b), atol=(k + 1) * ULP, rtol=0)


@pytest.mark.parametrize("n", PARTIES)
def test_conv2d_matches_torch(n):
    x, w = torch.randn(2, 2, 5, 5).double() * 3, torch.randn(3, 2, 3, 3).double()
    got = F.conv2d(shared(x, n), shared(w, n), padding=1).get()
    k = 2 * 3 * 3
    torch.testing.assert_close(got, F.conv2d(q(x), q(w), padding=1), atol=(k + 1) * ULP,
                               rtol=0)


@pytest.mark.parametrize("n", PARTIES)
def test_shape_ops_sum_and_mean(n):
    x = torch.randn(3, 4).double() * 10
    s, qx = shared(x, n), q(x)
    torch.testing.assert_close(s.sum().get(), qx.sum(), atol=ULP, rtol=0)
    torch.testing.assert_close(s.sum(dim=0).get(), qx.sum(dim=0), atol=ULP, rtol=0)
    torch.testing.assert_close(s.mean().get(), qx.mean(), atol=ELEMENTWISE_TOL, rtol=0)
    torch.testing.assert_close(s.t().get(), qx.t())
    torch.testing.assert_close(s.reshape(2, 6).get(), qx.reshape(2, 6))
    torch.testing.assert_close(s[1:, 2].get(), qx[1:, 2])
    torch.testing.assert_close(torch.cat([s, s]).get(), torch.cat([qx, qx]))
    torch.testing.assert_close(torch.stack([s, s], dim=1).get(), torch.stack([qx, qx], dim=1))


@pytest.mark.parametrize("n", PARTIES)
def test_linear_layer_with_public_weights_and_shared_input(n):
    x, w, b = torch.randn(4, 5).double(), torch.randn(3, 5).double(), torch.randn(3).double()
    got = F.linear(shared(x, n), shared(w, n), shared(b, n)).get()
    torch.testing.assert_close(got, F.linear(q(x), q(w), q(b)), atol=6 * ULP, rtol=0)
    got = (shared(x, n) @ w.t()).get()  # a public operand: no Beaver round
    torch.testing.assert_close(got, q(x) @ q(w).t(), atol=6 * ULP, rtol=0)


@pytest.mark.parametrize("n", PARTIES)
def test_truncation_at_the_edges_of_the_range(n):
    # products near the truncation bound (|x*y| encoded just under 2^62) and signs
    big = 2.0**21.9  # times 255: encoded product ~2^61.9, just under the 2^62 bound
    x = torch.tensor([big, -big, 1e-4, -1e-4, 0.0, -(2.0**-16), 2.0**-16]).double()
    y = torch.tensor([255.0, -255.0, -3.0, 3.0, 5.0, 1.0, -1.0]).double()
    got = (shared(x, n) * shared(y, n)).get()
    torch.testing.assert_close(got, q(x) * q(y), atol=ELEMENTWISE_TOL, rtol=0)


def test_chain_of_a_shared_tensor():
    s = shared(torch.ones(2), "2")
    links = ppdl_nb.chain_of(s)
    assert [link.kind for link in links] == ["FixedPrecisionTensor", "SharedTensor"]
    forks = links[1].children
    assert [f[0].target for f in forks] == ["p0", "p1"] and all(f[0].private for f in forks)
    assert "SharedTensor" in repr(s) and "p1" in repr(s)


def test_python_protocols_explain_what_a_shared_value_cannot_do():
    s = shared(torch.ones(3, 2), "2")
    assert len(s) == 3 and len(s[0]) == 2
    with pytest.raises(TypeError, match="0-d"):
        len(s.sum())
    assert (s.ndim, s.dim(), s.numel(), s.size(0)) == (2, 2, 6, 3)
    for value in (s, s.child):
        with pytest.raises(TypeError, match="cannot branch on it"):
            bool(value)
    for compare in (lambda: s > 0, lambda: s <= s, lambda: 0 < s, lambda: s == s):
        with pytest.raises(TypeError, match="cannot branch on it"):
            bool(compare())  # a shared 0/1 tensor (tests/tensors/test_shared_nonlinear.py)


def test_private_data_shared_by_its_owner_stays_private():
    parties, dealer = GROUPS["2"]
    alice = ppdl_nb.VirtualWorker("alice", network=parties[0].network)
    secret = ppdl_nb.send(torch.tensor([1.0, 2.0]), alice, private=True)
    s = ppdl_nb.share(secret, *parties, dealer=dealer)
    with pytest.raises(PermissionError, match="only alice may fetch"):
        (s * s).get()


def test_the_dealer_may_not_be_a_party():
    parties, _ = GROUPS["2"]
    with pytest.raises(ValueError, match="must not be one of the parties"):
        ppdl_nb.share(torch.ones(2), *parties, dealer=parties[0])


@pytest.mark.parametrize("n", ["2", "2-fused"])
def test_rounds_are_counted(n):
    s = shared(torch.ones(3), n)
    before = s.child.session.rounds
    _ = s * s
    assert s.child.session.rounds - before == 2  # one opening for Beaver, one to truncate
    _ = s * 0.5  # a public product: one truncation round
    assert s.child.session.rounds - before == 3
