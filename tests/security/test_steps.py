"""Class 3, protocol steps that read objects by reference: FL, MPC and DP steps must get
objects through the same policy as ops, and return nothing private unwrapped.

The notebook names a private tensor's id in a step's arguments (a ``Ref``), as the
message vocabulary lets it, and looks for the private value in the reply or anywhere
the notebook or a peer can read afterwards.
"""

from __future__ import annotations

import pytest
import torch

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.dp.worker_steps import attach_dataset
from ppdl_nb.fl import local
from ppdl_nb.workers.core.modules import module_to_spec
from ppdl_nb.workers.transport.virtual import VirtualNetwork, VirtualWorker

from .attacks import (
    SECRET,
    Ref,
    attempt,
    contains_secret,
    outcome,
    peer,
    private_on,
    sweep_tensors,
)

ROWS = torch.tensor([[0.5, 1.25, -3.5], [2.0, -4.5, 6.25], [7.75, 8.5, -9.0]])
LABELS = torch.tensor([0, 1, 1])


def _step(client, name, **kwargs):
    return client.request({"kind": "step", "name": name, "kwargs": kwargs})


def _dataset(alice):
    """The owner attaches a private DP dataset; the caller gets pointers it cannot open."""
    return attach_dataset(alice.owner, "rows", ROWS, LABELS, epsilon=1.0, delta=1e-5)


def _spent(alice) -> float:
    return _step(alice, "dp.budget", dataset="rows")["spent_epsilon"]


def test_fl_aggregate_does_not_return_a_private_tensor(alice):
    x = private_on(alice)
    got = attempt(lambda: _step(alice, "fl.aggregate", updates=[Ref(x.id_at_location)]))
    assert not contains_secret(got), "fl.aggregate returned the private tensor"


def test_fl_aggregate_of_private_plus_public_zero_does_not_reveal_it(alice):
    x = private_on(alice)
    zero = ppdl_nb.send(torch.zeros(2, 3), alice)
    got = attempt(lambda: _step(alice, "fl.aggregate",
                                updates=[Ref(x.id_at_location), Ref(zero.id_at_location)]))
    assert not contains_secret(got), "fl.aggregate returned the private tensor"


def test_secure_sum_of_a_single_private_tensor_does_not_open_it(net):
    alice, bob, charlie = net["alice"], net["bob"], net["charlie"]
    x = private_on(alice)
    attempt(lambda: _step(alice, "fl.share", round="r", update=Ref(x.id_at_location),
                          holders=["bob", "charlie"]))
    parts = [attempt(lambda c=c: _step(c, "fl.sum_shares", round="r", senders=["alice"]))
             for c in (bob, charlie)]
    if all(isinstance(p, torch.Tensor) for p in parts):
        opened = mpc.decode(mpc.reconstruct(parts), local.FRAC_BITS).float()
        assert not torch.allclose(opened, SECRET, atol=1e-3), (
            "the notebook opened a private tensor by summing its only shares")


def test_fl_train_on_private_data_returns_no_plain_update(alice):
    x = private_on(alice)
    y = ppdl_nb.send(torch.ones(2, 1), alice)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False))
    torch.nn.init.zeros_(model[0].weight)
    got = attempt(lambda: _step(alice, "fl.train", spec=module_to_spec(model),
                                clients=[[0, Ref(x.id_at_location), Ref(y.id_at_location)]],
                                epochs=1, batch_size=1, lr=0.5, loss="mse"))
    assert not isinstance(got, dict) or not sweep_tensors(got.get("update")), (
        "fl.train replied with a plain update computed from private data")


def test_dp_rows_do_not_leave_through_a_non_dp_step(alice):
    meta = _dataset(alice)
    got = attempt(lambda: _step(alice, "fl.aggregate", updates=[Ref(meta["x"]["id"])]))
    assert not contains_secret(got, ROWS), "the DP dataset's raw rows came back"
    assert _spent(alice) == 0.0


def test_dp_rows_do_not_leave_through_an_op(alice):
    meta = _dataset(alice)
    target = ppdl_nb.send(torch.zeros(3, 3), alice)
    attempt(lambda: alice.request({"kind": "call", "fn": "torch.add",
                                   "args": [Ref(meta["x"]["id"]), 0],
                                   "kwargs": {"out": Ref(target.id_at_location)}}))
    assert not contains_secret(attempt(target.get), ROWS), "the DP dataset's rows came back"


def test_mpc_histogram_of_a_private_tensor_does_not_depend_on_it(net):
    seen = []
    for secret in (SECRET, SECRET.abs()):
        network = VirtualNetwork()
        alice = VirtualWorker("alice", network=network)
        x = ppdl_nb.send(mpc.encode(secret.double(), 16), alice, private=True)
        seen.append(outcome(lambda a=alice, x=x: _step(a, "mpc.histogram",
                                                       x=Ref(x.id_at_location))))
    assert seen[0] == seen[1], "the histogram counts the private tensor's negative entries"


def test_a_peer_learns_nothing_from_a_step_on_a_private_tensor(net):
    alice, bob = net["alice"], net["bob"]
    x = ppdl_nb.send(mpc.encode(SECRET.double(), 16), alice, private=True)
    got = attempt(lambda: _step(peer(bob, "alice"), "mpc.histogram", x=Ref(x.id_at_location)))
    assert not (isinstance(got, torch.Tensor) and got.sum() == SECRET.numel()), (
        "a peer got a histogram of alice's private tensor")


def test_sanity_a_dp_query_is_charged(alice):
    _dataset(alice)
    _step(alice, "dp.query", dataset="rows", kind="count", epsilon=0.5)
    assert _spent(alice) == pytest.approx(0.5)
