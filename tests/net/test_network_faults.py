"""Served workers on a real network (a namespace and a veth pair of the test's own):
50 ms of latency (and 2% of chunks stalled as lost segments are), a partition mid-round,
a restart. Bounded in count and in time."""

from __future__ import annotations

import time

import pytest
import torch
from relay import Relay
from served_helpers import owner
from topology import Link

import ppdl_nb
from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.workers.core.waiting import wait_until
from ppdl_nb.workers.transport.served_client import connect, introduce
from ppdl_nb.workers.transport.served_process import ServedProcess

LATENCY = 0.05  # seconds, each way, on every path to and from alice
STALL = 0.02  # chance that a chunk waits one more 200 ms, as a lost TCP segment would
PORT = 7700  # alice's port inside her namespace (the namespace is the test's own)
NAMES = ("nt_alice", "nt_bob", "nt_charlie")


class Net:
    """alice behind the link (in the namespace, or on loopback as a fallback), bob behind
    a relay too, charlie (the dealer) direct; each reached at the address it is known by."""

    def __init__(self, root, link: Link | None) -> None:
        self.root, self.link = root, link
        here = link.host_ip if link else "127.0.0.1"
        states = {n: owner(root, n, peers=tuple(set(NAMES) - {n})) for n in NAMES}
        assert states
        self.alice = ServedProcess("nt_alice", root / "nt_alice",
                                   f"{link.ns_ip if link else '127.0.0.1'}:{PORT}",
                                   netns=link.ns if link else None)
        self.bob = ServedProcess("nt_bob", root / "nt_bob", "127.0.0.1:0")
        self.charlie = ServedProcess("nt_charlie", root / "nt_charlie", f"{here}:0")
        for p in self.procs:
            p.launch()
        for p in self.procs:
            p.wait_ready(90)
        host, port = self.alice.endpoint[6:].rsplit(":", 1)
        self.to_alice = Relay("127.0.0.1", (host, int(port)), latency=LATENCY, stall=STALL)
        bob_port = int(self.bob.endpoint.rsplit(":", 1)[1])
        self.to_bob = Relay(here, ("127.0.0.1", bob_port), latency=LATENCY, stall=STALL)
        self.workers = (
            connect(f"nt_alice@127.0.0.1:{self.to_alice.port}",
                    fingerprint=self.alice.fingerprint),
            connect(f"nt_bob@{here}:{self.to_bob.port}", fingerprint=self.bob.fingerprint),
            connect(self.charlie.address, fingerprint=self.charlie.fingerprint))
        introduce(*self.workers)

    @property
    def procs(self) -> tuple[ServedProcess, ...]:
        return self.alice, self.bob, self.charlie

    def partition(self, on: bool) -> None:
        if self.link is not None:
            self.link.set_up(not on)
        else:
            self.to_alice.blackhole(on)

    def close(self) -> None:
        for w in getattr(self, "workers", ()):
            w.close()
        for relay in (getattr(self, "to_alice", None), getattr(self, "to_bob", None)):
            if relay is not None:
                relay.close()
        for p in self.procs:
            p.kill()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("net")
    link, why = Link.make()
    if link is None:  # say so in the report; the same tests run on loopback
        print(f"\ntests/net: {why}; falling back to loopback with the relay")
    net = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PPDL_NB_IDENTITY", str(root / "notebook.key"))
            net = Net(root, link)
            yield net
    finally:
        if net is not None:
            net.close()
        if link is not None:
            link.close()


def test_secret_sharing_and_fedavg_complete_behind_50_ms(net):
    from ppdl_nb.fl import FederatedDataset, fit_federated

    alice, bob, charlie = net.workers
    t0 = time.perf_counter()
    alice.ping()
    assert time.perf_counter() - t0 >= 2 * LATENCY  # the latency is really there
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 4, generator=g), torch.randn(4, 3, generator=g)
    sa = ppdl_nb.share(a, alice, bob, dealer=charlie)
    sb = ppdl_nb.share(b, alice, bob, dealer=charlie)
    torch.testing.assert_close((sa @ sb).get().float(), a @ b, atol=1e-2, rtol=0)
    x = torch.randn(80, 4, generator=g)
    y = (x @ torch.randn(4, 2, generator=g)).argmax(1)
    fed = FederatedDataset.from_tensors(x, y, [alice, bob], clients_per_worker=1, seed=3)
    run = fit_federated(torch.nn.Linear(4, 2), fed, rounds=2, batch_size=16, seed=5)
    assert run.history["clients"] == [2, 2]


def test_a_partition_mid_round_fails_clearly_in_bounded_time_and_loses_nothing(net):
    from ppdl_nb.fl import FederatedDataset, fit_federated

    alice, bob, _ = net.workers
    kept = ppdl_nb.send(torch.arange(4.0), alice)
    x = torch.randn(80, 4, generator=torch.Generator().manual_seed(1))
    fed = FederatedDataset.from_tensors(x, (x[:, 0] > 0).long(), [alice, bob],
                                        clients_per_worker=1, seed=3)
    cut: dict[str, float] = {}

    def cut_after_round_one(event: dict) -> None:
        if "t" not in cut:
            net.partition(True)  # round 2's requests to alice go into a dead link
            cut["t"] = time.monotonic()

    try:
        with pytest.raises(RuntimeError, match=r"only 1 of 2 sampled clients reported.*"
                                               r"nt_alice"):
            fit_federated(torch.nn.Linear(4, 2), fed, rounds=3, batch_size=16, seed=5,
                          min_clients=2, callback=cut_after_round_one)
        assert time.monotonic() - cut["t"] < 15  # heartbeats: ~3 s, not a request timeout
        with pytest.raises(WorkerUnavailableError, match="nt_alice"):
            alice.ping()
    finally:
        net.partition(False)
    wait_until(lambda: _reachable(alice), 30)
    torch.testing.assert_close(kept.get(), torch.arange(4.0))  # nothing stored was lost


def _reachable(worker) -> bool:
    try:
        return worker.request({"kind": "ping"}, timeout=5) == "pong"
    except (ConnectionError, TimeoutError):
        return False


def test_a_restarted_worker_is_reconnected_with_its_identity(net):
    alice, bob, charlie = net.workers
    first_boot, fingerprint = alice.boot, net.alice.fingerprint
    net.alice.kill()
    net.alice.start(90)
    assert net.alice.fingerprint == fingerprint and net.alice.boot == first_boot + 1
    wait_until(lambda: _reachable(alice), 30)  # the same handle, a new session
    assert alice.boot == first_boot + 1
    s = ppdl_nb.share(torch.ones(3), alice, bob, dealer=charlie)  # peers introduced again
    torch.testing.assert_close((s + s).get().float(), 2 * torch.ones(3), atol=1e-3, rtol=0)
