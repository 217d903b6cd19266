"""Class 4, peers: code acting as a peer worker (bob's side, ``client_for("alice")``) must
not enumerate alice's objects into a private value, whatever path of the vocabulary it
takes. Each test walks every id alice could hold and tries one path on each.
"""

from __future__ import annotations

import pytest
import torch

import ppdl_nb

from .attacks import Ref, attempt, call, contains_secret, leak, peer, private_on

IDS = range(12)  # more than alice holds: ids are small consecutive integers


@pytest.fixture
def victim(net):
    """alice holds the notebook's private tensor among some public objects; bob attacks."""
    alice = net["alice"]
    decoys = [ppdl_nb.send(torch.randn(2, 3), alice) for _ in range(2)]
    x = private_on(alice)
    return {"alice": alice, "x": x, "decoys": decoys, "bob": peer(net["bob"], "alice"),
            "bob_worker": net["bob"]}


def _store(client, value):
    return client.request({"kind": "store", "obj": value})["id"]


def _fetch(client, obj_id):
    return client.request({"kind": "fetch", "id": obj_id, "keep": True})


def _by_fetch(bob, i):
    return _fetch(bob, i)


def _by_out(bob, i):
    t = _store(bob, torch.zeros(2, 3))
    call(bob, "torch.add", Ref(i), 0, out=Ref(t))
    return _fetch(bob, t)


def _by_view(bob, i):
    base = _store(bob, torch.zeros(2, 3))
    view = call(bob, "Tensor.view", Ref(base), 2, 3)["id"]
    call(bob, "Tensor.add_", Ref(base), Ref(i))
    return _fetch(bob, view)


def _by_grad(bob, i):
    w = _store(bob, torch.ones(2, 3).requires_grad_())
    prod = call(bob, "torch.mul", Ref(w), Ref(i))["id"]
    total = call(bob, "torch.sum", Ref(prod))["id"]
    call(bob, "Tensor.backward", Ref(total))
    return _fetch(bob, call(bob, "attr", Ref(w), "grad")["id"])


def _by_aggregate(bob, i):
    return bob.request({"kind": "step", "name": "fl.aggregate",
                        "kwargs": {"updates": [Ref(i)]}})


PATHS = {
    "fetch": (_by_fetch, None),
    "out=": (_by_out, None),
    "view+in-place": (_by_view, None),
    "grad": (_by_grad, None),
    "fl.aggregate": (_by_aggregate, None),
}


@pytest.mark.parametrize("path", [
    pytest.param(name, marks=() if reason is None else leak(reason))
    for name, (_, reason) in PATHS.items()
])
def test_a_peer_enumerating_ids_fetches_no_private_object(victim, path):
    attack, _ = PATHS[path]
    bob = victim["bob"]
    for i in IDS:
        got = attempt(lambda i=i: attack(bob, i))
        assert not contains_secret(got), f"bob read alice:{i}, the notebook's private tensor"


def test_a_peer_cannot_have_a_private_object_sent_to_itself(victim):
    bob = victim["bob"]
    for i in IDS:
        attempt(lambda i=i: bob.request({"kind": "send", "id": i, "to": "bob"}))
    held = victim["bob_worker"].owner.store
    got = [attempt(lambda i=i: _fetch(victim["bob_worker"], i)) for i in range(len(held) + 4)]
    assert not any(contains_secret(g) for g in got)


def test_a_peer_cannot_tell_a_private_object_from_a_missing_one(victim):
    bob, x = victim["bob"], victim["x"]
    missing = 10_000
    seen = [attempt(lambda i=i: call(bob, "attr", Ref(i), "shape"))
            for i in (x.id_at_location, missing)]
    kinds = [type(s).__name__ if isinstance(s, BaseException) else "ok" for s in seen]
    assert kinds[0] == kinds[1], (
        f"bob tells alice's private object from a missing id: {kinds} ({seen[0]!r})")
