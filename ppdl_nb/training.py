"""One training vocabulary for DP and FL: losses, optimizers, evaluation, the local loop.

DP-SGD (:mod:`ppdl_nb.dp.fit`) and federated clients (:mod:`ppdl_nb.fl.local`) train
with the same words: a loss is a name in :data:`LOSSES`, an optimizer a name in
:data:`OPTIMIZERS` (``"sgd"`` is plain SGD; ``"momentum"`` is SGD with momentum 0.9;
``"adam"``), and one pass over batches is :func:`run_epoch`. Evaluation reports the
test loss, and accuracy only where the labels are classes. Everything runs on the
model's device: move the model (and the data) to CUDA and training happens there.

Both tables are registries: :func:`register_loss` and :func:`register_optimizer` add a
name, and refuse one that is taken.

>>> model = torch.nn.Linear(3, 2)
>>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
>>> opt = make_optimizer("sgd", model.parameters(), lr=0.1)
>>> loss_sum, rows = run_epoch(model, batches(x, y, batch_size=8), loss="cross_entropy",
...                            optimizer=opt)
>>> rows, sorted(evaluate(model, x, y, "cross_entropy"))
(32, ['accuracy', 'test_loss'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "OPTIMIZERS", "batches", "device_of", "evaluate", "loss_function",
           "make_optimizer", "register_loss", "register_optimizer", "run_epoch", "train_model"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerFactory = Callable[..., torch.optim.Optimizer]

#: loss name -> ``fn(output, target)``, averaging over the batch
LOSSES: dict[str, LossFn] = {}
#: optimizer name -> ``factory(params, lr=...)``
OPTIMIZERS: dict[str, OptimizerFactory] = {}


def _register(table: dict[str, Any], what: str, name: str) -> Callable[[Any], Any]:
    def add(fn: Any) -> Any:
        if name in table:
            raise ValueError(f"{what} {name!r} is already registered; pick another name")
        table[name] = fn
        return fn

    return add


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: add ``fn(output, target)`` to :data:`LOSSES` (a taken name is an error)."""
    return _register(LOSSES, "loss", name)


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Decorator: add ``factory(params, lr=...)`` to :data:`OPTIMIZERS` (no duplicates)."""
    return _register(OPTIMIZERS, "optimizer", name)


register_loss("cross_entropy")(F.cross_entropy)


@register_loss("mse")
def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error; a one-column output is compared with a 1-d target."""
    return F.mse_loss(out.squeeze(-1), y.to(out.dtype))


@register_loss("bce_with_logits")
def _bce_with_logits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on one logit per row, labels 0 or 1."""
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y.to(out.dtype))


@register_optimizer("sgd")
def _sgd(params: Iterable[torch.Tensor], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr)


@register_optimizer("momentum")
def _momentum(params: Iterable[torch.Tensor], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


@register_optimizer("adam")
def _adam(params: Iterable[torch.Tensor], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(table)}")
    return table[name]


def loss_function(loss: str | LossFn) -> LossFn:
    """The loss named ``loss`` (or ``loss`` itself if it is already a function)."""
    return loss if callable(loss) else _lookup(LOSSES, loss, "loss")


def make_optimizer(name: str, params: Iterable[torch.Tensor], *, lr: float
                   ) -> torch.optim.Optimizer:
    """A fresh optimizer ``name`` over ``params`` (``"sgd"`` has no momentum)."""
    return _lookup(OPTIMIZERS, name, "optimizer")(params, lr=lr)


def device_of(model: nn.Module) -> torch.device:
    """Where ``model`` lives: its first parameter's (or buffer's) device; CPU if it has none."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def batches(x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor,
                                                                         torch.Tensor]]:
    """One shuffled pass over ``(x, y)`` in batches of ``batch_size`` (the last may be short).

    ``generator`` makes the order reproducible; fresh randomness without it.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def run_epoch(model: nn.Module, data: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              loss: str | LossFn, optimizer: torch.optim.Optimizer,
              penalty: Callable[[], torch.Tensor] | None = None) -> tuple[float, int]:
    """One pass of the training loop; returns (sum of batch loss times rows, rows seen).

    For each batch (moved to the model's device; empty ones skipped, as Poisson sampling
    draws them): zero the gradients, compute ``loss`` (plus ``penalty()``, a term such
    as FedProx's that is optimised but not reported), backpropagate, step ``optimizer``.
    The optimizer may be any object with ``zero_grad`` and ``step`` (a DP optimizer too).
    """
    loss_fn = loss_function(loss)
    device = device_of(model)
    model.train()
    total, seen = 0.0, 0
    for xb, yb in data:
        if len(xb) == 0:
            continue
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad(set_to_none=True)
        batch_loss = loss_fn(model(xb), yb)
        objective = batch_loss if penalty is None else batch_loss + penalty()
        objective.backward()
        optimizer.step()
        total += batch_loss.item() * len(xb)
        seen += len(xb)
    return total, seen


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                batch_size: int, lr: float, loss: str | LossFn = "cross_entropy",
                optimizer: str = "sgd", penalty: Callable[[], torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> float:
    """Train ``model`` in place for ``epochs`` shuffled passes; return the mean batch loss.

    The local training loop of a federated client or a PATE teacher (no privacy here:
    DP-SGD runs :func:`run_epoch` with its own optimizer and sampler).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    loss_fn = loss_function(loss)
    opt = make_optimizer(optimizer, model.parameters(), lr=lr)
    total, seen = 0.0, 0
    for _ in range(epochs):
        part, rows = run_epoch(model, batches(x, y, batch_size=batch_size, generator=generator),
                               loss=loss_fn, optimizer=opt, penalty=penalty)
        total, seen = total + part, seen + rows
    return total / max(seen, 1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | LossFn
             ) -> dict[str, float]:
    """Test loss, and accuracy where the labels are classes (integers).

    Accuracy is the arg-max for several outputs, the sign of the logit for one; float
    labels (regression) get no accuracy.

    >>> evaluate(torch.nn.Linear(2, 1), torch.randn(4, 2), torch.randn(4), "mse").keys()
    dict_keys(['test_loss'])
    """
    loss_fn = loss_function(loss)
    device = device_of(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x, y = x.to(device), y.to(device)
        out = model(x)
        record = {"test_loss": float(loss_fn(out, y))}
        if not torch.is_floating_point(y):
            if out.dim() == 2 and out.shape[1] > 1:
                record["accuracy"] = float((out.argmax(1) == y).float().mean())
            elif out.dim() >= 1:
                record["accuracy"] = float(((out.squeeze(-1) > 0).long() == y).float().mean())
    model.train(was_training)
    return record
