"""PrivateModule: a wrapper that records what DP-SGD needs, without touching the model.

Why a wrapper: the model's class is never modified and torch is never patched.
During a training forward the wrapper switches ``requires_grad`` off on the
trainable parameters (and back on before returning, even on error), so autograd
never spends time on ordinary weight gradients: the graph holds activations only.
(``torch.func.functional_call`` with detached parameters does the same but costs
~0.1 ms per call in parameter swapping, a tenth of a small model's step.) Forward
hooks on the layers that own parameters record each layer's input and put a tap
on its output (a tensor hook) that records the output gradient.
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

from ppdl_nb.dp.grad_rules import LayerTrace, rule_for
from ppdl_nb.dp.validate import validate

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
        # per call; this costs one elementwise pass.)
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
        # Trainable parameters, fixed when wrapped (as the layers' traces are).
        self._trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
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
        params = [p for _, p in self._trainable]
        for p in params:
            p.requires_grad_(False)
        self._rec.active = True
        try:
            return self._module(*args, **kwargs)
        finally:
            self._rec.active = False
            for p in params:
                p.requires_grad_(True)

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

    @property
    def trainable(self) -> list[nn.Parameter]:
        """The parameters DP-SGD clips and noises (trainable when the module was wrapped)."""
        return [p for _, p in self._trainable]

    def clipped_grad_sum(
        self,
        max_grad_norm: float,
        *,
        factor: float = 1.0,
        out: dict[nn.Parameter, torch.Tensor] | None = None,
    ) -> dict[nn.Parameter, torch.Tensor]:
        """``factor * sum_i min(1, C/|g_i|) g_i`` for every trainable parameter (zeros if unused).

        ``g_i`` is example i's gradient; ``factor`` (e.g. 1 / expected batch size) is
        folded into the clipping coefficients to save a pass over the gradients. With
        ``out`` (a tensor of each parameter's shape, e.g. already holding the noise) the
        sums are added into those tensors, in place, and ``out`` is returned.
        """
        norms = self.per_sample_norms()
        coef = (max_grad_norm / (norms + 1e-6)).clamp_(max=1.0).mul_(self._scale * factor)
        result: dict[nn.Parameter, torch.Tensor] = {} if out is None else out
        for trace in self._rec.traces.values():
            recorded = bool(trace.pairs()) and coef.numel() > 0
            into = getattr(trace.rule, "clipped_sum_into", None)
            if recorded and out is not None and into is not None:
                into(trace, coef, {name: out[p] for name, p in trace.params.items()})
                continue
            sums = trace.rule.clipped_sum(trace, coef) if recorded else {}
            for name, p in trace.params.items():
                g = sums.get(name)
                if out is not None:
                    if g is not None:
                        out[p].add_(g.reshape(p.shape).to(out[p].dtype))
                else:
                    result[p] = (g.reshape(p.shape).to(p.dtype) if g is not None
                                 else torch.zeros_like(p))
        return result


def _remove(handles: list[Any]) -> None:
    for h in handles:
        h.remove()
