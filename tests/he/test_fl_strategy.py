"""HE aggregation as an FL strategy: fit_federated with HE(...) gives FedAvg's model."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("tenseal", reason="homomorphic encryption needs the 'he' extra (tenseal)")

import ppdl_nb  # noqa: E402
from ppdl_nb.fl import AGGREGATIONS, FederatedDataset, fit_federated, make_aggregation  # noqa: E402
from ppdl_nb.fl.he_aggregation import HE  # noqa: E402
from ppdl_nb.fl.local import flat_weights  # noqa: E402
from ppdl_nb.workers.transport.virtual import VirtualNetwork  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_he_strategy_gives_the_mean_model_within_quantisation():
    net = VirtualNetwork()
    alice, bob, charlie, agg, holder = (ppdl_nb.VirtualWorker(n, network=net) for n in
                                        ("alice", "bob", "charlie", "agg", "keys"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(180, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(1)
    fed = FederatedDataset.from_tensors(x, y, [alice, bob, charlie], seed=3, test=(x, y))
    opts = {"rounds": 2, "batch_size": 16, "seed": 7}
    plain = fit_federated(_model(), fed, aggregation="mean", **opts)
    strategy = HE(key_holder=holder, aggregator=agg, scale=2.0 ** 16, bound=64.0)
    run = fit_federated(_model(), fed, aggregation=strategy, **opts)
    # each coordinate is rounded to 1/scale per worker: 3 workers, over 2 rounds, / rows
    torch.testing.assert_close(flat_weights(run.model), flat_weights(plain.model),
                               atol=1e-4, rtol=0)
    assert run.history.last["aggregation"].startswith("BFV sum")
    assert run.history.last["bytes_moved"] > 0
    # neither the aggregator nor the notebook holds a secret key; the key holder holds one
    assert not agg.owner.state["he"]["keys"] and holder.owner.state["he"]["keys"]


def test_he_is_registered_and_needs_its_two_workers():
    assert AGGREGATIONS["he"] is HE
    with pytest.raises(ValueError, match="key_holder="):
        make_aggregation("he")
    net = VirtualNetwork()
    a, b, c = (ppdl_nb.VirtualWorker(n, network=net) for n in ("a", "b", "c"))
    fed = FederatedDataset.from_tensors(torch.randn(20, 6), torch.randint(0, 3, (20,)), [a, c])
    with pytest.raises(ValueError, match="holds client data"):
        fit_federated(_model(), fed, rounds=1, aggregation=HE(key_holder=b, aggregator=a))
    assert repr(HE(key_holder=b, aggregator=a)) == "HE(key_holder='b', aggregator='a')"
