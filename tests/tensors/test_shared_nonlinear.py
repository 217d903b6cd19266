"""PySyft idioms on shared tensors over workers: <, ==, relu, max, argmax, pooling, **, mm.

Differential against plain torch on decode(encode(x)), for 2 and 3 parties, round by
round and fused (virtual workers), and between kernel workers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.tensors.shared import SharedTensor, session_for
from ppdl_nb.workers.transport.virtual import VirtualNetwork

ULP = 2.0**-16


def _workers(n_parties: int, fused: bool):
    net = VirtualNetwork()
    parties = [ppdl_nb.VirtualWorker(f"p{i}", network=net) for i in range(n_parties)]
    dealer = ppdl_nb.VirtualWorker("dealer", network=net)
    session_for(parties, dealer).fused = fused
    return parties, dealer


GROUPS = {f"{n}{'-fused' if fused else ''}": _workers(n, fused)
          for fused in (False, True) for n in (2, 3)}


def q(x: torch.Tensor) -> torch.Tensor:
    return mpc.decode(mpc.encode(x))


def shared(x: torch.Tensor, n: str):
    parties, dealer = GROUPS[n]
    return ppdl_nb.share(x, *parties, dealer=dealer)


def same(got, want: torch.Tensor) -> bool:
    return torch.equal(got.get(), want.double())


def images(seed: int, shape=(2, 2, 6, 6)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)  # test data only
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 5).round(decimals=2)
    x.view(-1)[:3] = 4.0  # ties
    return x


TESTS = [lambda a, b: a < b, lambda a, b: a <= b, lambda a, b: a > b, lambda a, b: a >= b,
         lambda a, b: a == b, lambda a, b: a != b]


@pytest.mark.parametrize("n", list(GROUPS))
def test_comparisons_return_shared_zeros_and_ones(n):
    x, y = images(1), images(1).flip(-1)
    xs, ys = shared(x, n), shared(y, n)
    for f in TESTS:
        assert isinstance(f(xs, ys).child, SharedTensor)
        assert same(f(xs, ys), f(q(x), q(y)))
        assert same(f(xs, 0.5), f(q(x), 0.5))  # a public side
        assert same(f(0.5, xs), f(0.5, q(x)))  # reflected: 0.5 < xs is xs > 0.5
    assert same(torch.eq(xs, xs), torch.ones_like(x))
    assert same(xs * (xs > 0), q(x).relu())  # 0/1 results mix with values


@pytest.mark.parametrize("n", list(GROUPS))
def test_relu_max_argmax_pooling(n):
    x = images(2)
    X, xs = q(x), shared(x, n)
    for got in (xs.relu(), F.relu(xs), torch.relu(xs)):
        assert same(got, X.relu())
    assert same(xs.abs(), X.abs()) and same(xs.sign(), X.sign())
    assert same(xs.clamp(-1, 2.5), X.clamp(-1, 2.5)) and same(xs.clamp(max=1), X.clamp(max=1))
    assert same(xs.max(), X.max()) and same(xs.argmax(), X.argmax())
    for dim, keep in [(1, False), (-1, True), (3, False)]:
        values, indices = xs.max(dim, keepdim=keep)
        want = X.max(dim, keepdim=keep)
        assert same(values, want.values) and same(indices, want.indices)
        assert same(xs.argmax(dim=dim, keepdim=keep), X.argmax(dim=dim, keepdim=keep))
    y = images(3)
    assert same(torch.maximum(xs, shared(y, n)), torch.maximum(X, q(y)))
    assert same(F.max_pool2d(xs, 2), F.max_pool2d(X, 2))
    assert same(F.max_pool2d(xs, 3, stride=2, padding=1), F.max_pool2d(X, 3, 2, 1))
    got = F.avg_pool2d(xs, 3, stride=1, padding=1).get()
    assert (got - F.avg_pool2d(X, 3, 1, 1)).abs().max() < 4 * ULP


@pytest.mark.parametrize("n", ["2", "3-fused"])
def test_powers_and_mm(n):
    a, b = images(4, (3, 4)), images(5, (4, 2))
    xa, xb = shared(a, n), shared(b, n)
    torch.testing.assert_close((xa ** 2).get(), q(a) ** 2, atol=2 * ULP, rtol=0)
    torch.testing.assert_close((xa ** 3).get(), q(a) ** 3, atol=1e-2, rtol=0)
    torch.testing.assert_close(xa.mm(xb).get(), q(a) @ q(b), atol=8 * ULP, rtol=0)
    torch.testing.assert_close(torch.mm(xa, xb).get(), q(a) @ q(b), atol=8 * ULP, rtol=0)
    with pytest.raises(TypeError, match="int powers"):
        _ = xa ** 0.5


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.sampled_from(list(GROUPS)),
       st.integers(0, 99))
def test_any_shape(shape, n, seed):
    x = images(seed, shape)
    X, xs = q(x), shared(x, n)
    assert same(xs < 1.0, X < 1.0) and same(xs.relu(), X.relu())
    assert same(xs.max(-1)[1], X.max(-1)[1])


@pytest.mark.parametrize("n", ["2", "3"])
def test_ring_values_at_the_edges_of_the_bound(n):
    parties, dealer = GROUPS[n]
    sess = session_for(parties, dealer)
    edge = torch.tensor([-(2**62) + 1, -1, 0, 1, 2**62 - 1])
    a, b = edge.repeat_interleave(5), edge.repeat(5)  # every pair
    x, y = SharedTensor.from_ring(a, sess), SharedTensor.from_ring(b, sess)
    for op, f in [("lt", torch.lt), ("ge", torch.ge), ("eq", torch.eq)]:
        assert torch.equal(x.nonlinear("cmp", y, op=op).get(), f(a, b).long())
    assert torch.equal(x.nonlinear("relu").get(), a.clamp(min=0))


def test_rounds_and_policies():
    parties, dealer = GROUPS["2"]
    xs = shared(torch.tensor([1.0, -2.0]), "2")
    before = xs.child.session.rounds
    _ = xs.relu()
    assert xs.child.session.rounds - before == 4
    _ = xs.max()  # two elements: one comparison
    assert xs.child.session.rounds - before == 8
    alice = ppdl_nb.VirtualWorker("alice", network=parties[0].network)
    secret = ppdl_nb.send(torch.tensor([1.0, -2.0]), alice, private=True)
    s = ppdl_nb.share(secret, *parties, dealer=dealer)
    for result in (s > 0, s.relu(), s.max()):  # results keep their inputs' open policy
        with pytest.raises(PermissionError, match="only alice may fetch"):
            result.get()


def test_what_a_shared_value_still_cannot_do():
    xs = shared(torch.ones(2), "2")
    with pytest.raises(TypeError, match="cannot branch on it"):
        bool(xs < 2)
    with pytest.raises(TypeError, match="not supported on fixed-precision"):
        torch.cumsum(xs, 0)
    with pytest.raises(TypeError, match="dilation"):
        F.max_pool2d(shared(torch.ones(1, 1, 4, 4), "2"), 2, dilation=2)


def test_kernel_workers(kernel_trio):
    alice, bob, charlie = kernel_trio
    x = images(6, (1, 2, 4, 4))
    X, xs = q(x), ppdl_nb.share(x, alice, bob, dealer=charlie)
    assert session_for([alice, bob], charlie).fused
    assert same(xs.relu(), X.relu()) and same(xs > 0.5, X > 0.5)
    assert same(F.max_pool2d(xs, 2), F.max_pool2d(X, 2))
    values, indices = xs.flatten(1).max(1)
    assert same(values, X.flatten(1).max(1).values)
    assert same(indices, X.flatten(1).max(1).indices)


@pytest.mark.parametrize("n", ["2", "3-fused"])
def test_comparisons_dealt_ahead_run_without_the_dealer(n):
    x = images(7, (2, 1, 4, 4))
    xs, X = shared(x, n), q(x)
    sess, dealer = xs.child.session, GROUPS[n][1].owner
    # three ops (max-pool, relu, >), dealt for two more runs
    assert sess.deal_ahead(lambda: [F.max_pool2d(xs, 2).relu(), xs > 1.0], times=2) == 6
    before = dealer.counters.messages_in
    for _ in range(2):
        assert same(F.max_pool2d(xs, 2).relu(), F.max_pool2d(X, 2).relu())
        assert same(xs > 1.0, X > 1.0)
    assert dealer.counters.messages_in == before  # online: the parties only


@pytest.mark.parametrize("n", ["2", "3-fused", "local"])
def test_min_argmin_and_relu_variants(n):
    x = images(8, (2, 3, 4))
    X = q(x)
    xs = ppdl_nb.fix_precision(x) if n == "local" else shared(x, n)
    assert same(xs.min(), X.min()) and same(xs.argmin(), X.argmin())
    values, indices = xs.min(1)
    assert same(values, X.min(1).values) and same(indices, X.min(1).indices)
    half = torch.full((4,), 0.5, dtype=torch.float64)  # a public side
    assert same(torch.minimum(xs, half), torch.minimum(X, half))
    assert same(F.hardtanh(xs), F.hardtanh(X)) and same(F.relu6(xs), F.relu6(X))
    # the slope is encoded too: 0.1 is off by up to 2^-17, times |x| <= 20
    torch.testing.assert_close(F.leaky_relu(xs, 0.1).get(), F.leaky_relu(X, 0.1),
                               atol=20 * 2.0**-17 + 4 * ULP, rtol=0)
