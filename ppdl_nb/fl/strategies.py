"""Strategies that wrap an aggregation: DP-FedAvg, and server-side optimizers.

Each wraps any aggregation of :mod:`ppdl_nb.fl.aggregation` (given as an object or a
name) and changes one part of the round, leaving the rest to it, so they compose:
``FedAdam(DPFedAvg(SecAgg(), noise_multiplier=1.0, max_update_norm=0.5))`` is DP-FedAvg
over pairwise masks with an Adam step on the server.

:class:`DPFedAvg` (McMahan et al. 2018, user-level DP)
    Clients are Poisson-sampled; each sampled client's update is clipped to
    ``max_update_norm``; the sum carries Gaussian noise of std ``noise_multiplier *
    max_update_norm`` (added where the wrapped aggregation can: by the notebook for
    ``mean``, by the aggregator for ``trusted``, inside the shares or masked updates for
    ``secure`` and ``secagg``), and is divided by the *expected* number of clients.
    ``epsilon`` at ``delta`` is reported each round.
:class:`FedAvgM`, :class:`FedAdam` (Hsu et al. 2019; Reddi et al. 2021)
    The averaged update is a pseudo-gradient for a server optimizer (momentum or Adam)
    instead of being added as it is.

>>> DPFedAvg("secure", noise_multiplier=1.1, max_update_norm=0.5)
DPFedAvg(Secure(), noise_multiplier=1.1, max_update_norm=0.5, delta=1e-05)
>>> FedAdam().describe()
'mean + FedAdam server step'
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ppdl_nb.dp.accounting import check_delta
from ppdl_nb.dp.accounting import epsilon as epsilon_of
from ppdl_nb.fl.aggregation import RoundUpdates, Strategy, aggregation, resolve
from ppdl_nb.fl.dataset import Client

__all__ = ["DPFedAvg", "FedAdam", "FedAvgM", "Wrapper"]


class Wrapper(Strategy):
    """A strategy that hands every decision to ``inner`` unless it overrides it."""

    def __init__(self, inner: str | Strategy = "mean") -> None:
        self.inner = resolve(inner)

    @property
    def noise_std(self) -> float:  # type: ignore[override]
        return self.inner.noise_std

    def start(self, model: nn.Module) -> None:
        self.inner.start(model)

    def sample(self, clients: list[Client], fraction: float, gen: torch.Generator
               ) -> list[Client]:
        return self.inner.sample(clients, fraction, gen)

    def fit_options(self, label: str) -> dict[str, Any]:
        return self.inner.fit_options(label)

    def total(self, updates: RoundUpdates) -> torch.Tensor:
        return self.inner.total(updates)

    def average(self, total: torch.Tensor, updates: RoundUpdates, expected_clients: float
                ) -> torch.Tensor:
        return self.inner.average(total, updates, expected_clients)

    def step(self, model: nn.Module, update: torch.Tensor) -> None:
        self.inner.step(model, update)

    def metrics(self, rounds_done: int, sample_rate: float) -> dict[str, float]:
        return self.inner.metrics(rounds_done, sample_rate)

    def describe(self) -> str:
        return self.inner.describe()


@aggregation
class DPFedAvg(Wrapper):
    """User-level DP-FedAvg around ``inner``; privacy parameters are keyword-only.

    ``noise_multiplier``: the noise std over the sensitivity ``max_update_norm`` (the L2
    bound on one client's update). Whom it protects: the released model (and its
    per-round versions) changes little whether or not any one client took part. Under DP
    the workers report no per-client losses or norms, which would leak around it.
    """

    def __init__(self, inner: str | Strategy = "mean", *, noise_multiplier: float | None = None,
                 max_update_norm: float | None = None, delta: float = 1e-5) -> None:
        if (noise_multiplier is None or max_update_norm is None
                or not noise_multiplier >= 0 or not max_update_norm > 0):
            raise ValueError("DP-FedAvg needs both noise_multiplier= (>= 0, the noise std over "
                             "max_update_norm) and max_update_norm= (> 0, the L2 bound on one "
                             f"client's update); got {noise_multiplier} and {max_update_norm}")
        check_delta(delta)
        super().__init__(inner)
        self.noise_multiplier, self.max_update_norm = float(noise_multiplier), max_update_norm
        self.delta = delta

    @property
    def noise_std(self) -> float:  # type: ignore[override]
        return self.noise_multiplier * self.max_update_norm

    def sample(self, clients: list[Client], fraction: float, gen: torch.Generator
               ) -> list[Client]:
        """Poisson sampling (each client with probability ``fraction``): what the accountant
        assumes."""
        keep = torch.rand(len(clients), generator=gen) < fraction
        return [c for c, k in zip(clients, keep.tolist(), strict=True) if k]

    def fit_options(self, label: str) -> dict[str, Any]:
        return {**self.inner.fit_options(label), "max_update_norm": self.max_update_norm,
                "report": False}

    def average(self, total: torch.Tensor, updates: RoundUpdates, expected_clients: float
                ) -> torch.Tensor:
        """A data-independent denominator (the expected client count): the noise holds."""
        return total / expected_clients

    def metrics(self, rounds_done: int, sample_rate: float) -> dict[str, float]:
        eps = epsilon_of(noise_multiplier=self.noise_multiplier, sample_rate=sample_rate,
                         steps=rounds_done, delta=self.delta)
        return {**self.inner.metrics(rounds_done, sample_rate), "epsilon": eps}

    def describe(self) -> str:
        return self.inner.describe()

    def __repr__(self) -> str:
        return (f"DPFedAvg({self.inner!r}, noise_multiplier={self.noise_multiplier}, "
                f"max_update_norm={self.max_update_norm}, delta={self.delta})")


class _ServerOptimizer(Wrapper):
    """The averaged update is a pseudo-gradient ``-g`` for a torch optimizer on the server."""

    def __init__(self, inner: str | Strategy = "mean", *, server_lr: float) -> None:
        if not server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        super().__init__(inner)
        self.server_lr = server_lr
        self._optimizer: torch.optim.Optimizer | None = None
        self._weights: torch.Tensor | None = None

    def _make(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self._optimizer = self._weights = None  # fresh state for each run

    def step(self, model: nn.Module, update: torch.Tensor) -> None:
        if self._weights is None or self._weights.shape != update.shape:
            self._weights = torch.zeros_like(update, requires_grad=True)
            self._optimizer = self._make([self._weights])
        before = self._weights.detach().clone()
        self._weights.grad = -update  # descending -update moves the model by +update
        self._optimizer.step()  # type: ignore[union-attr]
        self.inner.step(model, (self._weights.detach() - before))

    def describe(self) -> str:
        return f"{self.inner.describe()} + {type(self).__name__} server step"


@aggregation
class FedAvgM(_ServerOptimizer):
    """FedAvg with server momentum: ``v = momentum * v + update; w += server_lr * v``."""

    def __init__(self, inner: str | Strategy = "mean", *, server_lr: float = 1.0,
                 momentum: float = 0.9) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(inner, server_lr=server_lr)
        self.momentum = momentum

    def _make(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.server_lr, momentum=self.momentum)

    def __repr__(self) -> str:
        return f"FedAvgM({self.inner!r}, server_lr={self.server_lr}, momentum={self.momentum})"


@aggregation
class FedAdam(_ServerOptimizer):
    """Adam on the server over the averaged updates (adaptivity ``tau``, as Reddi et al.)."""

    def __init__(self, inner: str | Strategy = "mean", *, server_lr: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.99), tau: float = 1e-3) -> None:
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or not tau > 0 or math.isnan(tau):
            raise ValueError(f"FedAdam needs betas in [0, 1) and tau > 0, got {betas}, {tau}")
        super().__init__(inner, server_lr=server_lr)
        self.betas, self.tau = betas, tau

    def _make(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.server_lr, betas=self.betas, eps=self.tau)

    def __repr__(self) -> str:
        return f"FedAdam({self.inner!r}, server_lr={self.server_lr})"
