"""DPOptimizer: clip, add noise, then let the user's optimizer take the step.

Why: DP-SGD changes only how the gradient is formed; momentum, Adam, weight decay
and learning-rate schedules stay the user's. ``step()`` replaces each ``p.grad``
with ``(sum_i clip(g_i) + N(0, (z C)^2)) / (q N)``, ``z`` the ``noise_multiplier``
and ``C`` the ``max_grad_norm`` (``q N`` is the *expected*
batch size: dividing by the actual size would leak it), calls the wrapped
optimizer, and records the step in the accountant. The noise of each step comes
from a generator freshly seeded from ``os.urandom`` (:mod:`.noise`).

Call ``step()`` once per batch, including empty Poisson batches.

>>> import torch
>>> from ppdl_nb.dp.private_module import PrivateModule
>>> pm = PrivateModule(torch.nn.Linear(2, 1))
>>> opt = DPOptimizer(torch.optim.SGD(pm.parameters(), lr=0.1), module=pm,
...                   noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4,
...                   sample_rate=0.1)
>>> pm(torch.randn(4, 2)).sum().backward()
>>> opt.step(); opt.accountant.steps
1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from ppdl_nb.dp.accounting import Accountant
from ppdl_nb.dp.noise import generator
from ppdl_nb.dp.private_module import PrivateModule

__all__ = ["DPOptimizer"]


class DPOptimizer(Optimizer):
    """Wraps ``optimizer`` (not a copy: it shares its param groups and state)."""

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        module: PrivateModule,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: float,
        sample_rate: float,
        accountant: Accountant | None = None,
    ) -> None:
        if noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
        if max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}.")
        if expected_batch_size <= 0:
            raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}.")
        owned = {id(p) for p in module.parameters()}
        stray = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in owned]
        if stray:
            raise ValueError(
                f"The optimizer holds {len(stray)} parameter(s) that are not in the private "
                "module; their gradients would escape clipping and noise. Build the "
                "optimizer from the module's parameters."
            )
        # Share, do not copy: the wrapped optimizer stays the single source of truth.
        self.original_optimizer = optimizer
        self.defaults = optimizer.defaults
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self._optimizer_step_pre_hooks: dict = {}
        self._optimizer_step_post_hooks: dict = {}
        self._optimizer_state_dict_pre_hooks: dict = {}
        self._optimizer_state_dict_post_hooks: dict = {}
        self._optimizer_load_state_dict_pre_hooks: dict = {}
        self._optimizer_load_state_dict_post_hooks: dict = {}
        self.module = module
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = float(expected_batch_size)
        self.sample_rate = float(sample_rate)
        self.accountant = accountant if accountant is not None else Accountant()
        self._noise: torch.Tensor | None = None  # reused buffer: no page faults per step

    def __repr__(self) -> str:
        return (
            f"DPOptimizer({type(self.original_optimizer).__name__}, "
            f"noise_multiplier={self.noise_multiplier}, max_grad_norm={self.max_grad_norm}, "
            f"expected_batch_size={self.expected_batch_size:g})"
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self.module.clear()

    def privatise_gradients(self) -> None:
        """Set every ``p.grad`` to its clipped, noised, averaged value (no step)."""
        if not self.module.has_record:
            raise RuntimeError(
                "DPOptimizer.step() found no recorded gradients: call the private module "
                "in train mode and loss.backward() before step(), once per batch."
            )
        scale = 1.0 / self.expected_batch_size
        std = self.noise_multiplier * self.max_grad_norm * scale
        trainable = {id(p) for p in self.module.trainable}
        params = []
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in trainable:
                    params.append(p)
                elif p.grad is not None:
                    raise RuntimeError(
                        f"A parameter of shape {tuple(p.shape)} has an ordinary gradient that "
                        "escaped clipping and noise: it was made trainable after "
                        "make_private. Wrap the model again after changing which "
                        "parameters train."
                    )
        if not params:
            return
        # One buffer for all gradients: fill it with the noise, let every layer add its
        # clipped sum into its slice (a GEMM with beta = 1 costs no extra pass), and hand
        # the slices out as .grad. The buffer is reused by the next step (no page faults):
        # a .grad is valid until then, which is all an optimizer needs.
        buf = self._noise_buffer(params, std)
        grads, offset = {}, 0
        for p in params:
            grads[p] = buf[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.module.clipped_grad_sum(self.max_grad_norm, factor=scale, out=grads)
        for p, g in grads.items():
            p.grad = g

    def _noise_buffer(self, params: list[torch.Tensor], std: float) -> torch.Tensor:
        """N(0, std^2) for all parameters in one draw, from a freshly seeded generator."""
        n = sum(p.numel() for p in params)
        dtype = params[0].dtype
        if any(p.dtype != dtype for p in params):
            raise TypeError("DP-SGD needs all trainable parameters in one dtype; got "
                            f"{sorted({str(p.dtype) for p in params})}.")
        if self._noise is None or self._noise.numel() != n or self._noise.dtype != dtype:
            self._noise = torch.empty(n, dtype=dtype)
        if std <= 0:
            return self._noise.zero_()
        return self._noise.normal_(0.0, std, generator=generator())

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.privatise_gradients()
        self.original_optimizer.step()
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.module.clear()
        return loss

    def epsilon(self, delta: float) -> float:
        """Privacy spent so far by this optimizer's steps."""
        return self.accountant.epsilon(delta)

    def state_dict(self) -> dict[str, Any]:
        return self.original_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.original_optimizer.load_state_dict(state_dict)
