"""PrivateModule: a wrapper that records what DP-SGD needs, without touching the model.

Why a wrapper: the model's class is never modified and torch is never patched.
The wrapper runs the user's module through ``torch.func.functional_call`` with
*detached* trainable parameters, so autograd never spends time on ordinary weight
gradients; forward hooks on the layers that own parameters record each layer's
input and put a tap on its output (a tensor hook) that records the output gradient.
From those, :mod:`.grad_rules` compute per-sample norms and the clipped sum
(ghost clipping for Linear / Conv2d / Embedding). Hooks are removed by
:meth:`PrivateModule.detach` (also called when the wrapper is garbage collected).

Outside training (``eval()`` or ``torch.no_grad()``) the wrapper just calls the model.

>>> import torch
>>> pm = PrivateModule(torch.nn.Linear(3, 1))
>>> pm(torch.randn(4, 3)).sum().backward()
>>> pm.per_sample_norms().shape
torch.Size([4])
>>> pm.detach()
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .grad_rules import LayerTrace, rule_for
from .validate import validate

__all__ = ["PrivateModule"]


class _Recorder:
    """The hook state, kept apart from the module so hooks do not keep it alive."""

    def __init__(self, loss_reduction: str) -> None:
        self.active = False
        self.loss_reduction = loss_reduction
        self.traces: dict[int, LayerTrace] = {}
        self.anchor = torch.zeros((), requires_grad=True)

    def hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        if not self.active:
            return None
        if not isinstance(output, torch.Tensor) or not inputs or not torch.is_tensor(inputs[0]):
            raise TypeError(
                f"{type(module).__name__} takes or returns something other than one tensor, "
                "so DP-SGD cannot compute its per-sample gradients. Use layers with "
                "registered rules (Linear, Conv2d, Embedding) or single-tensor layers."
            )
        trace = self.traces[id(module)]
        slot = len(trace.grads)
        trace.activations.append(inputs[0].detach())
        trace.grads.append(None)

        def sink(grad: torch.Tensor) -> None:
            trace.grads[slot] = grad.detach()

        # Adding a zero that requires grad makes the output part of the graph even when
        # nothing before it is (the first layer), and gives a fresh tensor, so in-place
        # ops after the layer stay legal. (A custom autograd.Function here costs ~0.2 ms
        # per call under functional_call; this costs one elementwise pass.)
        tapped = output + self.anchor
        tapped.register_hook(sink)
        return tapped


class PrivateModule(nn.Module):
    """Wraps ``module`` for DP-SGD; ``loss_reduction`` is how the loss sums over the batch.

    ``loss_reduction="mean"`` (a mean over the batch, the torch default) or ``"sum"``.
    Batches are batch-first: dimension 0 of the first argument is the batch.
    """

    def __init__(self, module: nn.Module, *, loss_reduction: str = "mean") -> None:
        super().__init__()
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}.")
        validate(module)
        self._module = module
        self._rec = _Recorder(loss_reduction)
        self._handles: list[Any] = []
        self._scale = 1.0
        self._layers: list[tuple[str, nn.Module]] = []
        for name, sub in module.named_modules():
            params = {n: p for n, p in sub.named_parameters(recurse=False) if p.requires_grad}
            if params:
                self._rec.traces[id(sub)] = LayerTrace(sub, params, rule=rule_for(sub))
                self._layers.append((name, sub))
                self._handles.append(sub.register_forward_hook(self._rec.hook))
        self._finalizer = weakref.finalize(self, _remove, list(self._handles))

    @property
    def module(self) -> nn.Module:
        """The user's module (unchanged apart from hooks while this wrapper lives)."""
        return self._module

    def detach(self) -> None:
        """Remove every hook from the user's module; the wrapper stops recording."""
        self._finalizer()
        self._handles.clear()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not (self.training and torch.is_grad_enabled() and self._handles):
            return self._module(*args, **kwargs)
        self.clear()
        batch = next((a.shape[0] for a in args if torch.is_tensor(a) and a.dim() > 0), 1)
        # A mean-reduced loss scales each example's gradient by 1/B; undo it in the norms.
        self._scale = float(batch) if self._rec.loss_reduction == "mean" else 1.0
        detached = {n: p.detach() for n, p in self._module.named_parameters() if p.requires_grad}
        self._rec.active = True
        try:
            return functional_call(self._module, detached, args, kwargs)
        finally:
            self._rec.active = False

    # -- what DP-SGD reads after backward ------------------------------------------

    def clear(self) -> None:
        """Forget recorded activations and gradients."""
        self._rec.anchor.grad = None
        for trace in self._rec.traces.values():
            trace.activations.clear()
            trace.grads.clear()
            trace.cache.clear()

    def _recorded(self) -> list[LayerTrace]:
        return [t for t in self._rec.traces.values() if t.pairs()]

    @property
    def has_record(self) -> bool:
        """True after a training forward and backward."""
        return bool(self._recorded())

    def per_sample_norms(self) -> torch.Tensor:
        """Per-sample gradient norms over all trainable parameters, shape (B,)."""
        traces = self._recorded()
        if not traces:
            raise RuntimeError(
                "No gradients recorded: run a forward pass in train mode and call "
                "backward() on the loss before asking for per-sample norms."
            )
        batch = traces[0].activations[0].shape[0]
        if batch == 0:
            return torch.zeros(0)
        total = sum(t.rule.norms2(t) for t in traces)
        return torch.as_tensor(total).clamp_min(0).sqrt().mul_(self._scale)

    def clipped_grad_sum(
        self, max_grad_norm: float, *, factor: float = 1.0
    ) -> dict[nn.Parameter, torch.Tensor]:
        """``factor * sum_i min(1, C/|g_i|) g_i`` for every trainable parameter (zeros if unused).

        ``g_i`` is example i's gradient; ``factor`` (e.g. 1 / expected batch size) is
        folded into the clipping coefficients to save a pass over the gradients.
        """
        norms = self.per_sample_norms()
        coef = (max_grad_norm / (norms + 1e-6)).clamp_(max=1.0).mul_(self._scale * factor)
        out: dict[nn.Parameter, torch.Tensor] = {}
        for trace in self._rec.traces.values():
            if trace.pairs() and coef.numel() > 0:
                sums = trace.rule.clipped_sum(trace, coef)
            else:
                sums = {}
            for name, p in trace.params.items():
                g = sums.get(name)
                out[p] = g.reshape(p.shape).to(p.dtype) if g is not None else torch.zeros_like(p)
        return out


def _remove(handles: list[Any]) -> None:
    for h in handles:
        h.remove()
