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
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ppdl_nb import training
from ppdl_nb.dp.accounting import check_delta, noise_multiplier_for
from ppdl_nb.dp.accounting import epsilon as epsilon_of
from ppdl_nb.dp.engine import make_private
from ppdl_nb.errors import TrainingInterrupted

__all__ = ["FitResult", "fit_private", "plan_epsilon"]


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
                f"{self.delta:g}, noise multiplier {self.noise_multiplier:.3g}{acc})")


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
    optimizer: str = "momentum",
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    callback: Callable[[dict[str, float]], Any] | None = None,
    accountant: str = "rdp",
) -> FitResult:
    """Train a copy of ``model`` with DP-SGD; give either ``noise_multiplier`` or ``epsilon``.

    An interrupt (Ctrl-C) raises :class:`~ppdl_nb.errors.TrainingInterrupted` carrying the
    result so far: the model as trained, the finished epochs, the epsilon spent.

    ``noise_multiplier`` is the Gaussian noise's std over the sensitivity
    ``max_grad_norm`` (each example's clipped gradient norm). ``loss`` and ``optimizer``
    are names from :mod:`ppdl_nb.training` (the default ``"momentum"`` is SGD with
    momentum 0.9; ``"sgd"`` is plain SGD). Training runs on the model's device.
    """
    if (noise_multiplier is None) == (epsilon is None):
        raise ValueError("give exactly one of noise_multiplier= (the noise std over "
                         "max_grad_norm) or epsilon= (a target; the noise is then "
                         "calibrated to spend at most that)")
    loss_fn = training.loss_function(loss)
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
    opt = training.make_optimizer(optimizer, private_copy.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    module, dp_opt, data = make_private(module=private_copy, optimizer=opt, data_loader=loader,
                                        noise_multiplier=noise_multiplier,
                                        max_grad_norm=max_grad_norm, accountant=accountant)
    result = FitResult(private_copy, delta=delta, noise_multiplier=noise_multiplier)
    test = (x_test, y_test) if x_test is not None and y_test is not None else None
    _epochs(result, module, data, dp_opt, epochs=epochs, loss_fn=loss_fn, test=test,
            callback=callback)
    return result


def _epochs(result: FitResult, module: nn.Module, data: Any, dp_opt: Any, *, epochs: int,
            loss_fn: Any, test: tuple[torch.Tensor, torch.Tensor] | None,
            callback: Callable[[dict[str, float]], Any] | None) -> None:
    """The training loop of :func:`fit_private`, filling ``result`` epoch by epoch."""
    epoch = 0
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            total, count = training.run_epoch(module, data, loss=loss_fn, optimizer=dp_opt)
            record = {"epoch": float(epoch), "loss": total / max(count, 1),
                      "epsilon": dp_opt.accountant.epsilon(result.delta),
                      "seconds": time.perf_counter() - start}
            if test is not None:
                record.update(training.evaluate(result.model, *test, loss_fn))
            result.history.append(record)
            result.epsilon = record["epsilon"]
            if callback is not None:
                callback(record)
    except KeyboardInterrupt:  # keep what was trained; every step taken is spent
        result.epsilon = dp_opt.accountant.epsilon(result.delta)
        raise TrainingInterrupted(f"epoch {epoch} of {epochs}", result) from None
