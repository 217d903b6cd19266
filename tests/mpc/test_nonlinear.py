"""Ops built on comparison, against plain torch: <, ==, ReLU, sign, abs, max, pooling, clamp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import data, roundtrip

from ppdl_nb.mpc import nonlinear
from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.encoding import decode, encode
from ppdl_nb.mpc.nonlinear import CMP_OPS
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.sharing import share

BOUND = 2**62 - 1  # encoded values |x| < 2^62: their differences never wrap
TORCH_CMP = {"ge": torch.ge, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "eq": torch.eq,
             "ne": torch.ne}


def pair(n, seed, shape=(2, 3, 6, 6)):
    x = data(shape, seed, -20, 20).round(decimals=2)
    x.view(-1)[:4] = 5.0  # ties
    return x, x.flip(-1), sim.share_float(x, n), sim.share_float(x.flip(-1), n)


@pytest.mark.parametrize("n", [2, 3])
def test_comparisons_and_equality(n):
    x, y, xs, ys = pair(n, 1)
    for op in CMP_OPS:
        got = sim.reveal(sim.compare(xs, ys, op))
        assert torch.equal(got, TORCH_CMP[op](roundtrip(x), roundtrip(y)).double()), op


@pytest.mark.parametrize("n", [2, 3])
def test_comparisons_at_the_edges_of_the_bound(n):
    edge = torch.tensor([-BOUND, -BOUND + 1, -1, 0, 1, BOUND - 1, BOUND])
    a, b = edge.repeat_interleave(7), edge.repeat(7)  # every pair of edges
    xs, ys = share(a, n, PRG()), share(b, n, PRG())
    for op in ("lt", "ge", "eq"):
        got = sim.reveal(sim.compare(xs, ys, op))
        assert torch.equal(got, TORCH_CMP[op](a, b).double()), op


@pytest.mark.parametrize("n", [2, 3])
def test_relu_sign_abs_clamp_maximum(n):
    x, y, xs, ys = pair(n, 2)
    X, Y = roundtrip(x), roundtrip(y)
    assert torch.equal(sim.reveal(sim.relu(xs)), X.relu())
    assert torch.equal(sim.reveal(sim.relu_deriv(xs)), (X > 0).double())
    assert torch.equal(sim.reveal(sim.sign(xs)), X.sign())
    assert torch.equal(sim.reveal(sim.absolute(xs)), X.abs())
    assert torch.equal(sim.reveal(sim.maximum(xs, ys)), torch.maximum(X, Y))
    assert torch.equal(sim.reveal(sim.clamp(xs, -2.5, 3.0)), X.clamp(-2.5, 3.0))
    assert torch.equal(sim.reveal(sim.clamp(xs, -2.5)), X.clamp(min=-2.5))
    assert torch.equal(sim.reveal(sim.clamp(xs, None, 3.0)), X.clamp(max=3.0))
    with pytest.raises(ValueError, match="lo <= hi"):
        sim.clamp(xs, 3.0, -2.5)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_and_argmax_break_ties_as_torch(n, dim):
    x = torch.tensor([[3.0, 3.0, -1.0, 7.0, 7.0], [0.0, -2.0, 0.0, -2.0, 0.0],
                      [-5.0, -5.0, -5.0, -5.0, -5.0]])
    t = sim.Traffic()
    vals, idx = sim.max_dim(sim.share_float(x, n), dim, traffic=t)
    want = x.max(dim)
    assert torch.equal(sim.reveal(vals), want.values.double())
    assert torch.equal(sim.reveal(idx), want.indices.double())
    assert t.rounds == 4 * (x.shape[dim] - 1).bit_length()  # ceil(log2 n) comparisons


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 9), st.integers(1, 3), st.sampled_from([2, 3]), st.integers(0, 999))
def test_max_over_any_length(length, rows, n, seed):
    x = data((rows, length), seed).round(decimals=1)
    vals, idx = sim.max_dim(sim.share_float(x, n), 1)
    want = roundtrip(x).max(1)
    assert torch.equal(sim.reveal(vals), want.values)
    assert torch.equal(sim.reveal(idx), want.indices.double())


@pytest.mark.parametrize("n", [2, 3])
def test_pooling(n):
    x, _, xs, _ = pair(n, 3, (2, 3, 7, 7))
    X = roundtrip(x)
    t = sim.Traffic()
    assert torch.equal(sim.reveal(sim.max_pool2d(xs, 2, traffic=t)), F.max_pool2d(X, 2))
    assert t.rounds == 8
    assert torch.equal(sim.reveal(sim.max_pool2d(xs, 3, 2, 1)), F.max_pool2d(X, 3, 2, 1))
    for args in [(2,), (3, 2, 1), ((2, 3), 1)]:
        t = sim.Traffic()
        got = sim.reveal(sim.avg_pool2d(xs, *args, traffic=t))
        want = F.avg_pool2d(X, *args)
        assert t.rounds == 1 and (got - want).abs().max() < 2 * 2.0**-16 + 2.0**-24 * 9 * 20


def test_max_pool_refuses_more_padding_than_torch():
    xs = sim.share_float(torch.zeros(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="half the kernel"):
        sim.max_pool2d(xs, 2, 2, 2)


def test_results_mix_with_values():
    # comparison results are fixed-point 0.0 / 1.0: usable in products like any value
    xs = sim.share_float(torch.tensor([1.5, -2.0]), 2)
    mask = sim.compare(xs, sim.share_float(torch.zeros(2), 2), "gt")
    assert sim.reveal(sim.mul(xs, mask)).tolist() == [1.5, 0.0]
    assert decode(encode(torch.tensor([1.0]))).tolist() == [1.0]


def _draws(proto):
    """The dealer requests a protocol draws (its other steps answered as a real run would)."""
    seen = []

    def spy(gen):
        value = None
        while True:
            try:
                step = gen.send(value)
            except StopIteration as end:
                return end.value
            if type(step).__name__ == "Draw":
                seen.append((step.kind, step.params))
            value = yield step

    return seen, spy(proto)


@pytest.mark.parametrize(("name", "shapes", "params"), [
    ("cmp", [(2, 3), (3,)], {"op": "lt"}), ("cmp", [(4,)], {"op": "eq"}), ("relu", [(5,)], {}),
    ("relu_deriv", [(5,)], {}), ("sign", [(2, 2)], {}), ("abs", [(3,)], {}),
    ("maximum", [(3,), (3,)], {}), ("clamp", [(3,)], {"lo": -5, "hi": 9}),
    ("clamp", [(3,)], {"hi": 9}), ("max", [(2, 7, 3)], {"dim": 1}),
    ("max", [(5,)], {"dim": -1}), ("max_pool2d", [(1, 2, 7, 7)], {"kernel_size": 3,
                                                                  "stride": 2, "padding": 1}),
    ("avg_pool2d", [(1, 1, 6, 6)], {"kernel_size": 2})])
def test_the_dealer_plan_matches_what_the_parties_draw(name, shapes, params):
    operands = [sim.share_float(data(s, 7), 2) for s in shapes]
    seen, spied = _draws(nonlinear.party_op(name, 0, [o[0] for o in operands], params))
    sim.run_parties([spied, nonlinear.party_op(name, 1, [o[1] for o in operands], params)])
    assert seen == nonlinear.requests(name, shapes, params)
    with pytest.raises(ValueError, match="no comparison op"):
        nonlinear.party_op("softmax", 0, [], {})
