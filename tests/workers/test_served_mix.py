"""Served and kernel workers together: pointers, SPDZ peer to peer, FedAvg, and owners' say."""

from __future__ import annotations

import pytest
import torch
from served_helpers import owner, serve

import ppdl_nb
from ppdl_nb.workers.core.waiting import wait_until
from ppdl_nb.workers.transport.kernel import launch
from ppdl_nb.workers.transport.served_client import connect, introduce


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """alice and charlie served by their owners, bob a kernel worker of the notebook."""
    root = tmp_path_factory.mktemp("mix")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PPDL_NB_IDENTITY", str(root / "notebook.key"))
        states = {n: owner(root, n, peers=tuple({"mx_alice", "mx_charlie"} - {n}))
                  for n in ("mx_alice", "mx_charlie")}
        procs = [serve(root, n) for n in states]
        (bob,) = group = launch("mx_bob")
        served = []
        try:
            for state in states.values():  # the owners allow the notebook's bob too
                state.allow(bob.public_key, "mx_bob", role="peer")
            served.extend(connect(p.address, fingerprint=p.fingerprint) for p in procs)
            wait_until(lambda: _introduced(served, bob), 10)  # allowlists reread in <1 s
            yield served[0], bob, served[1]
        finally:
            group.shutdown()
            for w in served:  # later tests' trace() reaches every open connection
                w.shutdown()
            for p in procs:
                p.stop()


def _introduced(served, bob) -> bool:
    try:
        introduce(*served, bob)
    except PermissionError:
        return False
    return True


def test_pointers_move_between_served_and_kernel_workers(mix):
    alice, bob, _ = mix
    x = ppdl_nb.send(torch.arange(5.0), alice)
    x.move(bob)
    assert x.location is bob
    x.move(alice)
    torch.testing.assert_close((x + 1).get(), torch.arange(5.0) + 1)


def test_secret_shared_arithmetic_across_a_served_and_a_kernel_worker(mix):
    alice, bob, charlie = mix
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(3, 2, generator=g)
    sa = ppdl_nb.share(a, alice, bob, dealer=charlie)
    sb = ppdl_nb.share(b, alice, bob, dealer=charlie)
    torch.testing.assert_close((sa @ sb).get().float(), a @ b, atol=1e-2, rtol=0)
    torch.testing.assert_close((sa + sa).get().float(), 2 * a, atol=1e-3, rtol=0)
    sc = ppdl_nb.share(a, alice, charlie, dealer=bob)  # two served parties, a kernel dealer
    torch.testing.assert_close((sc * sc).get().float(), a * a, atol=1e-2, rtol=0)


def test_fedavg_over_a_served_and_a_kernel_worker(mix):
    from ppdl_nb.fl import FederatedDataset, fit_federated
    from ppdl_nb.fl.local import flat_weights

    alice, bob, _ = mix
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 4, generator=g)
    y = (x @ torch.randn(4, 2, generator=g)).argmax(1)
    fed = FederatedDataset.from_tensors(x, y, [alice, bob], clients_per_worker=2, seed=3,
                                        test=(x, y))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    run = fit_federated(model, fed, rounds=2, batch_size=16, seed=5)
    assert run.history["clients"] == [4, 4]
    masked = fit_federated(model, fed, rounds=1, batch_size=16, seed=5, aggregation="secagg")
    plain = fit_federated(model, fed, rounds=1, batch_size=16, seed=5)
    assert masked.history["clients"] == [4]  # pairwise masks between served and kernel
    torch.testing.assert_close(flat_weights(masked.model), flat_weights(plain.model),
                               atol=1e-4, rtol=0)


def test_a_served_worker_takes_peers_only_from_its_owner(mix):
    from ppdl_nb.workers.transport.keys import KeyPair

    alice, _, _ = mix
    with pytest.raises(PermissionError, match="owner has not allowed worker 'mallory'"):
        alice.request({"kind": "peers", "peers": {
            "mallory": ["tcp://127.0.0.1:9", KeyPair.generate().public_hex]}})
    assert alice.ping() == "pong"
