"""Optimizers for a remote model's parameters: the update runs on the worker.

PySyft 0.2 habit: send the model, build ``optim.SGD(model.parameters())`` and train
through pointers. Here ``torch.optim`` cannot take pointers (it would need the values), so
:class:`SGD` and :class:`Adam` take the pointers a :class:`~ppdl_nb.ModulePointer` gives
(``model_ptr.parameters()``) and update each parameter in place **on its worker** with
allowlisted tensor ops; their state (momentum buffers, Adam's moments) is kept there too,
as remote tensors with the gradients' policy. Nothing but pointers reaches the notebook,
and the arithmetic is torch.optim's (the tests compare the two step by step).

>>> import torch, torch.nn.functional as F, ppdl_nb
>>> from ppdl_nb.tensors.optim import Adam
>>> alice = ppdl_nb.VirtualWorker("alice")
>>> _ = torch.manual_seed(0)
>>> model = ppdl_nb.send(torch.nn.Linear(3, 1), alice)
>>> x, y = ppdl_nb.send(torch.randn(8, 3), alice), ppdl_nb.send(torch.randn(8, 1), alice)
>>> opt = Adam(model.parameters(), lr=0.1)
>>> first = F.mse_loss(model(x), y).get().item()
>>> for _ in range(20):
...     opt.zero_grad()
...     F.mse_loss(model(x), y).backward()
...     opt.step()
>>> F.mse_loss(model(x), y).get().item() < first
True

Each step costs a few round trips per parameter (SGD about 3, Adam about 11): fine for a
lesson, slow for real training, which belongs on the worker as one protocol step
(``fit_federated``, ``RemoteDataset.fit``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["SGD", "Adam", "RemoteOptimizer"]


def _check(name: str, value: float, low: float, high: float | None = None) -> float:
    if not isinstance(value, int | float) or value < low or (high is not None
                                                             and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


class RemoteOptimizer:
    """The shared part: the parameters (pointers on one worker), ``zero_grad``, ``step``.

    A subclass updates one parameter in :meth:`_update` from its gradient, with pointer
    ops only (each runs on the worker).
    """

    def __init__(self, params: Iterable[Any], *, lr: float, weight_decay: float = 0.0
                 ) -> None:
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()  # a ModulePointer itself
        self.params = tuple(params)
        if not self.params:
            raise ValueError("the optimizer got no parameters: pass model_ptr.parameters()")
        for p in self.params:
            if not hasattr(p, "location"):
                raise TypeError(
                    f"{type(self).__name__} takes pointers to a remote model's parameters, "
                    f"got {type(p).__name__}; for local parameters use torch.optim."
                    f"{type(self).__name__}")
        where = {p.location.name for p in self.params}
        if len(where) > 1:
            raise ValueError(f"the parameters live on several workers ({sorted(where)}): "
                             "make one optimizer per worker's model")
        self.lr = _check("lr", lr, 0.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        self._data = [p.detach() for p in self.params]  # views of the parameters, remote
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def __repr__(self) -> str:
        worker = self.params[0].location.name
        return f"{type(self).__name__}({len(self.params)} parameters on {worker}, lr={self.lr})"

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, on the worker."""
        for p in self.params:
            grad = p.grad
            if grad is not None:
                grad.zero_()

    def step(self) -> None:
        """One update of every parameter that has a gradient, on the worker."""
        for data, p, state in zip(self._data, self.params, self.state, strict=True):
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad + data * self.weight_decay
            self._update(data, grad, state)

    def _update(self, data: Any, grad: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(RemoteOptimizer):
    """``torch.optim.SGD`` (with ``momentum``, ``weight_decay``) for remote parameters."""

    def __init__(self, params: Iterable[Any], *, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)

    def _update(self, data: Any, grad: Any, state: dict[str, Any]) -> None:
        if self.momentum:
            if "buf" not in state:
                state["buf"] = grad.clone()
            else:
                state["buf"].mul_(self.momentum).add_(grad)
            grad = state["buf"]
        data.sub_(grad * self.lr)


class Adam(RemoteOptimizer):
    """``torch.optim.Adam`` (``betas``, ``eps``, ``weight_decay``) for remote parameters."""

    def __init__(self, params: Iterable[Any], *, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.betas = (_check("betas[0]", betas[0], 0.0, 1.0),
                      _check("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check("eps", eps, 0.0)

    def _update(self, data: Any, grad: Any, state: dict[str, Any]) -> None:
        b1, b2 = self.betas
        if "m" not in state:
            state.update(t=0, m=grad * 0.0, v=grad * 0.0)
        state["t"] += 1
        state["m"].mul_(b1).add_(grad * (1 - b1))
        state["v"].mul_(b2).add_(grad * grad * (1 - b2))
        bc1, bc2 = 1 - b1 ** state["t"], 1 - b2 ** state["t"]
        denom = (state["v"] / bc2).sqrt() + self.eps
        data.sub_(state["m"] / denom * (self.lr / bc1))
