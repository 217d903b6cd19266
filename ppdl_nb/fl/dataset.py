"""Federated datasets: clients' rows live on workers; the notebook holds pointers and counts.

A :class:`FederatedDataset` is a list of logical clients, each a slice of a dataset held
(private) by one worker. Many clients can share a worker, which is how a course machine
simulates 100 phones over 3 kernels. The notebook sees each client's size and label
counts, enough to weight the average and to draw the split, and nothing else.

Two ways in:

* :meth:`FederatedDataset.load`: each worker loads a known dataset itself and keeps only
  its clients' rows (the realistic path; the data never passes through the notebook).
* :meth:`FederatedDataset.from_tensors`: the notebook splits tensors it holds and sends
  each part to its worker (PySyft's ``federate``; handy for teaching with your own data).

>>> import ppdl_nb, torch
>>> alice, bob = ppdl_nb.VirtualWorker("alice"), ppdl_nb.VirtualWorker("bob")
>>> fed = FederatedDataset.from_tensors(torch.randn(40, 3), torch.arange(40) % 2,
...                                     [alice, bob], clients_per_worker=2)
>>> fed.sizes
[10, 10, 10, 10]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ppdl_nb import datasets
from ppdl_nb.fl import worker_steps
from ppdl_nb.fl.partition import partition, plot_partition
from ppdl_nb.tensors.pointer import PointerTensor, send, wrap_reply

__all__ = ["Client", "FederatedDataset", "public_split"]


def public_split(n_rows: int, test_rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test row indices from a public seed (workers and notebook agree on them)."""
    if not 0 <= test_rows < n_rows:
        raise ValueError(f"test_rows must be in [0, {n_rows}), got {test_rows}")
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(int(seed)))
    return order[test_rows:], order[:test_rows]


@dataclass
class Client:
    """One logical client: its rows on ``worker``, behind pointers the notebook cannot open."""

    id: int
    worker: Any
    x: PointerTensor
    y: PointerTensor
    rows: int
    labels: list[int]

    def __repr__(self) -> str:
        return f"Client({self.id} on {self.worker.name}, {self.rows} rows)"


class FederatedDataset:
    """Logical clients spread over workers, plus an optional public test split."""

    def __init__(self, clients: Sequence[Client], *, name: str = "data",
                 test: tuple[torch.Tensor, torch.Tensor] | None = None,
                 scheme: str = "iid") -> None:
        if not clients:
            raise ValueError("a federated dataset needs at least one client")
        self.clients = list(clients)
        self.name, self.test, self.scheme = name, test, scheme

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, name: str, workers: Sequence[Any], *, clients_per_worker: int = 1,
             scheme: str = "iid", alpha: float = 0.5, shards_per_client: int = 2,
             seed: int = 0, test_rows: int = 1000,
             allow_plain_updates: bool = False) -> FederatedDataset:
        """Each worker loads dataset ``name`` and keeps its clients' rows, private.

        ``allow_plain_updates``: the data owners' opt-in (release row ``plain_updates``)
        to let updates trained on their rows leave in the clear (plain FedAvg ``"mean"``,
        a ``Trusted`` aggregator). Off by default: then only secure aggregations
        (``Secure``, ``SecAgg``, ``HE``) and DP-FedAvg over them may train on it, and a
        plain one is refused with a PermissionError that says so.

        The test split (``test_rows`` rows chosen by ``seed``) is public: the notebook
        loads it itself to evaluate the global model.
        """
        workers = _check_workers(workers, clients_per_worker)
        n_clients = len(workers) * clients_per_worker
        clients = []
        for w, ids in zip(workers, _assign(n_clients, len(workers)), strict=True):
            replies = worker_steps.load.on(w, dataset=name, n_clients=n_clients, clients=ids,
                                           scheme=scheme, alpha=alpha,
                                           shards_per_client=shards_per_client, seed=seed,
                                           test_rows=test_rows,
                                           allow_plain_updates=allow_plain_updates)
            clients += [_client(w, r) for r in replies]
        test = None
        if test_rows:
            data = datasets.load_named(name)
            _, test_idx = public_split(len(data.y), test_rows, seed)
            test = (data.x[test_idx], data.y[test_idx])
        clients.sort(key=lambda c: c.id)
        return cls(clients, name=name, test=test, scheme=scheme)

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, workers: Sequence[Any], *,
                     clients_per_worker: int = 1, scheme: str = "iid", alpha: float = 0.5,
                     shards_per_client: int = 2, seed: int | None = None,
                     private: bool = True, allow_plain_updates: bool = True,
                     test: tuple[torch.Tensor, torch.Tensor] | None = None) -> FederatedDataset:
        """Split ``(x, y)`` held here among clients and send each part to its worker.

        ``allow_plain_updates``: as in :meth:`load`. On by default here, unlike
        :meth:`load`: the rows are the caller's own (it holds them in the clear), so
        sending them is its owner's choice; pass False to play owners who did not opt in."""
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        workers = _check_workers(workers, clients_per_worker)
        n_clients = len(workers) * clients_per_worker
        if torch.is_floating_point(y):  # regression: no labels to split by
            parts = partition(torch.zeros(len(y), dtype=torch.long), n_clients, scheme="iid",
                              seed=seed)
        else:
            parts = partition(y, n_clients, scheme=scheme, alpha=alpha,
                              shards_per_client=shards_per_client, seed=seed)
        clients = []
        for w, ids in zip(workers, _assign(n_clients, len(workers)), strict=True):
            for cid in ids:
                idx = parts[cid]
                xs, ys = x[idx].contiguous(), y[idx].contiguous()
                labels = [] if torch.is_floating_point(ys) else torch.bincount(ys).tolist()
                opt = {"private": private, "allow_plain_updates": allow_plain_updates}
                clients.append(Client(cid, w, send(xs, w, **opt), send(ys, w, **opt),
                                      len(idx), labels))
        clients.sort(key=lambda c: c.id)
        return cls(clients, test=test, scheme=scheme)

    # ---- what the notebook may know ----------------------------------------------------
    @property
    def workers(self) -> list[Any]:
        seen: dict[str, Any] = {}
        for c in self.clients:
            seen.setdefault(c.worker.name, c.worker)
        return list(seen.values())

    @property
    def sizes(self) -> list[int]:
        return [c.rows for c in self.clients]

    def __len__(self) -> int:
        return len(self.clients)

    def by_worker(self, clients: Sequence[Client] | None = None) -> dict[str, list[Client]]:
        out: dict[str, list[Client]] = {}
        for c in self.clients if clients is None else clients:
            out.setdefault(c.worker.name, []).append(c)
        return out

    def label_counts(self) -> torch.Tensor:
        """(clients, classes) label counts, as each worker reported them."""
        width = max((len(c.labels) for c in self.clients), default=0)
        rows = [c.labels + [0] * (width - len(c.labels)) for c in self.clients]
        return torch.tensor(rows, dtype=torch.long)

    def plot(self, ax: Any = None) -> Any:
        """A stacked bar per client: how many rows of each label it holds."""
        names = [f"{c.id}@{c.worker.name}" for c in self.clients]
        return plot_partition(self.label_counts(), names=names, ax=ax)

    def __repr__(self) -> str:
        per = {w: len(cs) for w, cs in self.by_worker().items()}
        test = f", test {len(self.test[1])} rows" if self.test is not None else ""
        return (f"FederatedDataset({self.name!r}, {len(self.clients)} clients "
                f"({', '.join(f'{n} on {w}' for w, n in per.items())}), {sum(self.sizes)} rows, "
                f"{self.scheme}{test})")


def _check_workers(workers: Sequence[Any], clients_per_worker: int) -> list[Any]:
    workers = list(workers)
    if not workers:
        raise ValueError("give at least one worker to hold the clients' data")
    names = [w.name for w in workers]
    if len(set(names)) != len(names):
        raise ValueError(f"workers must be distinct, got {names}")
    if clients_per_worker < 1:
        raise ValueError(f"clients_per_worker must be >= 1, got {clients_per_worker}")
    return workers


def _assign(n_clients: int, n_workers: int) -> list[list[int]]:
    """Client ids per worker: client c lives on worker c mod n_workers."""
    return [list(range(w, n_clients, n_workers)) for w in range(n_workers)]


def _client(worker: Any, reply: dict[str, Any]) -> Client:
    x = wrap_reply(worker, reply["x"], worker.context)
    y = wrap_reply(worker, reply["y"], worker.context)
    return Client(int(reply["client"]), worker, x, y, int(reply["rows"]), list(reply["labels"]))

