"""How a round's updates become one averaged update, and who sees what on the way.

An aggregation is a *strategy* object (as in Flower): it says which clients a round
samples, what the workers do with their clients' updates (reply, keep them private,
keep each apart), how the sum is formed, and how the global model moves. Options that
belong to one aggregation live on it: ``Trusted(aggregator=w)``, ``SecAgg(threshold=4)``.
Each is registered under its class name in lower case, so a string names it too:

``mean`` (:class:`Mean`)
    The notebook is the server: each worker replies with the sum of its clients' updates.
    Simple and fast; the notebook sees every worker's sum.
``trusted`` (:class:`Trusted`)
    Workers keep their sums private, fetchable only by an aggregator worker; the notebook
    moves them there (worker to worker) and receives the mean. The notebook never sees
    an individual sum; the aggregator does, so it must be trusted.
``secure`` (:class:`Secure`)
    Workers split their sums into additive shares held by the reporting workers; each
    holder hands the notebook only its sum of shares. Nobody sees an individual sum.
    With DP, each holder adds a share of the noise, so no single party sees the
    un-noised total either.
``secagg`` (:class:`SecAgg`)
    Bonawitz et al.'s pairwise-mask protocol, one SecAgg client per logical client
    (:mod:`ppdl_nb.fl.secagg`, run by :mod:`ppdl_nb.fl.secagg_steps`). The notebook
    is the server and learns only the sum; the round completes, still revealing only the
    sum, when clients drop out before sending their masked update, as long as at least
    ``threshold`` (default: more than half of the round's clients) sent theirs.

Wrappers around any of these (DP-FedAvg, server-side optimizers) are in
:mod:`ppdl_nb.fl.strategies`.

>>> {"mean", "trusted", "secure", "secagg"} <= set(AGGREGATIONS)
True
>>> make_aggregation("secagg", threshold=4)
SecAgg(threshold=4)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ppdl_nb import mpc
from ppdl_nb.dp import noise
from ppdl_nb.fl import secagg_steps, worker_steps
from ppdl_nb.fl.dataset import Client
from ppdl_nb.fl.local import FRAC_BITS, apply_update
from ppdl_nb.fl.secagg import SecAggAbort, SecAggServer, default_threshold
from ppdl_nb.tensors.pointer import wrap_reply
from ppdl_nb.workers.core.codec import Ref

__all__ = ["AGGREGATIONS", "Aggregation", "Mean", "RoundAborted", "RoundUpdates", "SecAgg",
           "Secure", "Strategy", "Trusted", "aggregation", "make_aggregation", "resolve"]


class RoundAborted(RuntimeError):
    """A round could not be aggregated (a share holder died mid-protocol); retry the round."""


@dataclass
class RoundUpdates:
    """What a round's training left: per worker, its reply from ``fl.train``."""

    round: int
    replies: dict[str, dict[str, Any]]
    workers: dict[str, Any]
    noise_std: float = 0.0  # std of Gaussian noise the SUM must carry (DP), 0 without DP
    events: list[str] = field(default_factory=list)
    label: str = ""  # unique per round and run: names what workers hold for it
    weight: float = 0.0  # rows (or, under DP, clients) behind the sum; set from the replies

    def __post_init__(self) -> None:
        self.weight = float(sum(r["weight"] for r in self.replies.values()))


#: name -> strategy class; the name is the class's name in lower case
AGGREGATIONS: dict[str, type[Strategy]] = {}


def aggregation(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register ``cls`` under its lower-cased name (a taken name is an error)."""
    name = cls.__name__.lower()
    if name in AGGREGATIONS:
        raise ValueError(f"aggregation {name!r} is already registered "
                         f"({AGGREGATIONS[name].__module__})")
    AGGREGATIONS[name] = cls
    cls.name = name
    return cls


class Strategy:
    """What varies between federated algorithms, asked by :func:`~ppdl_nb.fl.fit_federated`.

    ``sample`` picks a round's clients; ``fit_options`` tells the workers what to do with
    their clients' updates; ``total`` forms the (noisy) sum; ``average`` divides it;
    ``step`` moves the global model; ``metrics`` adds to the round's record.
    """

    name = "?"
    noise_std = 0.0  # std of the Gaussian noise the sum must carry (DP-FedAvg sets it)

    def start(self, model: nn.Module) -> None:
        """A run begins (server optimizers reset their state here)."""

    def sample(self, clients: list[Client], fraction: float, gen: torch.Generator
               ) -> list[Client]:
        """A fixed share of the clients, chosen at random."""
        count = max(1, round(fraction * len(clients)))
        order = torch.randperm(len(clients), generator=gen)[:count].sort().values
        return [clients[i] for i in order.tolist()]

    def fit_options(self, label: str) -> dict[str, Any]:
        """Keyword arguments for the workers' ``fl.train`` (besides model and training)."""
        raise NotImplementedError

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        """The sum of the round's updates, with ``updates.noise_std`` noise if asked."""
        raise NotImplementedError

    def average(self, total: torch.Tensor, updates: RoundUpdates, expected_clients: float
                ) -> torch.Tensor:
        """FedAvg divides by the rows behind the sum."""
        return total / updates.weight

    def step(self, model: nn.Module, update: torch.Tensor) -> None:
        """Move the global model by the averaged update (plain FedAvg: add it)."""
        apply_update(model, update)

    def metrics(self, rounds_done: int, sample_rate: float) -> dict[str, float]:
        return {}

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Aggregation(Strategy):
    """Base of the four ways to sum: ``keep`` says whether workers keep their sums."""

    keep = True
    hold = False  # workers keep each client's update apart (pairwise masking)
    reports = False  # workers may report per-client loss and norm

    def allow(self) -> list[str]:
        """Who may fetch a worker's kept sum."""
        return []

    def fit_options(self, label: str) -> dict[str, Any]:
        return {"keep": self.keep, "allow": self.allow(), "hold": label if self.hold else None,
                "report": self.reports}


@aggregation
class Mean(Aggregation):
    """The notebook sums what the workers reply (it sees each worker's sum)."""

    keep = False
    reports = True

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        total = sum(r["update"] for r in updates.replies.values())
        if updates.noise_std:
            total = total + noise.gaussian_noise(total.shape, updates.noise_std)
        return total


@aggregation
class Trusted(Aggregation):
    """Workers' sums go to ``aggregator`` (a worker), which returns only the total."""

    def __init__(self, aggregator: Any = None) -> None:
        if aggregator is None:
            raise ValueError("aggregation 'trusted' needs aggregator=<a worker>, e.g. "
                             "Trusted(aggregator=w) with w a worker launched for the purpose "
                             "that holds no client data")
        self.aggregator = aggregator

    def allow(self) -> list[str]:
        return [self.aggregator.name]

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        refs = []
        for name, reply in updates.replies.items():
            worker = updates.workers[name]
            ptr = wrap_reply(worker, reply["update"], worker.context)
            ptr.move(self.aggregator)
            ptr.disown()  # the aggregator frees it once summed
            refs.append(Ref(ptr.id_at_location))
        return worker_steps.aggregate.on(self.aggregator, updates=refs,
                                         noise_std=updates.noise_std)

    def describe(self) -> str:
        return f"trusted aggregator {self.aggregator.name}"

    def __repr__(self) -> str:
        return f"Trusted(aggregator={self.aggregator.name!r})"


@aggregation
class Secure(Aggregation):
    """Additive shares among the reporting workers; the notebook adds the holders' sums."""

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        names = sorted(updates.replies)
        if len(names) < 2:
            raise RoundAborted(f"secure aggregation needs >= 2 reporting workers, got {names}")
        label = updates.label
        for name in names:  # one at a time: each share step calls the other holders
            ref = Ref(updates.replies[name]["update"]["id"])
            try:
                worker_steps.share.on(updates.workers[name], round=label, update=ref,
                                      holders=names)
            except ConnectionError as exc:
                raise RoundAborted(f"{name} dropped out while sharing its update: {exc}") from None
        # noise in shares: each of k holders adds std s/sqrt(k-1), so the total carries
        # more than s and any one holder, knowing its own part, still faces std s
        per_holder = updates.noise_std / math.sqrt(len(names) - 1) if updates.noise_std else 0.0
        sums = []
        for name in names:
            try:
                sums.append(worker_steps.sum_shares.on(updates.workers[name], round=label,
                                                       senders=names, noise_std=per_holder))
            except ConnectionError as exc:
                raise RoundAborted(f"share holder {name} dropped out: {exc}") from None
        return mpc.decode(mpc.reconstruct(sums), FRAC_BITS).float()

    def describe(self) -> str:
        return "secure sum (additive shares among the workers)"


@aggregation
class SecAgg(Aggregation):
    """Bonawitz et al.: masked updates whose masks cancel in the sum; dropouts recovered.

    ``threshold``: how many of a round's clients must send masked updates (default: more
    than half of them).
    """

    keep = False
    hold = True

    def __init__(self, threshold: int | None = None) -> None:
        if threshold is not None and (not isinstance(threshold, int) or threshold < 2):
            raise ValueError(f"SecAgg's threshold must be an integer >= 2, got {threshold!r}")
        self.threshold = threshold

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        rows = {f"c{c['client']}": c for r in updates.replies.values() for c in r["clients"]}
        n = len(rows)
        t = self.threshold or default_threshold(n)
        if not 2 <= t <= n:
            raise RoundAborted(f"pairwise masking needs >= 2 clients and 2 <= threshold <= "
                               f"{n}; got {n} clients, threshold {t}")
        try:
            total, request = _pairwise_rounds(updates, n, t)
        except SecAggAbort as exc:
            raise RoundAborted(str(exc)) from None
        if request["dropped"]:
            updates.events.append(f"clients {', '.join(request['dropped'])} dropped before sending "
                                  "masked updates; their masks were removed, the sum is of "
                                  f"the {len(request['survivors'])} others")
        # the sum holds only the survivors: so does the weight it is divided by
        updates.weight = float(sum(rows[c]["weight"] for c in request["survivors"]))
        return total

    def describe(self) -> str:
        return "pairwise masks (Bonawitz et al.)"

    def __repr__(self) -> str:
        return f"SecAgg(threshold={self.threshold})"


def _pairwise_rounds(updates: RoundUpdates, n: int, t: int
                     ) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """The four SecAgg rounds with the notebook as server; the sum and the unmask request."""
    workers = {name: updates.workers[name] for name in sorted(updates.replies)}
    server, label = SecAggServer(n, t), updates.label

    def each(step: Any, per_worker: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for name, w in list(workers.items()):
            try:
                out[name] = step.on(w, round=label, **per_worker(name))
            except ConnectionError as exc:
                updates.events.append(f"{name} dropped out during {step.name} ({exc})")
                del workers[name]  # its clients are gone for the rest of the round
        return out

    adverts = each(secagg_steps.keys, lambda _: {"n_clients": n, "threshold": t})
    public = server.collect_keys([a for got in adverts.values() for a in got])
    outboxes = each(secagg_steps.share, lambda _: {"public_keys": public})
    inboxes = server.route_shares({c: box for got in outboxes.values() for c, box in got.items()})
    # DP: each client adds std s/sqrt(t-1); >= t survivors carry >= s in total,
    # and any one client, knowing its own part, still faces s
    per_client = updates.noise_std / math.sqrt(t - 1) if updates.noise_std else 0.0
    masked = each(secagg_steps.masked, lambda name: {
        "inboxes": {a["id"]: inboxes.get(a["id"], {}) for a in adverts[name]},
        "noise_std": per_client})
    request = server.collect_masked([m for got in masked.values() for m in got])
    answers = each(secagg_steps.unmask, lambda _: request)
    return server.finish([r for got in answers.values() for r in got]).float(), request


def make_aggregation(name: str, **options: Any) -> Strategy:
    """The registered aggregation ``name`` with ``options``, checked against what it takes."""
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {sorted(AGGREGATIONS)}")
    cls = AGGREGATIONS[name]
    takes = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(f"aggregation {name!r} takes no option {', '.join(unknown)} (it takes: "
                         f"{', '.join(takes) or 'none'})")
    return cls(**options)


def resolve(strategy: str | Strategy) -> Strategy:
    """A strategy object from a name (``"mean"``, ``"secagg"``, ...) or the object itself."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str):
        return make_aggregation(strategy)
    raise TypeError(f"aggregation must be a name from {sorted(AGGREGATIONS)} or a strategy "
                    f"object such as SecAgg(threshold=4), got {type(strategy).__name__}")
