"""The Ray engine on a real local Ray: same model as the in-process engine, same strategies,
the same History and progress, loopback only, and a dead actor costs a round its clients,
not the run. One Ray start for the module (the slow part, ~10-25 s on 2 busy cores)."""

from __future__ import annotations

import ast
import copy
import os
from pathlib import Path

import pytest
import torch
from fl_helpers import SEED, data, model, reference

import ppdl_nb
from ppdl_nb.fl import DPFedAvg, FedAdam, FederatedDataset, SecAgg, Secure, fit_federated
from ppdl_nb.fl import ray_engine as ray_engine_module
from ppdl_nb.fl.local import flat_weights
from ppdl_nb.fl.ray_engine import RayEngine, simulated_dataset
from ppdl_nb.workers.transport.virtual import VirtualNetwork

ray = pytest.importorskip("ray")

CLIENTS = 6


@pytest.fixture(scope="module")
def engine():
    eng = RayEngine(actors=2).start()
    yield eng
    eng.close()


@pytest.fixture()
def both():
    """The same six clients, simulated on Ray and held by two virtual workers."""
    x, y = data()
    net = VirtualNetwork()
    workers = [ppdl_nb.VirtualWorker(n, network=net) for n in ("alice", "bob")]
    fed = FederatedDataset.from_tensors(x, y, workers, clients_per_worker=CLIENTS // 2, seed=3,
                                        test=(x, y))
    return simulated_dataset(x, y, CLIENTS, seed=3, test=(x, y)), fed


def _fit(fed, engine, **kwargs):
    return fit_federated(model(), fed, rounds=2, batch_size=16, seed=SEED, engine=engine,
                         **kwargs)


def test_ray_model_equals_in_process_model(engine, both):
    sim, fed = both
    on_ray = _fit(sim, engine, fraction=0.5)
    in_process = _fit(fed, "workers", fraction=0.5)
    torch.testing.assert_close(flat_weights(on_ray.model), flat_weights(in_process.model),
                               atol=1e-5, rtol=0)
    assert on_ray.history["clients"] == in_process.history["clients"] == [3, 3]
    assert on_ray.history["accuracy"] == pytest.approx(in_process.history["accuracy"])
    assert on_ray.history["loss"] == pytest.approx(in_process.history["loss"], rel=1e-5)


def test_all_clients_match_plain_torch_fedavg(engine, both):
    sim, _ = both
    run = _fit(sim, engine)
    xs = {c.id: c.x for c in sim.clients}
    ys = {c.id: c.y for c in sim.clients}
    expected = reference(model(), sim, xs, ys, rounds=2)
    torch.testing.assert_close(flat_weights(run.model), flat_weights(expected), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("strategy", [
    FedAdam(SecAgg(), server_lr=0.05),
    DPFedAvg(noise_multiplier=0.0, max_update_norm=0.05),  # clipped, Poisson-sampled
])
def test_strategies_agree_with_in_process(engine, both, strategy):
    sim, fed = both
    on_ray = _fit(sim, engine, aggregation=copy.deepcopy(strategy), fraction=0.5)
    in_process = _fit(fed, "workers", aggregation=copy.deepcopy(strategy), fraction=0.5)
    torch.testing.assert_close(flat_weights(on_ray.model), flat_weights(in_process.model),
                               atol=1e-5, rtol=0)
    assert on_ray.history["aggregation"] == in_process.history["aggregation"]


def test_progress_is_reported_each_round(engine, both):
    sim, _ = both
    seen = []
    run = _fit(sim, engine, fraction=0.5, callback=seen.append)
    assert [r["round"] for r in seen] == [1, 2]
    assert all({"accuracy", "loss", "bytes_moved", "clients"} <= set(r) for r in seen)
    assert run.history.last["bytes_moved"] > 0


def test_a_dead_actor_loses_its_clients_for_one_round(engine, both):
    sim, _ = both
    ray.kill(engine._pool[0])
    run = _fit(sim, engine)  # 6 clients on 2 actors: 3 die with the first one
    assert run.history["clients"] == [3, 6]
    assert [e["round"] for e in run.history.events] == [1]
    assert "actor 0 died" in run.history.events[0]["text"]


def test_what_it_cannot_simulate_is_refused(engine, both):
    sim, fed = both
    with pytest.raises(ValueError, match="engine='workers'"):
        _fit(fed, engine)
    with pytest.raises(ValueError, match="trusted, secure"):
        _fit(sim, engine, aggregation=Secure())
    with pytest.raises(ValueError, match="actors"):
        RayEngine(actors=0)


def test_ray_listens_on_loopback_only(engine):
    ours = {pid for pid in _tree(os.getpid())}
    inodes = set()
    for pid in ours:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.append(fields[1].split(":")[0])
    assert listening, "Ray's processes should be listening somewhere"
    loopback = {"0100007F", "00000000000000000000000001000000",  # 127.0.0.1, ::1
                "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1
    assert set(listening) <= loopback, f"Ray listens beyond loopback: {listening}"


def test_the_package_imports_without_ray():
    tree = ast.parse(Path(ray_engine_module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top
                                                     if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n == "ray" or n.startswith("ray.")]


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out
