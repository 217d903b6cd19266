"""Workers really killed mid-round (kernel processes): the run goes on, or says why not."""

from __future__ import annotations

import pytest
import torch
from fl_helpers import SEED, model, reference, split

from ppdl_nb.fl import SecAgg, fit_federated
from ppdl_nb.fl.local import flat_weights
from ppdl_nb.fl.transcript import crash_before

kernel = pytest.importorskip("ppdl_nb.workers.transport.kernel")
oscalls = pytest.importorskip("ppdl_nb.workers.transport.oscalls")


@pytest.fixture
def workers():
    group = kernel.launch("fl_a", "fl_b", "fl_c")
    yield group
    group.shutdown()


def test_a_worker_killed_during_training_is_recorded_and_training_goes_on(workers):
    a, b, c = workers
    fed, xs, ys = split(workers, clients_per_worker=2)
    start = model()
    pid = c.pid
    with crash_before(c, "fl.train"):
        run = fit_federated(start, fed, rounds=2, batch_size=16, seed=SEED, min_clients=4)
    assert not oscalls.process_running(pid)
    assert run.history["clients"] == [4, 4]
    assert "fl_c dropped out (WorkerUnavailableError)" in run.history.events[0]["text"]
    assert c.status() == "dead"
    survivors = [cl for cl in fed.clients if cl.worker.name != "fl_c"]
    expected = reference(start, fed, xs, ys, rounds=2, clients=survivors)
    torch.testing.assert_close(flat_weights(run.model), flat_weights(expected), atol=1e-5,
                               rtol=0)
    with pytest.raises(RuntimeError, match=r"only 4 of 6 sampled clients reported.*fl_c"):
        fit_federated(start, fed, rounds=1, min_clients=5)


def test_secagg_completes_when_a_worker_dies_before_sending_masked_updates(workers):
    a, b, c = workers
    fed, xs, ys = split(workers, clients_per_worker=2)
    start = model()
    with crash_before(c, "secagg.masked"):
        run = fit_federated(start, fed, rounds=1, batch_size=16, seed=SEED,
                            aggregation=SecAgg(threshold=4))
    survivors = [cl for cl in fed.clients if cl.worker.name != "fl_c"]
    expected = reference(start, fed, xs, ys, rounds=1, clients=survivors)
    torch.testing.assert_close(flat_weights(run.model), flat_weights(expected), atol=1e-4,
                               rtol=0)
    texts = " ".join(e["text"] for e in run.history.events)
    assert "fl_c dropped out during secagg.masked" in texts and "c2, c5 dropped" in texts


def test_tracing_skips_workers_that_are_down(workers):
    import ppdl_nb

    a, b, c = workers
    c.shutdown()
    with ppdl_nb.trace() as t:
        ppdl_nb.send(torch.ones(2), a)
    assert [(r["src"], r["dst"]) for r in t.records] == [("me", "fl_a")]
