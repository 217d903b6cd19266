"""Encrypted training (ppdl_nb.tensors.private_training, spdz/training.py).

What a user relies on: SGD on shares lands where plaintext SGD lands (same initial
weights, same batches, same hyperparameters), with 2 and 3 parties, round by round and
fused; each step is one request per party and one to the dealer; the trained model opens
only to readers every data owner allowed for this very program (another graph or other
hyperparameters get another fingerprint, and are refused); Ctrl-C stops after a step
every party finished; malformed requests are refused on every party with a clear error.
"""

from __future__ import annotations

import copy
import signal
import threading

import pytest
import torch
from torch import nn

import ppdl_nb
from ppdl_nb.tensors.private_model import encrypt
from ppdl_nb.tensors.private_training import _uninterrupted
from ppdl_nb.tensors.spdz.training import fingerprint
from ppdl_nb.workers.core.codec import Ref
from tests.tensors.test_private_model import workers

F = 20


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test model only
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def digits(n: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


def plain_sgd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, schedule, *,
              lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> nn.Module:
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    for rows in schedule:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), labels[rows]).backward()
        opt.step()
    return model


@pytest.fixture
def small():
    """A small model encrypted among two virtual parties, and alice's 8 rows."""
    model, (x, labels) = mlp(), digits(8)
    parties, dealer = workers(2, True)
    alice = ppdl_nb.VirtualWorker("alice", network=parties[0].network)
    pm = encrypt(model, parties=parties, dealer=dealer, frac_bits=F)
    return model, x, labels, parties, dealer, alice, pm


def owners_data(owner, training, x, labels, readers=("me",)):
    allow = {training.fingerprint: list(readers)} if readers else None
    return (ppdl_nb.send(x, owner, private=True, allow_programs=allow),
            ppdl_nb.send(torch.eye(3)[labels], owner, private=True, allow_programs=allow))


def shared(pair, parties, dealer):
    return tuple(ppdl_nb.share(t, *parties, dealer=dealer, frac_bits=F) for t in pair)


@pytest.mark.parametrize(("n", "fused", "momentum"), [(2, True, 0.9), (3, False, 0.0)])
def test_training_on_shares_matches_plain_sgd(n, fused, momentum):
    model, (x, labels) = mlp(), digits()
    parties, dealer = workers(n, fused)
    net = parties[0].network
    alice, bob = (ppdl_nb.VirtualWorker(name, network=net) for name in ("alice", "bob"))
    pm = encrypt(model, parties=parties, dealer=dealer, frac_bits=F)
    training = pm.training(lr=0.2, momentum=momentum, weight_decay=0.01, epochs=2,
                           batch_size=8, steps_per_request=2)
    data = [shared(owners_data(alice, training, x[:12], labels[:12]), parties, dealer),
            shared(owners_data(bob, training, x[12:], labels[12:]), parties, dealer)]
    seen = []
    history = training.fit(data, callback=seen.append)
    want = plain_sgd(model, x, labels, training.batches(24), lr=0.2, momentum=momentum,
                     weight_decay=0.01)
    got = pm.get()
    for a, b in zip(got.parameters(), want.parameters(), strict=True):
        assert (a - b).abs().max() < 2e-3
    assert [s["step"] for s in history.steps] == [1, 2, 3, 4, 5, 6]
    assert len(seen) == 3  # one callback per request of 2 steps
    assert all(s["rounds"] > 20 and s["bytes"] > 0 and s["loss"] is None
               for s in history.steps)


def test_opened_loss_follows_plain_loss():
    model, (x, labels) = mlp(2), digits(16, seed=3)
    parties, dealer = workers(2, True)
    alice = ppdl_nb.VirtualWorker("alice", network=parties[0].network)
    pm = encrypt(model, parties=parties, dealer=dealer, frac_bits=F)
    training = pm.training(lr=0.1, epochs=1, batch_size=16, open_loss=True)
    history = training.fit([shared(owners_data(alice, training, x, labels), parties,
                                   dealer)])
    rows = training.batches(16)[0]
    plain = nn.functional.cross_entropy(model(x[rows]), labels[rows]).item()
    assert history.steps[0]["loss"] == pytest.approx(plain, abs=5e-3)


def test_model_opens_only_for_the_allowed_program(small):
    model, x, labels, parties, dealer, alice, pm = small
    allowed = pm.training(lr=0.1, batch_size=8)
    other = pm.training(lr=0.2, batch_size=8)  # another hyperparameter: another program
    assert allowed.fingerprint != other.fingerprint
    data = [shared(owners_data(alice, allowed, x, labels), parties, dealer)]
    other.fit(data)
    with pytest.raises(PermissionError):
        pm.get()
    pm2 = encrypt(model, parties=parties, dealer=dealer, frac_bits=F)
    pm2.training(lr=0.1, batch_size=8).fit(data)
    assert isinstance(pm2.get(), nn.Sequential)


def test_no_allowance_keeps_the_model_shared(small):
    model, x, labels, parties, dealer, alice, pm = small
    training = pm.training(lr=0.1, batch_size=8)
    training.fit([shared(owners_data(alice, training, x, labels, readers=()), parties,
                         dealer)])
    with pytest.raises(PermissionError):
        pm.get()


def test_fingerprint_names_graph_hyperparameters_and_epochs():
    pm = encrypt(mlp(), parties=workers(2, True)[0], dealer=workers(2, True)[1],
                 frac_bits=F)
    base = pm.training(lr=0.1).fingerprint
    assert base == pm.training(lr=0.1).fingerprint
    assert len({base, pm.training(lr=0.1, epochs=2).fingerprint,
                pm.training(lr=0.1, momentum=0.5).fingerprint,
                pm.training(lr=0.1, open_loss=True).fingerprint}) == 4


@pytest.mark.parametrize(("change", "message"), [
    ({"program": {"layers": [{"layer": "Eval"}]}}, "layers are dicts"),
    ({"args": {"batches": [[0]]}}, "batches"),  # the parties pick the rows, not the notebook
    ({"args": {"step": 10_000}}, "steps"),
    ({"args": {"count": 0}}, "steps"),
    ({"program": {"seed": "0"}}, "seed"),
    ({"program_config": {"lr": "0.1; import os"}}, "lr"),
])
def test_malformed_training_requests_are_refused_on_every_party(change, message, small):
    model, x, labels, parties, dealer, alice, pm = small
    training = pm.training(lr=0.1, batch_size=8)
    xs, ys = shared(owners_data(alice, training, x, labels), parties, dealer)
    session = xs.child.session
    program = {**training.program, **change.get("program", {})}
    if "program_config" in change:
        program["config"] = {**program["config"], **change["program_config"]}
    for i, party in enumerate(parties):
        ref = lambda t, i=i: Ref(t.child.shares[i].id_at_location)  # noqa: E731
        args = {"label": session.label(), "program": program, "step": 0, "count": 1,
                "weights": [ref(w) for ws in pm.weights for w in ws], "velocity": [],
                "data": [[ref(xs), ref(ys)]], **change.get("args", {})}
        with pytest.raises((ValueError, TypeError), match=message):
            party.step("mpc.run", session=session.id, op="train", args=args)
    assert float(ppdl_nb.share(torch.ones(1), *parties, dealer=dealer).get()) == 1.0


def test_a_slice_of_allowed_data_is_not_allowed(small):
    """An allowance covers the tensor its owner gave it for, not what is computed from
    its shares: a notebook that trains on one row cannot open the result."""
    model, x, labels, parties, dealer, alice, pm = small
    training = pm.training(lr=0.1, batch_size=8)
    xs, ys = shared(owners_data(alice, training, x, labels), parties, dealer)
    training.fit([(xs[:1], ys[:1])])
    with pytest.raises(PermissionError, match=training.fingerprint):
        pm.get()


def test_open_loss_without_an_allowance_is_refused_before_any_step(small):
    model, x, labels, parties, dealer, alice, pm = small
    allowed = pm.training(lr=0.1, batch_size=8)
    data = [shared(owners_data(alice, allowed, x, labels), parties, dealer)]
    before = [w.child.shares[0].id_at_location for ws in pm.weights for w in ws]
    with pytest.raises(PermissionError, match="open_loss"):
        pm.training(lr=0.1, batch_size=8, open_loss=True).fit(data)
    assert [w.child.shares[0].id_at_location for ws in pm.weights for w in ws] == before


def test_fingerprint_refuses_unknown_program_keys():
    with pytest.raises(ValueError, match="training program"):
        fingerprint({"layers": []})


def test_data_must_be_shared_among_the_models_parties_at_its_precision():
    model, (x, labels) = mlp(), digits(8)
    parties, dealer = workers(2, True)
    pm = encrypt(model, parties=parties, dealer=dealer, frac_bits=F)
    training = pm.training(lr=0.1, batch_size=8)
    with pytest.raises(TypeError, match="shared tensors"):
        training.fit([(x, labels)])
    low = tuple(ppdl_nb.share(t, *parties, dealer=dealer) for t in (x, torch.eye(3)[labels]))
    with pytest.raises(ValueError, match="frac_bits=20"):
        training.fit([low])
    with pytest.raises(ValueError, match="one-hot"):
        training.fit([(shared((x, labels.double()), parties, dealer))])


def test_ctrl_c_waits_for_the_running_step_then_stops():
    """A real SIGINT while a step runs: the step runs to its end (on every party), then
    the interrupt is raised with its result. The step may finish only once the main
    thread has taken the signal (the handler releases it): no timing involved."""
    started, release = threading.Event(), threading.Event()

    def step():
        started.set()
        release.wait(30)
        return ["finished"]

    def on_sigint(signum, frame):
        release.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        main = threading.main_thread().ident  # delivered to the main thread: its wait wakes
        threading.Thread(target=lambda: started.wait(30) and signal.pthread_kill(
            main, signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt) as stop:
            _uninterrupted(step)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert release.is_set() and stop.value.args[0] == ["finished"]
