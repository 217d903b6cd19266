"""A private forward as one program (ppdl_nb.tensors.private_program, spdz/program.py).

What a user relies on: the program computes what the layer-by-layer forward computes
(same rounds per layer), the notebook sends one request per party and one to the dealer
for the whole forward (none at all to the dealer when dealt ahead), and a malformed
program is refused with a clear error on every party instead of leaving one waiting.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from torch import nn

import ppdl_nb
from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.tensors.private_model import encrypt
from ppdl_nb.tensors.private_program import model_graph
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.tensors.spdz.graph import build_steps
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.transport.virtual import VirtualNetwork
from tests.tensors.test_private_model import check, cnn, images, workers


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test model only
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


@pytest.mark.parametrize(("n", "fused"), [(2, True), (3, False)])
def test_program_equals_layer_by_layer_and_torch(n, fused):
    model, x = cnn(7), images(3, seed=8)
    parties, dealer = workers(n, fused)
    pm = encrypt(model, parties=parties, dealer=dealer)
    shared = ppdl_nb.share(x, *parties, dealer=dealer)
    as_program = pm(shared)
    stepped = pm(shared, program=False)
    by_layer_rounds = [s["rounds"] for s in pm.last_forward]
    check(as_program.get(), model(x).detach())
    check(stepped.get(), model(x).detach())
    pm(shared)
    assert [s["rounds"] for s in pm.last_forward] == by_layer_rounds == [2, 8, 4, 0, 2]
    assert all(s["bytes"] > 0 for s in pm.last_forward if s["rounds"])


def test_kernel_program_is_one_request_per_party_and_none_to_the_dealer_when_dealt(
        kernel_trio):
    alice, bob, charlie = kernel_trio
    model, x = mlp(1), images(4, seed=9)
    pm = encrypt(model, parties=(alice, bob), dealer=charlie)
    shared = ppdl_nb.share(x, alice, bob, dealer=charlie)
    with ppdl_nb.trace(kernel_trio) as t:
        out = pm(shared)
    check(out.get(), model(x).detach())
    from_me = sorted((r["kind"], r["dst"]) for r in t.records if r["src"] == "me")
    assert from_me == [("mpc.deal", "charlie"), ("mpc.run", "alice"), ("mpc.run", "bob")]
    session = session_for([alice, bob], charlie)
    session.deal_ahead(lambda: pm(shared), times=1)
    with ppdl_nb.trace(kernel_trio) as t:
        out = pm(shared)
    check(out.get(), model(x).detach())
    assert sorted(r["kind"] for r in t.records if r["src"] == "me") == ["mpc.run"] * 2
    assert not any(r["src"] == "charlie" for r in t.records)  # online: no dealer at all


@pytest.mark.parametrize("bad, message", [
    ({"op": "exec", "x": [0]}, "no program op"),
    ({"op": "local", "fn": "eval", "x": [0]}, "no local op"),
    ({"op": "local", "fn": "add", "x": [0, 99]}, "slot 99"),
    ({"op": "bilinear", "kind": "square", "x": 0, "y": 0}, "mul, matmul or conv2d"),
])
def test_a_malformed_program_is_refused_on_every_party(kernel_trio, bad, message):
    alice, bob, charlie = kernel_trio
    shared = ppdl_nb.share(torch.ones(2, 2), alice, bob, dealer=charlie)
    session = shared.child.session
    label = session.label()

    def args(i):
        return {"label": label, "steps": [bad],
                "inputs": [Ref(shared.child.shares[i].id_at_location)]}

    start = time.monotonic()
    with pytest.raises((ValueError, TypeError), match=message):
        session.run("program", args, [], name="bad")
    assert time.monotonic() - start < 20
    y = ppdl_nb.share(torch.full((2,), 3.0), alice, bob, dealer=charlie)  # still serving
    torch.testing.assert_close((y * y).get(), torch.full((2,), 9.0, dtype=torch.float64))


def test_a_party_that_vanished_stops_the_program_within_seconds_and_the_others_serve():
    group = ppdl_nb.launch("gone_a", "gone_b", "gone_d")
    try:
        a, b, d = group
        model, x = mlp(2), images(4, seed=3)
        pm = encrypt(model, parties=(a, b), dealer=d)
        shared = ppdl_nb.share(x, a, b, dealer=d)
        check(pm(shared).get(), model(x).detach())  # the data links are up
        os.kill(b.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while b.process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        with pytest.raises((ConnectionError, WorkerUnavailableError)) as err:
            pm(shared)
        assert time.monotonic() - start < 15  # not a party's 60 s wait
        assert "gone_b" in str(err.value)
        y = ppdl_nb.send(torch.ones(2), a)
        torch.testing.assert_close((y + 1).get(), torch.full((2,), 2.0))
    finally:
        group.shutdown()


def test_an_allowance_for_one_model_opens_its_predictions_and_nothing_else():
    """alice lets the notebook read the predictions of *this* model (its fingerprint):
    a notebook that swaps in an identity graph cannot open her input."""
    net = VirtualNetwork()
    alice, p0, p1, dealer = (ppdl_nb.VirtualWorker(n, network=net)
                             for n in ("alice", "p0", "p1", "dealer"))
    model, x = mlp(3), images(2, seed=5)
    pm = encrypt(model, parties=(p0, p1), dealer=dealer)
    identity = encrypt(nn.Sequential(nn.Flatten()), parties=(p0, p1), dealer=dealer)
    assert pm.fingerprint != identity.fingerprint
    at_alice = ppdl_nb.send(x, alice, private=True, allow_programs={pm.fingerprint: ["me"]})
    shared = ppdl_nb.share(at_alice, p0, p1, dealer=dealer)
    check(pm(shared).get(), model(x).detach())
    with pytest.raises(PermissionError):
        identity(shared).get()


def test_steps_that_are_not_the_graphs_are_refused():
    parties, dealer = workers(2, True)
    model, x = mlp(4), images(2, seed=6)
    pm = encrypt(model, parties=parties, dealer=dealer)
    shared = ppdl_nb.share(x, *parties, dealer=dealer)
    session = session_for(parties, dealer)
    graph = model_graph(pm.layers)
    inputs = [shared] + [w for ws in pm.weights for w in ws]
    steps, _, _ = build_steps(graph, list(x.shape), [list(w.shape) for w in inputs[1:]], 16)
    tampered = [st for st in steps if st["op"] != "nonlinear"]  # the ReLU left out
    for bad, says in [(tampered, "not its graph's"), (steps, "does not fit the graph")]:
        for i, party in enumerate(parties):
            refs = [Ref(t.child.shares[i].id_at_location) for t in inputs]
            with pytest.raises(ValueError, match=says):
                party.step("mpc.run", session=session.id, op="program", args={
                    "label": session.label(), "steps": bad, "graph": graph, "frac_bits": 16,
                    "inputs": refs if bad is tampered else refs[:2]})
