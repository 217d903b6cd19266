"""The worker side of an SPDZ operation: one routine per operation, run by one runner.

Both choreographies run the same routine (tests/tensors/test_shared.py checks their
results against torch); here: what the runner refuses, that a party that fails leaves
nothing waiting on its peers, and that rounds are counted by the runner alone.
"""

from __future__ import annotations

import time

import pytest
import torch

import ppdl_nb
from ppdl_nb.tensors.shared import session_for
from ppdl_nb.tensors.spdz import runner
from ppdl_nb.tensors.spdz.routines import ROUTINES
from ppdl_nb.tensors.spdz.state import spdz_state
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.transport.virtual import VirtualNetwork


def _group(fused: bool, n: int = 2):
    net = VirtualNetwork()
    parties = [ppdl_nb.VirtualWorker(f"p{i}", network=net) for i in range(n)]
    dealer = ppdl_nb.VirtualWorker("dealer", network=net)
    session_for(parties, dealer).fused = fused
    return parties, dealer


def test_one_routine_per_operation():
    assert sorted(ROUTINES) == ["bilinear", "nonlinear", "program", "train", "truncate"]


def test_the_runner_refuses_unknown_operations_and_arguments():
    parties, dealer = _group(False)
    x = ppdl_nb.share(torch.ones(2), *parties, dealer=dealer)
    sess, ref = x.child.session, Ref(x.child.shares[0].id_at_location)
    with pytest.raises(ValueError, match="no SPDZ operation 'divide'"):
        runner.run.on(parties[0], session=sess.id, op="divide", args={})
    with pytest.raises(TypeError, match="operation truncate"):
        runner.run.on(parties[0], session=sess.id, op="truncate",
                      args={"label": b"l", "x": ref, "frac_bits": 16, "extra": 1})
    with pytest.raises(ValueError, match="fresh label"):
        runner.run.on(parties[0], session=sess.id, op="truncate",
                      args={"label": "l", "x": ref, "frac_bits": 16})
    with pytest.raises(KeyError, match="no operation"):
        runner.resume.on(parties[0], session=sess.id, label=b"nothing")


def test_only_who_started_an_operation_may_resume_it():
    parties, dealer = _group(False)
    x = ppdl_nb.share(torch.ones(2), *parties, dealer=dealer)
    sess = x.child.session
    label = sess.label()
    reply = runner.run.on(parties[0], session=sess.id, op="bilinear", wait=False, args={
        "label": label, "kind": "square", "params": {"shape": [2]},
        "x": Ref(x.child.shares[0].id_at_location)})
    assert reply == {"done": False, "rounds": 1, "round": "square: open masked inputs"}
    p1_to_p0 = parties[1].owner.client_for("p0")  # speaks as p1
    with pytest.raises(PermissionError, match="only me may resume"):
        runner.resume.on(p1_to_p0, session=sess.id, label=label)
    assert label in spdz_state(parties[0].owner).running


@pytest.mark.parametrize("fused", [False, True], ids=["rounds", "fused"])
def test_a_party_that_fails_leaves_nothing_waiting(fused):
    parties, dealer = _group(fused, 3)
    x = ppdl_nb.share(torch.ones(4), *parties, dealer=dealer)
    parties[1].owner.free(x.child.shares[1].id_at_location)
    start = time.monotonic()
    with pytest.raises(KeyError):
        _ = x * x
    assert time.monotonic() - start < 20  # not the peers' 60 s wait
    deadline = time.monotonic() + 5  # aborts travel in the background
    while any(spdz_state(p.owner).running for p in parties) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(spdz_state(p.owner).running for p in parties)
    y = ppdl_nb.share(torch.full((4,), 2.0), *parties, dealer=dealer)
    torch.testing.assert_close((y * y).get(), torch.full((4,), 4.0, dtype=torch.float64))


@pytest.mark.parametrize("fused", [False, True], ids=["rounds", "fused"])
def test_the_parties_count_the_rounds(fused):
    parties, dealer = _group(fused)
    x = ppdl_nb.share(torch.ones(3, 3), *parties, dealer=dealer)
    sess = x.child.session
    before = sess.rounds
    _ = x @ x
    _ = x.square()
    _ = x * 0.5  # a public product: one truncation round
    assert sess.rounds - before == 5
    with ppdl_nb.trace() as t:
        _ = x @ x
    delivers = [r["round"] for r in t.records if r["kind"] == "mpc.deliver"]
    assert sorted(set(delivers)) == ["matmul: open for truncation",
                                     "matmul: open masked inputs"]
