"""Federated averaging: the model travels to the data, trains there, comes back averaged.

Each round the notebook samples clients, sends the global model (as an allowlisted graph
plus weights, never a pickle) to where they run (an :mod:`~ppdl_nb.fl.engine`: by
default the workers holding them, all at once), and every client trains its copy
natively. Only updates come back, aggregated as the chosen strategy allows
(:mod:`~ppdl_nb.fl.aggregation`: ``Mean``, ``Trusted``, ``Secure``, ``SecAgg``; wrapped
by :mod:`~ppdl_nb.fl.strategies`: ``DPFedAvg``, ``FedAvgM``, ``FedAdam``), and the
strategy moves the global model. The loop itself holds what every strategy shares:
FedProx (``prox_mu``), client sampling (``fraction``) and fault tolerance: a worker that
dies mid-round is recorded and the round completes with the rest, if at least
``min_clients`` reported.

>>> import ppdl_nb, torch
>>> from ppdl_nb.fl import SecAgg
>>> workers = [ppdl_nb.VirtualWorker(n) for n in ("alice", "bob")]
>>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
>>> fed = FederatedDataset.from_tensors(x, y, workers, test=(x, y))
>>> run = fit_federated(torch.nn.Linear(4, 2), fed, rounds=2, batch_size=16,
...                     aggregation=SecAgg(threshold=2))
>>> len(run.history), run.history.last["aggregation"]
(2, 'pairwise masks (Bonawitz et al.)')
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ppdl_nb import training
from ppdl_nb.dp.noise import gaussian_noise
from ppdl_nb.dp.noise import generator as secure_generator
from ppdl_nb.errors import TrainingInterrupted
from ppdl_nb.fl.aggregation import RoundAborted, RoundUpdates, Strategy, resolve
from ppdl_nb.fl.dataset import FederatedDataset
from ppdl_nb.fl.engine import Engine, resolve_engine
from ppdl_nb.fl.history import History
from ppdl_nb.fl.local import flat_weights
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.modules import module_to_spec

__all__ = ["FederatedRun", "fit_federated"]


@dataclass
class FederatedRun:
    """The trained global model and its per-round :class:`History`."""

    model: nn.Module
    history: History

    def __repr__(self) -> str:
        return f"FederatedRun({type(self.model).__name__}, {self.history!r})"


def fit_federated(  # long: one round of FedAvg reads best as one loop body
    model: nn.Module, data: FederatedDataset, *, rounds: int,
    aggregation: str | Strategy = "mean", engine: str | Engine = "workers",
    local_epochs: int = 1, batch_size: int = 32, lr: float = 0.1, loss: str = "cross_entropy",
    optimizer: str = "sgd", prox_mu: float = 0.0, fraction: float = 1.0, min_clients: int = 1,
    seed: int | None = None, callback: Callable[[dict[str, Any]], Any] | None = None,
) -> FederatedRun:
    """Train a copy of ``model`` with FedAvg over ``data``'s clients; return it and a History.

    ``aggregation``: a strategy object (``SecAgg(threshold=4)``, ``Trusted(aggregator=w)``,
    ``DPFedAvg(Secure(), noise_multiplier=1.1, max_update_norm=0.5)``, ``FedAdam()``) or
    the name of one that needs no options (``"mean"``, ``"secure"``, ``"secagg"``, ...).
    ``engine``: where clients run (``"workers"``: on the workers that hold them).
    ``loss`` and ``optimizer`` name the clients' local training (:mod:`ppdl_nb.training`;
    ``"sgd"`` is plain SGD). ``callback(record)`` is called after every round.
    An interrupt (Ctrl-C) raises :class:`~ppdl_nb.errors.TrainingInterrupted` whose
    ``result`` is the run so far: the model after the last finished round, and its history.
    """
    _check(rounds, local_epochs, batch_size, fraction, min_clients, loss, optimizer)
    strategy, runner = resolve(aggregation), resolve_engine(engine)
    global_model = copy.deepcopy(model)
    strategy.start(global_model)
    gen = torch.Generator().manual_seed(seed) if seed is not None else secure_generator()
    history, workers = History(), data.workers
    alive = {w.name: True for w in workers}
    run_id = os.urandom(4).hex()
    structure = module_to_spec(global_model)  # traced once; each round sends new weights
    training_options = {"epochs": local_epochs, "batch_size": batch_size, "lr": lr,
                        "loss": loss, "optimizer": optimizer, "prox_mu": prox_mu}
    try:
        for rnd in range(1, rounds + 1):
            start, before = time.perf_counter(), runner.bytes_seen(workers)
            sampled = strategy.sample(data.clients, fraction, gen)
            chosen = [c for c in sampled if alive[c.worker.name]]  # the dead cannot report
            spec = {**structure, "state": {k: v.detach()
                                           for k, v in global_model.state_dict().items()}}
            label = f"{run_id}/{rnd}"
            options = {"spec": spec, **training_options, **strategy.fit_options(label),
                       "seed": None if seed is None else seed * 1_000_003 + rnd}
            replies, events = runner.train(data.by_worker(chosen), options, round=rnd, alive=alive)
            reported = _reported(replies, sampled, min_clients, alive, events, rnd)
            updates = RoundUpdates(rnd, replies, {w.name: w for w in workers}, strategy.noise_std,
                                   events, label=label)
            record: dict[str, Any] = {"clients": reported, "aggregation": strategy.describe()}
            try:
                total = _total(strategy, updates, global_model)
            except RoundAborted as exc:
                events.append(f"round aborted, model unchanged: {exc}")
            else:
                strategy.step(global_model, strategy.average(total, updates,
                                                             fraction * len(data.clients)))
                record.update(sampled=len(sampled), **_client_stats(replies))
                if data.test is not None:
                    record.update(training.evaluate(global_model, *data.test, loss))
                record.update(strategy.metrics(rnd, fraction))
                record["bytes_moved"] = runner.bytes_seen(workers) - before
            record["seconds"] = time.perf_counter() - start
            history.append(rnd, **record)
            for text in events:
                history.event(rnd, text)
            if callback is not None and "sampled" in record:
                callback({"round": rnd, "rounds": rounds, **record})
    except KeyboardInterrupt:  # the model moves only after a whole round is aggregated
        done = FederatedRun(global_model, history)
        raise TrainingInterrupted(f"round {len(history) + 1} of {rounds}", done) from None
    return FederatedRun(global_model, history)


def _reported(replies: dict[str, dict[str, Any]], sampled: list[Any], min_clients: int,
              alive: dict[str, bool], events: list[str], rnd: int) -> int:
    """How many clients reported; an error if too few did."""
    reported = sum(len(r["clients"]) for r in replies.values())
    if reported < min(min_clients, len(sampled)) or (sampled and not replies):
        dead = sorted(n for n, ok in alive.items() if not ok)
        raise RuntimeError(
            f"round {rnd}: only {reported} of {len(sampled)} sampled clients reported "
            f"(min_clients={min_clients}); workers down: {', '.join(dead)}. "
            f"{'; '.join(events)} Restart the workers that died, or lower min_clients.")
    return reported


def _total(strategy: Strategy, updates: RoundUpdates, model: nn.Module) -> torch.Tensor:
    """The strategy's (noisy) sum; a round that sampled nobody (DP's Poisson sampling)
    moves by the noise alone."""
    with tracing.round_label(f"round {updates.round}: {strategy.describe()}"):
        if updates.replies:
            return strategy.total(updates)
    updates.events.append("no client was sampled this round (Poisson sampling): the model "
                          "moved by the noise alone")
    return gaussian_noise(flat_weights(model).shape, strategy.noise_std)


def _client_stats(replies: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Training loss (weighted by rows) and median update norm, where clients reported them
    (only with the notebook as a plain server: secure and DP runs keep them private)."""
    recs = [c for r in replies.values() for c in r["clients"] if "loss" in c]
    if not recs:
        return {}
    rows = sum(c["rows"] for c in recs)
    norms = sorted(c["norm"] for c in recs)
    return {"loss": sum(c["loss"] * c["rows"] for c in recs) / max(rows, 1),
            "median_norm": norms[len(norms) // 2]}


def _check(rounds: int, local_epochs: int, batch_size: int, fraction: float, min_clients: int,
           loss: str, optimizer: str) -> None:
    for name, value in (("rounds", rounds), ("local_epochs", local_epochs),
                        ("batch_size", batch_size), ("min_clients", min_clients)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise ValueError(f"fraction (of clients sampled per round) must be in (0, 1], "
                         f"got {fraction}")
    training.loss_function(loss)
    if optimizer not in training.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                         f"{sorted(training.OPTIMIZERS)}")
