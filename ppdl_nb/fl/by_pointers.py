"""The slow path, for teaching: federated training by pointers, one remote op at a time.

This is how the PySyft paper's tutorials trained: send the model to a worker, then drive
forward, loss, backward and the optimizer step from the notebook, each a message to the
worker, and fetch the model back to average it. It shows exactly what happens where, and
it is slow: several round trips per batch. :func:`~ppdl_nb.fl.fedavg.fit_federated`
ships the model once per round and lets the worker train natively; tutorial 08 times
both on the same data.

Only for data the notebook may see (sent with ``private=False``): a pointer path that
steps a model on private rows would hand the notebook a model fitted to them without
any of fit_federated's aggregation or privacy options.

>>> import ppdl_nb, torch
>>> alice = ppdl_nb.VirtualWorker("alice")
>>> fed = FederatedDataset.from_tensors(torch.randn(32, 3), torch.arange(32) % 2, [alice],
...                                     private=False)
>>> run = train_by_pointers(torch.nn.Linear(3, 2), fed, rounds=1, batch_size=16)
>>> run.history.last["messages"] > 8
True
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from ppdl_nb import training
from ppdl_nb.fl.dataset import FederatedDataset
from ppdl_nb.fl.fedavg import FederatedRun
from ppdl_nb.fl.history import History
from ppdl_nb.fl.local import apply_update, flat_weights
from ppdl_nb.tensors.pointer import call_remote, send

__all__ = ["remote_sgd_step", "train_by_pointers"]


def remote_sgd_step(params: tuple[Any, ...], lr: float) -> None:
    """``p -= lr * p.grad`` on the worker holding ``params`` (pointers), grads cleared."""
    call_remote("optim.sgd_step", (lr, *params), {})


def train_by_pointers(model: nn.Module, data: FederatedDataset, *, rounds: int = 1,
                      epochs: int = 1, batch_size: int = 32, lr: float = 0.1,
                      loss: str = "cross_entropy") -> FederatedRun:
    """FedAvg where every client trains by remote ops driven from here."""
    loss_fn = training.loss_function(loss)
    private = [c for c in data.clients if c.x.private or c.y.private]
    if private:
        raise PermissionError(
            f"client {private[0].id}'s data on {private[0].worker.name} is private; training "
            "op by op from the notebook is for data it may see. Use fit_federated, where the "
            "worker trains locally and only updates leave it.")
    global_model = copy.deepcopy(model)
    history = History()
    for rnd in range(1, rounds + 1):
        start = time.perf_counter()
        messages = sum(w.requests for w in data.workers)
        total, rows, losses = torch.zeros_like(flat_weights(global_model)), 0, []
        for client in data.clients:
            remote = send(global_model, client.worker)
            params = remote.parameters()
            for _ in range(epochs):
                for i in range(0, client.rows, batch_size):
                    out = remote(client.x[i:i + batch_size])
                    batch_loss = loss_fn(out, client.y[i:i + batch_size])
                    batch_loss.backward()
                    remote_sgd_step(params, lr)
                    losses.append(batch_loss.get().item())
            trained = remote.get()
            total += (flat_weights(trained) - flat_weights(global_model)) * client.rows
            rows += client.rows
        apply_update(global_model, total / rows)
        record: dict[str, Any] = {"loss": sum(losses) / len(losses)}
        if data.test is not None:
            record.update(training.evaluate(global_model, *data.test, loss_fn))
        record["messages"] = sum(w.requests for w in data.workers) - messages
        record["seconds"] = time.perf_counter() - start
        history.append(rnd, **record)
    return FederatedRun(global_model, history)
