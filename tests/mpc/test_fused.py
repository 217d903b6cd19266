"""Fused products: one request per party, the parties running both openings themselves.

Between kernel workers (separate processes, the default there), on virtual workers
called from several threads, and the pieces that make it work: a channel server that
serves a request while another one waits, and a failure on one party that stops its
peers at once instead of leaving them waiting.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
import torch.nn.functional as F

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.workers.transport.channel import ChannelClient, ChannelServer
from ppdl_nb.workers.transport.keys import KeyPair
from ppdl_nb.workers.transport.virtual import VirtualNetwork

ULP = 2.0**-16


def q(x: torch.Tensor) -> torch.Tensor:
    return mpc.decode(mpc.encode(x))


def _check_ops(parties, dealer) -> None:
    g = torch.Generator().manual_seed(3)  # test data only
    a, b = torch.randn(6, 5, generator=g).double(), torch.randn(5, 4, generator=g).double()
    x, y = ppdl_nb.share(a, *parties, dealer=dealer), ppdl_nb.share(b, *parties, dealer=dealer)
    torch.testing.assert_close((x @ y).get(), q(a) @ q(b), atol=6 * ULP, rtol=0)
    torch.testing.assert_close((x * x).get(), q(a) * q(a), atol=2 * ULP, rtol=0)
    torch.testing.assert_close(x.square().get(), q(a) * q(a), atol=2 * ULP, rtol=0)
    torch.testing.assert_close((x * 0.5).get(), q(a) * 0.5, atol=2 * ULP, rtol=0)
    img, w = torch.randn(1, 2, 5, 5, generator=g).double(), torch.randn(3, 2, 3, 3).double()
    got = F.conv2d(ppdl_nb.share(img, *parties, dealer=dealer),
                   ppdl_nb.share(w, *parties, dealer=dealer), padding=1).get()
    torch.testing.assert_close(got, F.conv2d(q(img), q(w), padding=1), atol=19 * ULP, rtol=0)


def test_kernel_workers_fuse_and_compute_right(kernel_trio):
    alice, bob, charlie = kernel_trio
    sess = session_for([alice, bob], charlie)
    assert sess.fused  # every worker in its own process
    _check_ops([alice, bob], charlie)
    x = ppdl_nb.share(torch.ones(3, 3), alice, bob, dealer=charlie)
    before = sess.rounds
    # name the workers: other tests' virtual workers called alice or bob may shadow these
    with ppdl_nb.trace(kernel_trio) as t:
        _ = x @ x
    assert sess.rounds - before == 2
    delivers = [r for r in t.records if r["kind"] == "mpc.deliver"]
    assert sorted((r["src"], r["dst"]) for r in delivers) == [
        ("alice", "bob"), ("alice", "bob"), ("bob", "alice"), ("bob", "alice")]
    assert {r["round"] for r in delivers} == {"matmul: open masked inputs",
                                              "matmul: open for truncation"}
    # the dealer sends c, then the truncation mask, each as soon as it is dealt
    assert [r["src"] for r in t.records if r["kind"] == "mpc.corrections"] == ["charlie"] * 2
    assert {r["dst"] for r in t.records if r["kind"] == "mpc.corrections"} == {"bob"}
    from_me = sorted(r["kind"] for r in t.records if r["src"] == "me")
    assert from_me == ["mpc.deal", "mpc.run", "mpc.run"]  # one request each
    assert not any(r["dst"] == "me" for r in t.records)


def test_kernel_parties_send_their_openings_on_data_links(kernel_trio):
    alice, bob, charlie = kernel_trio
    x = ppdl_nb.share(torch.ones(2, 2), alice, bob, dealer=charlie)
    torch.testing.assert_close((x @ x).get(), torch.full((2, 2), 2.0, dtype=torch.float64))
    probe = ("from ppdl_nb.workers.transport import runtime\n"
             "print(sorted(type(v).__name__ for v in "
             "runtime.current().state['mpc'].out_links.values()))")
    for party in (alice, bob):
        assert party.execute(probe).stdout.strip() == "['OutLink']"


def test_only_a_peer_in_the_session_may_open_a_data_link(kernel_trio):
    alice, bob, charlie = kernel_trio
    sess = session_for([alice, bob], charlie)
    with pytest.raises(PermissionError, match="not a peer"):  # the notebook is no party
        alice.step("mpc.link", session=sess.id, link=os.urandom(16), key=os.urandom(32))
    x = ppdl_nb.share(torch.ones(3), alice, bob, dealer=charlie)
    torch.testing.assert_close((x * x).get(), torch.ones(3, dtype=torch.float64))


def test_kernel_failure_on_one_party_stops_the_other_at_once(kernel_trio):
    alice, bob, charlie = kernel_trio
    x = ppdl_nb.share(torch.ones(4), alice, bob, dealer=charlie)
    bob.request({"kind": "delete", "ids": [x.child.shares[1].id_at_location]})
    start = time.monotonic()
    with pytest.raises(KeyError):
        _ = x * x
    assert time.monotonic() - start < 20  # not the peers' 60 s wait
    y = ppdl_nb.share(torch.full((4,), 2.0), alice, bob, dealer=charlie)
    torch.testing.assert_close((y * y).get(), torch.full((4,), 4.0, dtype=torch.float64))


def _virtual(fused: bool, n: int = 2):
    net = VirtualNetwork()
    parties = [ppdl_nb.VirtualWorker(f"p{i}", network=net) for i in range(n)]
    dealer = ppdl_nb.VirtualWorker("dealer", network=net)
    session_for(parties, dealer).fused = fused
    return parties, dealer


@pytest.mark.parametrize("n", [2, 3])
def test_virtual_workers_can_fuse_too(n):
    parties, dealer = _virtual(True, n)
    _check_ops(parties, dealer)


def test_virtual_failure_stops_the_peers_with_the_cause():
    parties, dealer = _virtual(True, 3)
    x = ppdl_nb.share(torch.ones(4), *parties, dealer=dealer)
    parties[1].owner.free(x.child.shares[1].id_at_location)
    start = time.monotonic()
    with pytest.raises(KeyError):
        _ = x * x
    assert time.monotonic() - start < 20


def test_a_channel_server_with_threads_serves_while_a_handler_waits():
    server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
    released = threading.Event()

    def handler(frames, peer):
        if bytes(frames[0]) == b"wait":
            return [b"released" if released.wait(10) else b"timed out"]
        if len(frames[0]) > 100:
            return [bytes(frames[0])]  # echo
        released.set()
        return [b"ok"]

    with ChannelServer(server_keys, None, handler, {"nb": client_keys.public},
                       threads=2) as server:
        waiter = ChannelClient(client_keys, server.endpoint, server_keys.public, "nb")
        setter = ChannelClient(client_keys, server.endpoint, server_keys.public, "nb")
        got = []
        t = threading.Thread(target=lambda: got.append(waiter.request([b"wait"])))
        t.start()
        time.sleep(0.1)
        assert setter.request([b"set"]) == [b"ok"]
        t.join(10)
        assert got == [[b"released"]]
        big = bytes(9 << 20)  # a reply in several chunks, sent by the loop thread
        assert bytes(setter.request([big])[0]) == big
        waiter.close()
        setter.close()
    with pytest.raises(ValueError, match="threads"):
        ChannelServer(server_keys, None, handler, threads=0)


@pytest.mark.parametrize("fused", [False, True], ids=["rounds", "fused"])
def test_dealt_ahead_products_run_without_the_dealer(fused):
    parties, dealer = _virtual(fused)
    g = torch.Generator().manual_seed(5)  # test data only
    a, b = torch.randn(4, 3, generator=g).double(), torch.randn(3, 2, generator=g).double()
    x, y = ppdl_nb.share(a, *parties, dealer=dealer), ppdl_nb.share(b, *parties, dealer=dealer)
    sess = x.child.session
    assert sess.deal_ahead(lambda: (x @ y, x * 0.5, x.square()), times=2) == 6
    for _ in range(2):
        with ppdl_nb.trace() as t:
            products = [x @ y, x * 0.5, x.square()]
        assert not any("dealer" in (r["src"], r["dst"]) for r in t.records)
        torch.testing.assert_close(products[0].get(), q(a) @ q(b), atol=4 * ULP, rtol=0)
        torch.testing.assert_close(products[1].get(), q(a) * 0.5, atol=2 * ULP, rtol=0)
        torch.testing.assert_close(products[2].get(), q(a) * q(a), atol=2 * ULP, rtol=0)
    with ppdl_nb.trace() as t:  # all used: the dealer is asked again
        _ = x @ y
    assert any(r["kind"] == "mpc.deal" for r in t.records)
    with pytest.raises(ValueError, match="times"):
        sess.deal_ahead(lambda: None, times=-1)


def test_kernel_workers_deal_ahead(kernel_trio):
    alice, bob, charlie = kernel_trio
    a = torch.arange(12.0).reshape(3, 4) / 7
    x = ppdl_nb.share(a, alice, bob, dealer=charlie)
    sess = x.child.session
    assert sess.deal_ahead(lambda: x @ x.t(), times=1) == 1
    with ppdl_nb.trace(kernel_trio) as t:
        z = x @ x.t()
    assert not any("charlie" in (r["src"], r["dst"]) for r in t.records)
    torch.testing.assert_close(z.get(), q(a) @ q(a).t(), atol=5 * ULP, rtol=0)


def test_kernel_workers_round_by_round_too(kernel_trio):
    from ppdl_nb.tensors.fixed import FixedPrecisionTensor
    from ppdl_nb.tensors.shared import MPCSession, SharedTensor

    alice, bob, charlie = kernel_trio
    sess = MPCSession([alice, bob], charlie, fused=False)
    a = torch.linspace(-3, 3, 12).reshape(3, 4).double()
    x = FixedPrecisionTensor(SharedTensor.from_ring(mpc.encode(a), sess), 16)
    with ppdl_nb.trace(kernel_trio) as t:
        z = x @ x.t()
    from_me = [r["kind"] for r in t.records if r["src"] == "me" and r["kind"] != "Tensor.t"]
    assert from_me == ["mpc.deal"] + ["mpc.run"] * 2 + ["mpc.resume"] * 4  # each round
    torch.testing.assert_close(z.get(), q(a) @ q(a).t(), atol=5 * ULP, rtol=0)
