"""One client's local training, as a pure function: what runs where the data lives.

Federated averaging ships the global model to each client, which trains it for a few
epochs on its own rows and sends back only the change in weights (its *update*). This
module is that client side over plain tensors; :mod:`ppdl_nb.fl.worker_steps` runs it
on a worker, and tests run it here against centralised torch.

Updates are flat float32 vectors over the model's floating-point state (parameters and
buffers, in ``state_dict`` order), so that aggregation, clipping, noise and secret
sharing see one tensor per client.

>>> model = torch.nn.Linear(3, 2)
>>> x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
>>> run = train_local(model, x, y, epochs=1, batch_size=8, lr=0.1)
>>> run.update.shape == flat_weights(model).shape
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ppdl_nb import training

__all__ = ["FRAC_BITS", "LocalRun", "apply_update", "clip_update", "flat_weights", "load_flat",
           "train_local"]

FRAC_BITS = 24  # fixed point for updates in secret shares: 2^-24 resolution, |sum| < 2^38


def _float_state(model: nn.Module) -> list[torch.Tensor]:
    return [v for v in model.state_dict().values() if torch.is_floating_point(v)]


def flat_weights(model: nn.Module) -> torch.Tensor:
    """The model's floating-point state as one float32 vector."""
    return torch.cat([v.detach().reshape(-1).float() for v in _float_state(model)])


def load_flat(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Write a vector from :func:`flat_weights` back into ``model`` (in place)."""
    state = _float_state(model)
    total = sum(v.numel() for v in state)
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(f"a weight vector for this model has {total} entries, got shape "
                         f"{tuple(flat.shape)}: was it made for another architecture?")
    offset = 0
    with torch.no_grad():
        for v in state:
            v.copy_(flat[offset:offset + v.numel()].view_as(v).to(v.dtype))
            offset += v.numel()
    return model


def apply_update(model: nn.Module, update: torch.Tensor) -> nn.Module:
    """``model += update`` (in place), for an update over :func:`flat_weights`."""
    return load_flat(model, flat_weights(model) + update)


def clip_update(update: torch.Tensor, *, max_update_norm: float) -> tuple[torch.Tensor, float]:
    """Scale ``update`` to L2 norm at most ``max_update_norm``; also return its original norm."""
    if not max_update_norm > 0:
        raise ValueError(f"max_update_norm must be positive, got {max_update_norm}")
    norm = float(update.norm())
    scale = min(1.0, max_update_norm / norm) if norm > 0 else 1.0
    return update * scale, norm


@dataclass
class LocalRun:
    """What a client sends back: its update, how many rows it trained on, its mean loss."""

    update: torch.Tensor
    rows: int
    loss: float
    seconds: float


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    prox_mu: float = 0.0,
    generator: torch.Generator | None = None,
) -> LocalRun:
    """Train ``model`` in place on ``(x, y)``; return the change in its weights.

    ``loss`` and ``optimizer`` are names from :mod:`ppdl_nb.training` (``"sgd"`` is plain
    SGD, ``"momentum"`` SGD with momentum 0.9). ``prox_mu > 0`` adds FedProx's proximal
    term ``mu/2 * ||w - w_global||^2``, which keeps clients with very different data from
    drifting far from the global model. Runs on the model's device.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if prox_mu < 0:
        raise ValueError(f"prox_mu must be >= 0, got {prox_mu}")
    start = time.perf_counter()
    before = flat_weights(model)
    penalty = None
    if prox_mu:
        anchors = [p.detach().clone() for p in model.parameters()]

        def penalty() -> torch.Tensor:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors,
                                                            strict=True))
            return prox_mu / 2 * prox

    mean_loss = training.train_model(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                                     loss=loss, optimizer=optimizer, penalty=penalty,
                                     generator=generator)
    return LocalRun(flat_weights(model) - before, len(x), mean_loss,
                    time.perf_counter() - start)
