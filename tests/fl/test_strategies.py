"""Strategies as objects: names and classes agree, wrappers compose, server optimizers
move the model as the same torch optimizer would."""

from __future__ import annotations

import copy

import pytest
import torch
from fl_helpers import SEED, model, reference, split

from ppdl_nb.fl import (
    AGGREGATIONS,
    DPFedAvg,
    Engine,
    FedAdam,
    FedAvgM,
    Mean,
    SecAgg,
    Trusted,
    WorkerEngine,
    fit_federated,
    make_aggregation,
)
from ppdl_nb.fl.aggregation import aggregation
from ppdl_nb.fl.local import apply_update, flat_weights


def test_every_name_is_its_class_name():
    assert {name: cls.__name__.lower() for name, cls in AGGREGATIONS.items()} == {
        name: name for name in AGGREGATIONS}
    assert {"mean", "trusted", "secure", "secagg", "dpfedavg", "fedavgm", "fedadam"} <= set(
        AGGREGATIONS)


def test_a_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        aggregation(type("Mean", (Mean,), {}))


def test_options_belong_to_their_aggregation():
    assert make_aggregation("secagg", threshold=4).threshold == 4
    with pytest.raises(ValueError, match="'mean' takes no option threshold"):
        make_aggregation("mean", threshold=4)
    with pytest.raises(ValueError, match="aggregator="):
        Trusted()
    with pytest.raises(TypeError):
        DPFedAvg("mean", 1.0, 0.5)  # privacy parameters are keyword-only
    with pytest.raises(ValueError, match="threshold"):
        SecAgg(threshold=1)


def _server_reference(start, fed, xs, ys, opt_factory, rounds):
    """FedAvg's averaged update fed to a torch optimizer as the negative gradient."""
    current = copy.deepcopy(start)
    w = torch.zeros_like(flat_weights(current), requires_grad=True)
    opt = opt_factory([w])
    for rnd in range(1, rounds + 1):
        before = flat_weights(current)
        plain = reference(current, fed, xs, ys, rounds=1, first_round=rnd)
        update = flat_weights(plain) - before
        old = w.detach().clone()
        w.grad = -update
        opt.step()
        apply_update(current, w.detach() - old)
    return current


@pytest.mark.parametrize("strategy, factory", [
    (FedAvgM(server_lr=0.5, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)),
    (FedAdam(SecAgg(), server_lr=0.05),
     lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.99), eps=1e-3)),
])
def test_server_optimizers_match_torch(trio, strategy, factory):
    fed, xs, ys = split(trio)
    run = fit_federated(model(), fed, rounds=3, batch_size=16, seed=SEED, aggregation=strategy)
    expected = _server_reference(model(), fed, xs, ys, factory, rounds=3)
    torch.testing.assert_close(flat_weights(run.model), flat_weights(expected), atol=1e-4,
                               rtol=0)
    # a second run starts from fresh optimizer state
    again = fit_federated(model(), fed, rounds=3, batch_size=16, seed=SEED, aggregation=strategy)
    torch.testing.assert_close(flat_weights(again.model), flat_weights(run.model), atol=1e-5,
                               rtol=0)


def test_dp_wraps_any_aggregation_and_composes(trio):
    fed, _, _ = split(trio, clients_per_worker=2)
    strategy = FedAvgM(DPFedAvg(SecAgg(threshold=2), noise_multiplier=0.5, max_update_norm=1.0))
    run = fit_federated(model(), fed, rounds=2, fraction=0.9, seed=SEED, aggregation=strategy)
    assert run.history["epsilon"][0] < run.history["epsilon"][1]
    assert "loss" not in run.history.metrics  # DP keeps per-client figures on the workers


def test_another_engine_plugs_in_without_touching_the_loop(trio):
    calls = []

    class Counting(Engine):
        def __init__(self):
            self.inner = WorkerEngine()

        def train(self, groups, options, *, round, alive):
            calls.append((round, sorted(groups)))
            return self.inner.train(groups, options, round=round, alive=alive)

    fed, _, _ = split(trio[:2])
    fit_federated(model(), fed, rounds=2, engine=Counting(), seed=SEED)
    assert calls == [(1, ["alice", "bob"]), (2, ["alice", "bob"])]
