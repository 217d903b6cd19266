"""Pictures: message traces of a multiplication, share histograms, chain diagrams."""

from __future__ import annotations

import torch
from scipy import stats

import ppdl_nb
from ppdl_nb.viz.chain_diagram import ChainDiagram
from ppdl_nb.viz.shares import plot_shares, share_histograms
from ppdl_nb.workers.transport.virtual import VirtualNetwork


def _parties():
    net = VirtualNetwork()
    return [ppdl_nb.VirtualWorker(n, network=net) for n in ("bob", "charlie", "dave")]


def test_a_multiplication_traces_two_openings_party_to_party():
    bob, charlie, dave = _parties()
    x = ppdl_nb.share(torch.ones(4), bob, charlie, dealer=dave)
    with ppdl_nb.trace() as t:
        _ = x * x
    delivers = [r for r in t.records if r["kind"] == "mpc.deliver"]
    assert {(r["src"], r["dst"]) for r in delivers} == {("bob", "charlie"), ("charlie", "bob")}
    assert len(delivers) == 4  # two rounds, one message each way per round
    assert not any(r["dst"] == "me" for r in t.records)  # the notebook only asks
    assert [r["src"] for r in t.records if r["kind"] == "mpc.corrections"] == ["dave"]
    svg = t.diagram()
    assert svg.startswith("<svg") and "charlie" in svg and "mpc.deliver" in svg
    rows = {r["party"]: r for r in t.summary()}
    assert rows["bob"]["bytes_sent"] > 0 and rows["dave"]["sent"] == 1


def test_each_share_is_uniform_over_the_ring():
    bob, charlie, dave = _parties()
    secret = torch.randn(4000) * 3 + 10
    shared = ppdl_nb.share(secret, bob, charlie, dealer=dave)
    for name, counts in share_histograms(shared, bins=20).items():
        assert counts.sum() == 4000
        assert stats.chisquare(counts.numpy()).pvalue > 1e-4, name
    fig = plot_shares(shared, secret=secret)
    assert len(fig.axes) == 4


def test_chain_diagram_of_a_shared_tensor_is_deterministic():
    bob, charlie, dave = _parties()
    shared = ppdl_nb.share(torch.ones(2), bob, charlie, dealer=dave)
    first, second = ChainDiagram.of(shared).svg(), ChainDiagram.of(shared).svg()
    assert first == second
    for word in ("FixedPrecisionTensor", "SharedTensor", "data on bob", "data on charlie"):
        assert word in first


def test_chain_boxes_grow_to_hold_their_longest_line():
    import re

    import torch

    import ppdl_nb
    from ppdl_nb.viz import ChainDiagram
    from ppdl_nb.viz.chain_diagram import BOX_W, CHAR_W

    short = ChainDiagram.of(torch.ones(2)).svg()
    assert set(re.findall(r'<rect x="[^"]*" y="[^"]*" width="(\d+)"', short)) == {str(BOX_W)}
    bob, charlie, dave = (ppdl_nb.VirtualWorker(n) for n in ("cb_bob", "cb_charlie",
                                                             "cb_dealer_dave"))
    shared = ppdl_nb.share(torch.ones(2), bob, charlie, dealer=dave)
    svg = ChainDiagram.of(shared).svg()
    line = "me 2 parties (cb_bob, cb_charlie), dealer cb_dealer_dave"
    assert line in svg  # the SharedTensor box's line, which ran out of a 200 px box
    widths = {int(w) for w in re.findall(r'<rect x="[^"]*" y="[^"]*" width="(\d+)"', svg)}
    assert widths == {round(len(line) * CHAR_W + 20)} and widths.pop() > BOX_W


def test_trace_text_and_diagram_read_clearly():
    from ppdl_nb.viz.trace import HEADER_ME, Trace

    def rec(t, src, dst, rnd, size=100, reply=62):
        return {"t": t, "src": src, "dst": dst, "kind": "step", "bytes": size,
                "reply_bytes": reply, "round": rnd}

    t = Trace([rec(1, "me", "alice", "open"), rec(2, "me", "alice", None),
               rec(3, "alice", "bob", "open", size=4096), rec(4, "me", "bob", "sum")])
    text = repr(t)
    assert "me         requests sent    3, received    0; bytes out     300 B, in     186 B" \
        in text  # no more "received 0 (186 B)": the bytes in are replies
    svg = t.diagram()
    assert svg.count(">open</text>") == 1  # a round's label once, not on every step
    assert svg.count(">sum</text>") == 1
    assert "step (4.0 KiB)" in svg
    assert f'fill="{HEADER_ME}">me</text>' in svg
