"""The notebook's party: names resolve to the newest worker, and nobody goes missing."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import ppdl_nb
from ppdl_nb.workers.transport.party import LocalParty, local_party
from ppdl_nb.workers.transport.virtual import VirtualNetwork


class _Client:
    def __init__(self, name: str) -> None:
        self.name = name


def test_a_second_worker_with_a_name_shadows_lookups_but_both_are_listed():
    party = LocalParty()
    first, second, other = _Client("alice"), _Client("alice"), _Client("bob")
    for client in (first, second, other, second):  # registering twice lists once
        party.register(client)
    del client
    assert party.client_for("alice") is second
    assert party.workers() == [first, second, other]
    del second
    gc.collect()
    assert party.workers() == [first, other]
    assert party.client_for("alice") is first  # the newest is gone: the older one answers
    with pytest.raises(ConnectionError, match="not connected to a worker named 'carol'.*alice"):
        party.client_for("carol")


def test_trace_still_sees_kernel_alice_after_a_virtual_alice_is_made(kernel_trio):
    alice, bob, _ = kernel_trio
    shadow = ppdl_nb.VirtualWorker("alice", network=VirtualNetwork())
    assert local_party().client_for("alice") is shadow
    ptr = ppdl_nb.send(torch.arange(3.0), alice)
    with ppdl_nb.trace() as t:
        moved = ptr.move(bob)
    assert ("alice", "bob") in {(r["src"], r["dst"]) for r in t.records}
    assert torch.equal(moved.get(), torch.arange(3.0))
    gone = weakref.ref(shadow)
    del shadow
    gc.collect()
    assert gone() is None, "the notebook keeps a virtual worker alive after its last use"
    # the newest live "alice" answers again (kernel alice here, unless another test's
    # virtual alice is still alive); kernel alice is listed either way
    assert local_party().client_for("alice").name == "alice"
    assert any(w is alice for w in local_party().workers())
