"""Federated averaging: the model travels to the data, trains there, comes back averaged.

Each round the notebook samples clients, sends the global model (as an allowlisted graph
plus weights, never a pickle) to the workers holding them, and every worker trains its
clients' copies natively, all workers at once. Only updates come back, aggregated as
the chosen :mod:`~ppdl_nb.fl.aggregation` allows, and the averaged update moves the
global model. Options: FedProx (``prox_mu``), client sampling (``fraction``), DP-FedAvg
(``noise_multiplier`` and ``max_update_norm``: user-level privacy, accounted with
:mod:`ppdl_nb.dp.accounting`), and fault tolerance: a worker that dies mid-round is
recorded and the round completes with the rest, if at least ``min_clients`` reported.

>>> import ppdl_nb, torch
>>> workers = [ppdl_nb.VirtualWorker(n) for n in ("alice", "bob")]
>>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
>>> fed = FederatedDataset.from_tensors(x, y, workers, test=(x, y))
>>> run = fit_federated(torch.nn.Linear(4, 2), fed, rounds=2, batch_size=16)
>>> len(run.history)
2
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

from ppdl_nb.dp.accounting import epsilon as epsilon_of
from ppdl_nb.dp.fit import LOSSES, evaluate
from ppdl_nb.dp.noise import gaussian_noise
from ppdl_nb.dp.noise import generator as secure_generator
from ppdl_nb.fl.aggregation import AGGREGATIONS, RoundAborted, RoundUpdates
from ppdl_nb.fl.dataset import Client, FederatedDataset
from ppdl_nb.fl.history import History
from ppdl_nb.fl.local import OPTIMIZERS, apply_update, flat_weights
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.concurrent import outcomes
from ppdl_nb.workers.core.modules import module_to_spec

__all__ = ["FederatedRun", "fit_federated"]


@dataclass
class FederatedRun:
    """The trained global model and its per-round :class:`History`."""

    model: nn.Module
    history: History

    def __repr__(self) -> str:
        return f"FederatedRun({type(self.model).__name__}, {self.history!r})"


def _sample(clients: list[Client], fraction: float, dp: bool, gen: torch.Generator
            ) -> list[Client]:
    if dp:  # Poisson sampling: what the accountant assumes
        keep = torch.rand(len(clients), generator=gen) < fraction
        return [c for c, k in zip(clients, keep.tolist(), strict=True) if k]
    count = max(1, round(fraction * len(clients)))
    order = torch.randperm(len(clients), generator=gen)[:count].sort().values
    return [clients[i] for i in order.tolist()]


def _evaluate(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor], loss: str
              ) -> dict[str, float]:
    return evaluate(model, *test, LOSSES[loss])


def _bytes_seen(workers: list[Any]) -> int:
    """Bytes this notebook received from the workers plus bytes the workers received."""
    total = 0
    for w in workers:
        try:
            total += int(w.info()["bytes_in"])
        except ConnectionError:
            pass
        total += w.bytes_received
    return total


def fit_federated(
    model: nn.Module,
    data: FederatedDataset,
    *,
    rounds: int,
    local_epochs: int = 1,
    batch_size: int = 32,
    lr: float = 0.1,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    fraction: float = 1.0,
    prox_mu: float = 0.0,
    aggregation: str = "mean",
    aggregator: Any = None,
    threshold: int | None = None,
    min_clients: int = 1,
    noise_multiplier: float | None = None,
    max_update_norm: float | None = None,
    delta: float = 1e-5,
    server_lr: float = 1.0,
    seed: int | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> FederatedRun:
    """Train a copy of ``model`` with FedAvg over ``data``'s clients; return it and a History.

    DP-FedAvg: give ``noise_multiplier`` and ``max_update_norm``. Each sampled client's
    update is clipped to ``max_update_norm``; the sum gets Gaussian noise of std
    ``noise_multiplier * max_update_norm`` and is divided by the expected number of
    clients; ``epsilon`` (user-level, at ``delta``) is reported per round.

    Whom DP-FedAvg protects: the released model (and its per-round versions) changes
    little whether or not any one client took part, so whoever sees the model (the
    notebook, other clients, the world) learns little about one client's rows. With
    ``"mean"`` the notebook adds the noise and sees the un-noised sum first; with
    ``"trusted"`` the aggregator does; with ``"secure"`` and ``"secagg"`` the noise is
    added inside the shares / masked updates, so no single party ever sees the sum
    without noise. Under DP and secure aggregation workers report no per-client losses
    or norms, which would leak around the guarantee.

    ``aggregation`` is one of :data:`~ppdl_nb.fl.aggregation.AGGREGATIONS`: ``"mean"``
    (the notebook sums), ``"trusted"`` (needs ``aggregator=`` a worker), ``"secure"``
    (additive shares among the workers) or ``"secagg"`` (pairwise masks; ``threshold``
    clients must send masked updates, default more than half).
    """
    _check(rounds, local_epochs, batch_size, fraction, min_clients, loss, optimizer,
           aggregation)
    dp = noise_multiplier is not None or max_update_norm is not None
    if dp and (noise_multiplier is None or max_update_norm is None or noise_multiplier < 0
               or not max_update_norm > 0):
        raise ValueError("DP-FedAvg needs both noise_multiplier= (>= 0) and "
                         "max_update_norm= (> 0), the L2 bound on one client's update")
    agg_cls = AGGREGATIONS[aggregation]
    agg = agg_cls(aggregator=aggregator, threshold=threshold)
    global_model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed) if seed is not None else secure_generator()
    history = History()
    workers = data.workers
    alive = {w.name: True for w in workers}
    run_id = os.urandom(4).hex()
    structure = module_to_spec(global_model)  # traced once; each round sends new weights
    structure_size = flat_weights(global_model).shape
    for rnd in range(1, rounds + 1):
        start = time.perf_counter()
        before = _bytes_seen(workers)
        sampled = _sample(data.clients, fraction, dp, gen)
        chosen = [c for c in sampled if alive[c.worker.name]]  # the dead cannot report
        spec = {**structure, "state": {k: v.detach()
                                       for k, v in global_model.state_dict().items()}}
        params = {"spec": spec, "epochs": local_epochs, "batch_size": batch_size, "lr": lr,
                  "loss": loss, "optimizer": optimizer, "prox_mu": prox_mu,
                  "clip": max_update_norm if dp else None, "keep": agg.keep,
                  "allow": agg.allow(),
                  "seed": None if seed is None else seed * 1_000_003 + rnd,
                  "hold": f"{run_id}/{rnd}" if agg.hold else None,
                  "report": agg.name == "mean" and not dp}
        replies, events = _train_round(data.by_worker(chosen), params, rnd, alive)
        reported = sum(len(r["clients"]) for r in replies.values())
        if reported < min(min_clients, len(sampled)) or (sampled and not replies):
            dead = sorted(n for n, ok in alive.items() if not ok)
            raise RuntimeError(
                f"round {rnd}: only {reported} of {len(sampled)} sampled clients reported "
                f"(min_clients={min_clients}); workers down: {', '.join(dead)}. "
                f"{'; '.join(events)} Restart the workers that died, or lower min_clients.")
        noise_std = noise_multiplier * max_update_norm if dp else 0.0
        updates = RoundUpdates(rnd, replies, {w.name: w for w in workers}, noise_std,
                               events, label=f"{run_id}/{rnd}")
        try:
            with tracing.round_label(f"round {rnd}: {agg.name} aggregation"):
                if replies:
                    total = agg.total(updates)
                else:  # DP's Poisson sampling drew nobody: the step is noise alone
                    total = gaussian_noise(structure_size, noise_std)
                    events.append("no client was sampled this round (Poisson sampling): "
                                  "the model moved by the noise alone")
        except RoundAborted as exc:
            history.append(rnd, clients=reported, aggregation=agg.describe(),
                           seconds=time.perf_counter() - start)
            for text in [*events, f"round aborted, model unchanged: {exc}"]:
                history.event(rnd, text)
            continue
        # FedAvg divides by the rows that trained; DP-FedAvg by the expected count of
        # clients (a data-independent denominator, so the noise calibration holds)
        denom = fraction * len(data.clients) if dp else updates.weight
        apply_update(global_model, server_lr * total / denom)
        record: dict[str, Any] = {"clients": reported, "sampled": len(sampled),
                                  "aggregation": agg.describe(), **_client_stats(replies)}
        if data.test is not None:
            record.update(_evaluate(global_model, data.test, loss))
        if dp:
            record["epsilon"] = epsilon_of(noise_multiplier=noise_multiplier,
                                           sample_rate=fraction, steps=rnd, delta=delta)
        record["bytes_moved"] = _bytes_seen(workers) - before
        record["seconds"] = time.perf_counter() - start
        history.append(rnd, **record)
        for text in events:
            history.event(rnd, text)
        if callback is not None:
            callback({"round": rnd, "rounds": rounds, **record})
    return FederatedRun(global_model, history)


def _train_round(groups: dict[str, list[Client]], params: dict[str, Any], rnd: int,
                 alive: dict[str, bool]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every worker trains its sampled clients at once; replies, and who dropped out."""
    calls = [(cs[0].worker, "fl.train",
              {"clients": [[c.id, Ref(c.x.id_at_location), Ref(c.y.id_at_location)]
                           for c in cs], **params})
             for cs in groups.values()]
    with tracing.round_label(f"round {rnd}: local training"):
        done = outcomes(calls)
    replies, events = {}, []
    for (name, cs), (ok, value) in zip(groups.items(), done, strict=True):
        if ok:
            replies[name] = value
        elif isinstance(value, ConnectionError):  # WorkerUnavailableError, timeouts
            alive[name] = False
            events.append(f"{name} dropped out ({type(value).__name__}); its "
                          f"{len(cs)} clients did not report")
        else:
            raise value
    return replies, events


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
           loss: str, optimizer: str, aggregation: str) -> None:
    for name, value in (("rounds", rounds), ("local_epochs", local_epochs),
                        ("batch_size", batch_size), ("min_clients", min_clients)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise ValueError(f"fraction (of clients sampled per round) must be in (0, 1], "
                         f"got {fraction}")
    for table, key, what in ((LOSSES, loss, "loss"), (OPTIMIZERS, optimizer, "optimizer"),
                             (AGGREGATIONS, aggregation, "aggregation")):
        if key not in table:
            raise ValueError(f"unknown {what} {key!r}; choose one of {sorted(table)}")
