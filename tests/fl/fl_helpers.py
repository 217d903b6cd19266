"""Shared pieces of the federated tests: data, a model, a plain-torch FedAvg reference."""

from __future__ import annotations

import copy

import torch

from ppdl_nb.fl import FederatedDataset
from ppdl_nb.fl.local import apply_update, flat_weights, train_local
from ppdl_nb.fl.partition import partition

SEED = 7


def data(n: int = 240, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x @ torch.randn(6, 3, generator=g)).argmax(1)
    return x, y


def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def reference(start, fed, xs, ys, *, rounds, epochs=1, batch_size=16, lr=0.1, prox_mu=0.0,
              clients=None, first_round=1):
    """FedAvg in one process, plain torch, with the batches fit_federated asks for."""
    current = copy.deepcopy(start)
    for rnd in range(first_round, first_round + rounds):
        total, rows = torch.zeros_like(flat_weights(current)), 0
        for c in fed.clients if clients is None else clients:
            local = copy.deepcopy(current)
            gen = torch.Generator().manual_seed((SEED * 1_000_003 + rnd) * 7919 + c.id)
            run = train_local(local, xs[c.id], ys[c.id], epochs=epochs, batch_size=batch_size,
                              lr=lr, prox_mu=prox_mu, generator=gen)
            total += run.update * run.rows
            rows += run.rows
        apply_update(current, total / rows)
    return current


def split(workers, clients_per_worker=2):
    x, y = data()
    fed = FederatedDataset.from_tensors(x, y, workers, clients_per_worker=clients_per_worker,
                                        seed=3, test=(x, y))
    # what each client holds, recomputed here from the same public split
    parts = partition(y, len(fed.clients), seed=3)
    return fed, {i: x[p] for i, p in enumerate(parts)}, {i: y[p] for i, p in enumerate(parts)}




class Dropping:
    """A worker that fails on one protocol step, as a crash would look to the notebook.

    ``kill``: a function that really kills the worker's process first (kernel workers).
    """

    def __init__(self, worker, step, kill=None):
        self._w, self._step, self._kill = worker, step, kill

    def __getattr__(self, name):
        return getattr(self._w, name)

    def step(self, name, **kwargs):
        if name == self._step:
            if self._kill is not None:
                self._kill()
                return self._w.step(name, **kwargs)
            from ppdl_nb import WorkerUnavailableError

            raise WorkerUnavailableError(f"worker {self._w.name} is not running")
        return self._w.step(name, **kwargs)
