"""How a round's updates become one averaged update, and who sees what on the way.

Each aggregation is a class in :data:`AGGREGATIONS` (``@aggregation("name")``):

``mean``
    The notebook is the server: each worker replies with the sum of its clients' updates.
    Simple and fast; the notebook sees every worker's sum.
``trusted``
    Workers keep their sums private, fetchable only by an aggregator worker; the notebook
    moves them there (worker to worker) and receives the mean. The notebook never sees
    an individual sum; the aggregator does, so it must be trusted.
``secure``
    Workers split their sums into additive shares held by the reporting workers; each
    holder hands the notebook only its sum of shares. Nobody sees an individual sum.
    With DP, each holder adds a share of the noise, so no single party sees the
    un-noised total either.
``secagg``
    Bonawitz et al.'s pairwise-mask protocol, one SecAgg client per logical client
    (:mod:`ppdl_nb.fl.secagg`, run by :mod:`ppdl_nb.fl.secagg_steps`). The notebook
    is the server and learns only the sum; the round completes, still revealing only the
    sum, when clients drop out before sending their masked update, as long as at least
    ``threshold`` (default: more than half of the round's clients) sent theirs.

>>> sorted(AGGREGATIONS)[:3]
['mean', 'secagg', 'secure']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.dp import noise
from ppdl_nb.fl.local import FRAC_BITS
from ppdl_nb.tensors.pointer import _wrap
from ppdl_nb.workers.core.codec import Ref

__all__ = ["AGGREGATIONS", "Aggregation", "RoundAborted", "RoundUpdates", "aggregation"]


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


AGGREGATIONS: dict[str, Callable[..., Aggregation]] = {}


def aggregation(name: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        AGGREGATIONS[name] = cls
        cls.name = name
        return cls

    return register


class Aggregation:
    """Base: ``keep`` says whether workers keep their sums; ``total`` returns the (noisy) sum."""

    name = "?"
    keep = True
    hold = False  # workers keep each client's update apart (pairwise masking)

    def __init__(self, *, aggregator: Any = None, threshold: int | None = None) -> None:
        self.aggregator, self.threshold = aggregator, threshold

    def allow(self) -> list[str]:
        """Who may fetch a worker's kept sum."""
        return []

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


@aggregation("mean")
class NotebookMean(Aggregation):
    keep = False

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        total = sum(r["update"] for r in updates.replies.values())
        if updates.noise_std:
            total = total + noise.gaussian_noise(total.shape, updates.noise_std)
        return total


@aggregation("trusted")
class TrustedAggregator(Aggregation):
    def __init__(self, *, aggregator: Any = None, threshold: int | None = None) -> None:
        super().__init__(aggregator=aggregator, threshold=threshold)
        if aggregator is None:
            raise ValueError("aggregation='trusted' needs aggregator=<a worker>, e.g. a worker "
                             "launched for the purpose that holds no client data")
    def allow(self) -> list[str]:
        return [self.aggregator.name]

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        refs = []
        for name, reply in updates.replies.items():
            worker = updates.workers[name]
            ptr = _wrap(worker, reply["update"], worker.context)
            ptr.move(self.aggregator)
            ptr.disown()  # the aggregator frees it once summed
            refs.append(Ref(ptr.id_at_location))
        return self.aggregator.step("fl.aggregate", updates=refs, noise_std=updates.noise_std)

    def describe(self) -> str:
        return f"trusted aggregator {self.aggregator.name}"


@aggregation("secure")
class SecureSum(Aggregation):
    """Additive shares among the reporting workers; the notebook adds the holders' sums."""

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        names = sorted(updates.replies)
        if len(names) < 2:
            raise RoundAborted(f"secure aggregation needs >= 2 reporting workers, got {names}")
        label = updates.label
        for name in names:  # one at a time: each share step calls the other holders
            ref = Ref(updates.replies[name]["update"]["id"])
            try:
                updates.workers[name].step("fl.share", round=label, update=ref, holders=names)
            except ConnectionError as exc:
                raise RoundAborted(f"{name} dropped out while sharing its update: {exc}") from None
        # noise in shares: each of k holders adds std s/sqrt(k-1), so the total carries
        # more than s and any one holder, knowing its own part, still faces std s
        per_holder = updates.noise_std / math.sqrt(len(names) - 1) if updates.noise_std else 0.0
        sums = []
        for name in names:
            try:
                sums.append(updates.workers[name].step("fl.sum_shares", round=label,
                                                       senders=names, noise_std=per_holder))
            except ConnectionError as exc:
                raise RoundAborted(f"share holder {name} dropped out: {exc}") from None
        return mpc.decode(mpc.reconstruct(sums), FRAC_BITS).float()

    def describe(self) -> str:
        return "secure sum (additive shares among the workers)"


@aggregation("secagg")
class PairwiseMasks(Aggregation):
    """Bonawitz et al.: masked updates whose masks cancel in the sum; dropouts recovered."""

    keep = False
    hold = True

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        from ppdl_nb.fl.secagg import SecAggAbort, SecAggServer, default_threshold

        workers = {n: updates.workers[n] for n in sorted(updates.replies)}
        rows = {f"c{c['client']}": c for r in updates.replies.values() for c in r["clients"]}
        n = len(rows)
        t = self.threshold or default_threshold(n)
        if not 2 <= t <= n:
            raise RoundAborted(f"pairwise masking needs >= 2 clients and 2 <= threshold <= "
                               f"{n}; got {n} clients, threshold {t}")
        server = SecAggServer(n, t)
        label = updates.label

        def each(step: str, per_worker: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
            out = {}
            for name, w in list(workers.items()):
                try:
                    out[name] = w.step(step, round=label, **per_worker(name))
                except ConnectionError as exc:
                    updates.events.append(f"{name} dropped out during {step} ({exc})")
                    del workers[name]  # its clients are gone for the rest of the round
            return out

        try:
            adverts = each("secagg.keys", lambda _: {"n_clients": n, "threshold": t})
            public = server.collect_keys([a for got in adverts.values() for a in got])
            outboxes = each("secagg.share", lambda _: {"public_keys": public})
            inboxes = server.route_shares({c: box for got in outboxes.values()
                                           for c, box in got.items()})
            # DP: each client adds std s/sqrt(t-1); >= t survivors carry >= s in total,
            # and any one client, knowing its own part, still faces s
            per_client = updates.noise_std / math.sqrt(t - 1) if updates.noise_std else 0.0
            masked = each("secagg.masked", lambda name: {
                "inboxes": {c: inboxes.get(c, {}) for c in adverts_of(adverts[name])},
                "noise_std": per_client})
            request = server.collect_masked([m for got in masked.values() for m in got])
            answers = each("secagg.unmask", lambda _: request)
            total = server.finish([r for got in answers.values() for r in got]).float()
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


def adverts_of(adverts: list[dict[str, Any]]) -> list[str]:
    return [a["id"] for a in adverts]
