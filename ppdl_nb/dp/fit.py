"""Private training in one call: what ``%%ppdl train dp`` and the tuner widget run.

``fit_private`` trains a copy of the user's model with DP-SGD (:func:`make_private`),
evaluates it after every epoch, and reports the epsilon spent so far, calling
``callback(record)`` after each epoch for live progress.

>>> import torch
>>> x, y = torch.randn(128, 4), torch.randint(0, 2, (128,))
>>> run = fit_private(torch.nn.Linear(4, 2), x, y, noise_multiplier=1.0, delta=1e-5,
...                   max_grad_norm=1.0, epochs=1, batch_size=32)
>>> round(run.epsilon, 1) > 0
True
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ppdl_nb.dp.accounting import check_delta, noise_multiplier_for
from ppdl_nb.dp.accounting import epsilon as epsilon_of
from ppdl_nb.dp.engine import make_private

__all__ = ["LOSSES", "OPTIMIZERS", "FitResult", "fit_private", "plan_epsilon"]

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "mse": lambda out, y: F.mse_loss(out.squeeze(-1), y.to(out.dtype)),
    "bce_with_logits": lambda out, y: F.binary_cross_entropy_with_logits(
        out.squeeze(-1), y.to(out.dtype)),
}
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}


@dataclass
class FitResult:
    """The trained model, one record per epoch, and the (epsilon, delta) spent."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    epsilon: float = 0.0
    delta: float = 0.0
    noise_multiplier: float = 0.0

    def __repr__(self) -> str:
        last = self.history[-1] if self.history else {}
        acc = f", accuracy {last['accuracy']:.3f}" if "accuracy" in last else ""
        return (f"FitResult({len(self.history)} epochs, epsilon {self.epsilon:.3g} at delta "
                f"{self.delta:g}, sigma {self.noise_multiplier:.3g}{acc})")


def _sampling(batch_size: int, n: int) -> tuple[float, int]:
    """Sampling rate and steps per epoch, exactly as :func:`make_private` sets them."""
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    return 1 / steps_per_epoch, steps_per_epoch


def plan_epsilon(*, noise_multiplier: float, batch_size: int, n: int, epochs: int,
                 delta: float, accountant: str = "rdp") -> float:
    """Epsilon a run of :func:`fit_private` will spend (Poisson sampling)."""
    q, steps_per_epoch = _sampling(batch_size, n)
    return epsilon_of(noise_multiplier=noise_multiplier, sample_rate=q,
                      steps=epochs * steps_per_epoch, delta=delta, accountant=accountant)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable
             ) -> dict[str, float]:
    """Test loss, and accuracy where the labels are classes (integers).

    Accuracy is the arg-max for several outputs, the sign of the logit for one.
    """
    model.eval()
    with torch.no_grad():
        out = model(x)
        record = {"test_loss": float(loss_fn(out, y))}
        if not torch.is_floating_point(y):
            if out.dim() == 2 and out.shape[1] > 1:
                record["accuracy"] = float((out.argmax(1) == y).float().mean())
            elif out.dim() >= 1:
                record["accuracy"] = float(((out.squeeze(-1) > 0).long() == y).float().mean())
    model.train()
    return record


def fit_private(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    delta: float,
    max_grad_norm: float,
    epochs: int,
    batch_size: int,
    noise_multiplier: float | None = None,
    epsilon: float | None = None,
    lr: float = 0.1,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    callback: Callable[[dict[str, float]], Any] | None = None,
    accountant: str = "rdp",
) -> FitResult:
    """Train a copy of ``model`` with DP-SGD; give either ``noise_multiplier`` or ``epsilon``."""
    if (noise_multiplier is None) == (epsilon is None):
        raise ValueError("give exactly one of noise_multiplier= (sigma) or epsilon= (a target; "
                         "the noise is then calibrated to spend at most that)")
    for table, key, what in ((LOSSES, loss, "loss"), (OPTIMIZERS, optimizer, "optimizer")):
        if key not in table:
            raise ValueError(f"unknown {what} {key!r}; choose one of {sorted(table)}")
    n = len(x)
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the data has {n} rows)")
    check_delta(delta, n)
    q, steps_per_epoch = _sampling(batch_size, n)
    if noise_multiplier is None:
        noise_multiplier = noise_multiplier_for(target_epsilon=epsilon, sample_rate=q,
                                                steps=epochs * steps_per_epoch, delta=delta,
                                                accountant=accountant)
    private_copy = copy.deepcopy(model)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    opt = OPTIMIZERS[optimizer](private_copy.parameters(), lr)
    module, dp_opt, data = make_private(module=private_copy, optimizer=opt, data_loader=loader,
                                        noise_multiplier=noise_multiplier,
                                        max_grad_norm=max_grad_norm, accountant=accountant)
    loss_fn = LOSSES[loss]
    result = FitResult(private_copy, delta=delta, noise_multiplier=noise_multiplier)
    for epoch in range(1, epochs + 1):
        start, total, count = time.perf_counter(), 0.0, 0
        for xb, yb in data:
            if len(xb) == 0:
                continue
            dp_opt.zero_grad()
            batch_loss = loss_fn(module(xb), yb)
            batch_loss.backward()
            dp_opt.step()
            total, count = total + batch_loss.item() * len(xb), count + len(xb)
        record = {"epoch": float(epoch), "loss": total / max(count, 1),
                  "epsilon": dp_opt.accountant.epsilon(delta),
                  "seconds": time.perf_counter() - start}
        if x_test is not None and y_test is not None:
            record.update(evaluate(private_copy, x_test, y_test, loss_fn))
        result.history.append(record)
        result.epsilon = record["epsilon"]
        if callback is not None:
            callback(record)
    module.remove_hooks() if hasattr(module, "remove_hooks") else None
    return result
