"""Class 5, integrity: who may delete an object, and who is a session's dealer, follows
from who asks (the caller's authenticated identity), never from a name or an id inside
the message. A deleted private object is a denial of service on the owner's data; a
dealer chosen by the caller learns the masks of every product.
"""

from __future__ import annotations

import torch

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.dp.worker_steps import attach_dataset
from ppdl_nb.workers.core.messages import find_step

from .attacks import SECRET, Ref, attempt, call, peer, private_on


def _alive(client, obj_id: int) -> bool:
    """Whether the object still exists (asked as the notebook, by a harmless op)."""
    return not isinstance(attempt(lambda: call(client, "Tensor.clone", Ref(obj_id))),
                          KeyError)


def _owner_object(alice) -> int:
    """Data the owner put on alice herself (not the notebook's), published by name."""
    alice.owner.put(SECRET.clone(), private=True, name="records")
    return alice.request({"kind": "lookup", "name": "records"})["id"]


def test_the_notebook_cannot_delete_the_owners_data(alice):
    obj_id = _owner_object(alice)
    attempt(lambda: alice.request({"kind": "delete", "ids": [obj_id]}))
    assert _alive(alice, obj_id), "the notebook deleted data the owner put on alice"


def test_garbage_collection_ids_cannot_delete_the_owners_data(alice):
    obj_id = _owner_object(alice)
    attempt(lambda: alice.request({"kind": "ping", "gc": [obj_id]}))
    assert _alive(alice, obj_id), "a ping's gc field deleted the owner's data"


def test_the_owners_dp_dataset_survives_a_sweep_of_gc_ids(alice):
    attach_dataset(alice.owner, "rows", SECRET, torch.tensor([0, 1]), epsilon=1.0,
                   delta=1e-5)
    attempt(lambda: alice.request({"kind": "ping", "gc": list(range(16))}))
    got = attempt(lambda: alice.step("dp.query", dataset="rows", kind="count", epsilon=0.1))
    assert isinstance(got, float), f"the owner's dataset is gone: {got!r}"


def test_a_peer_cannot_delete_the_notebooks_objects(net):
    alice = net["alice"]
    x = private_on(alice)
    bob = peer(net["bob"], "alice")
    attempt(lambda: bob.request({"kind": "delete", "ids": [x.id_at_location]}))
    assert _alive(alice, x.id_at_location), "bob deleted the notebook's tensor on alice"


def test_a_peers_gc_field_cannot_delete_the_notebooks_objects(net):
    alice = net["alice"]
    x = private_on(alice)
    bob = peer(net["bob"], "alice")
    attempt(lambda: bob.request({"kind": "ping", "gc": [x.id_at_location]}))
    assert _alive(alice, x.id_at_location), "bob's gc ids deleted the notebook's tensor"


def test_a_peers_protocol_step_cannot_consume_the_notebooks_objects(net):
    alice = net["alice"]
    x = private_on(alice)
    bob = peer(net["bob"], "alice")
    attempt(lambda: bob.request({"kind": "step", "name": "fl.aggregate",
                                 "kwargs": {"updates": [Ref(x.id_at_location)]}}))
    assert _alive(alice, x.id_at_location), "bob's fl.aggregate consumed the notebook's tensor"


def test_a_peers_mpc_step_cannot_consume_the_notebooks_objects(net):
    alice = net["alice"]
    x = private_on(alice, mpc.encode(SECRET.double(), 16))  # ring values, like a share
    bob = peer(net["bob"], "alice")
    attempt(lambda: bob.request({"kind": "step", "name": "mpc.reconstruct",
                                 "kwargs": {"ids": [x.id_at_location]}}))
    assert _alive(alice, x.id_at_location), "bob's mpc.reconstruct consumed the tensor"


# ---- the dealer's identity -------------------------------------------------------------
def _join(client, session: str, parties: list[str], index: int, dealer: str):
    """A raw mpc.join naming ``dealer``, fitted to the installed step's parameters."""
    kwargs = {"session": session, "index": index, "n": len(parties), "parties": parties,
              "seed": mpc.dealer_seeds(2)[0], "dealer": dealer}
    accepted = find_step("mpc.join").signature.parameters
    return client.request({"kind": "step", "name": "mpc.join",
                           "kwargs": {k: v for k, v in kwargs.items() if k in accepted}})


def _shared_session(net):
    a, b = torch.tensor([1.5, -2.0, 3.25]), torch.tensor([2.0, 0.5, -1.0])
    xs = ppdl_nb.share(a, net["bob"], net["charlie"], dealer=net["dave"])
    ys = ppdl_nb.share(b, net["bob"], net["charlie"], dealer=net["dave"])
    return xs, ys, a * b


def test_a_party_cannot_make_itself_the_dealer_of_a_session(net):
    xs, ys, expected = _shared_session(net)
    session = xs.child.session.id
    bob_as_peer = peer(net["bob"], "charlie")
    refused = isinstance(attempt(lambda: _join(bob_as_peer, session, ["bob", "charlie"], 1,
                                                dealer="bob")), PermissionError | ValueError)
    product = attempt(lambda: (xs * ys).get())
    assert refused, "charlie accepted bob as the dealer of a session dave deals"
    assert isinstance(product, torch.Tensor)
    torch.testing.assert_close(product, expected, atol=1e-3, rtol=0, check_dtype=False)


def test_the_notebook_cannot_be_a_dealer(net):
    refused = attempt(lambda: _join(net["charlie"], "nb-session", ["bob", "charlie"], 1,
                                    dealer="me"))
    assert isinstance(refused, PermissionError | ValueError), (
        "charlie took the notebook's seed as its dealer's")


def test_sanity_the_notebook_frees_what_it_sent(alice):
    x = ppdl_nb.send(torch.ones(2), alice)
    obj_id = x.id_at_location
    del x
    alice.flush()
    assert not _alive(alice, obj_id)
