"""make_private: turn a model, optimizer and data loader into their DP-SGD counterparts.

Why one function: users keep writing the ordinary PyTorch loop; privacy comes
from the three objects it returns (a :class:`.PrivateModule`, a
:class:`.DPOptimizer`, a :class:`.PoissonLoader`). Nothing of the user's is
patched. Privacy parameters are keyword-only.

>>> import torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
>>> model = torch.nn.Linear(3, 2)
>>> priv = make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
...                     data_loader=DataLoader(data, batch_size=16),
...                     noise_multiplier=1.0, max_grad_norm=1.0)
>>> for x, y in priv.data_loader:
...     priv.optimizer.zero_grad()
...     torch.nn.functional.cross_entropy(priv.module(x), y).backward()
...     priv.optimizer.step()
>>> priv.optimizer.accountant.steps
4
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ppdl_nb.dp.accounting import Accountant, check_delta, noise_multiplier_for
from ppdl_nb.dp.data import PoissonLoader
from ppdl_nb.dp.optimizer import DPOptimizer
from ppdl_nb.dp.private_module import PrivateModule

__all__ = ["PrivateTraining", "make_private", "make_private_with_epsilon"]


class PrivateTraining(NamedTuple):
    """The private counterparts: unpack as ``module, optimizer, data_loader = ...``."""

    module: PrivateModule
    optimizer: DPOptimizer
    data_loader: PoissonLoader | DataLoader


def make_private(
    *,
    module: nn.Module,
    optimizer: Optimizer,
    data_loader: DataLoader,
    noise_multiplier: float,
    max_grad_norm: float,
    poisson_sampling: bool = True,
    loss_reduction: str = "mean",
    accountant: str | Accountant = "rdp",
) -> PrivateTraining:
    """Private counterparts of ``module``, ``optimizer`` and ``data_loader``.

    The sample rate is ``1 / len(data_loader)`` (the loader's batch size over the data
    size). With ``poisson_sampling=False`` the user's loader is kept as is, but the
    accountant still assumes Poisson sampling, so the reported epsilon is then only
    an approximation; keep the default for a guarantee.
    """
    if not isinstance(data_loader, DataLoader):
        raise TypeError(
            f"data_loader must be a torch DataLoader, got {type(data_loader).__name__}; "
            "wrap your dataset in torch.utils.data.DataLoader(dataset, batch_size=...)."
        )
    steps = len(data_loader)
    if steps == 0:
        raise ValueError("data_loader is empty: DP-SGD needs at least one example.")
    n = len(data_loader.dataset)  # type: ignore[arg-type]
    sample_rate = 1 / steps
    loader: PoissonLoader | DataLoader = data_loader
    if poisson_sampling:
        loader = PoissonLoader(
            data_loader.dataset, sample_rate=sample_rate, collate_fn=data_loader.collate_fn
        )
    private_module = PrivateModule(module, loss_reduction=loss_reduction)
    acc = accountant if isinstance(accountant, Accountant) else Accountant(accountant)
    private_opt = DPOptimizer(
        optimizer,
        module=private_module,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=sample_rate * n,
        sample_rate=sample_rate,
        accountant=acc,
    )
    return PrivateTraining(private_module, private_opt, loader)


def make_private_with_epsilon(
    *,
    module: nn.Module,
    optimizer: Optimizer,
    data_loader: DataLoader,
    target_epsilon: float,
    target_delta: float,
    epochs: int,
    max_grad_norm: float,
    poisson_sampling: bool = True,
    loss_reduction: str = "mean",
    accountant: str = "rdp",
) -> PrivateTraining:
    """Like :func:`make_private`, with the noise chosen so ``epochs`` epochs spend the target."""
    check_delta(target_delta, len(data_loader.dataset))  # type: ignore[arg-type]
    steps = len(data_loader)
    noise_multiplier = noise_multiplier_for(
        target_epsilon=target_epsilon,
        sample_rate=1 / steps,
        steps=epochs * steps,
        delta=target_delta,
        accountant=accountant,
    )
    return make_private(
        module=module,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=poisson_sampling,
        loss_reduction=loss_reduction,
        accountant=accountant,
    )
