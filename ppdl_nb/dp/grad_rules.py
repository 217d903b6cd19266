"""Per-layer rules for per-sample gradient norms and clipped gradient sums.

Why: DP-SGD needs each example's gradient norm, but materialising B per-sample
gradients of a 784x256 weight costs B times the memory and time of one gradient.
For layers whose weight gradient is an outer product we can do better ("ghost
clipping", Goodfellow 2015; Li et al. 2022; Bu et al. 2023): with layer input
``a_i`` (T x d) and output gradient ``g_i`` (T x p) of example ``i``, the per-sample
weight gradient is ``g_i^T a_i`` and

* for T = 1: ``|grad_i|^2 = |g_i|^2 |a_i|^2``;
* for sequences: ``|grad_i|^2 = sum((a_i a_i^T) * (g_i g_i^T))`` (the Gram trick),
  used when ``T^2 <= p d``; otherwise the per-sample gradient is cheaper to build.

The clipped sum is then one matmul, ``(c * g)^T a``, as costly as a normal weight
gradient. Rules are registered per layer type with :func:`register_grad_rule`;
any other layer with parameters falls back to :class:`FuncRule` (``torch.func``:
``functional_call`` + ``vmap`` + ``grad``), which does materialise per-sample grads.

Each rule sees a :class:`LayerTrace`: the layer, its trainable parameters, and the
inputs and (per-sample scaled) output gradients recorded for each call of the layer
in one forward pass (a layer used twice contributes the sum of both uses).

>>> import torch
>>> rule = rule_for(torch.nn.Linear(3, 2))
>>> type(rule).__name__
'LinearRule'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FuncRule", "GradRule", "LayerTrace", "register_grad_rule", "rule_for"]


@dataclass
class LayerTrace:
    """What one forward/backward pass recorded for one layer."""

    module: nn.Module
    params: dict[str, nn.Parameter]
    activations: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor | None] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    rule: Any = None  # the GradRule for ``module`` (looked up once)

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(input, output grad) of each use whose gradient arrived."""
        return [(a, g) for a, g in zip(self.activations, self.grads, strict=True) if g is not None]


class GradRule(Protocol):
    def supports(self, module: nn.Module) -> bool: ...

    def norms2(self, trace: LayerTrace) -> torch.Tensor:
        """Squared per-sample gradient norm over ``trace.params``, shape (B,)."""
        ...

    def clipped_sum(self, trace: LayerTrace, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        """sum_i coef_i * grad_i for each parameter name of ``trace.params``."""
        ...


_RULES: dict[type[nn.Module], GradRule] = {}


def register_grad_rule(*layer_types: type[nn.Module]) -> Callable[[type], type]:
    """Class decorator: instances of the class compute norms for these layer types."""

    def deco(cls: type) -> type:
        for t in layer_types:
            _RULES[t] = cls()
        return cls

    return deco


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each row of x (B, ...) -> (B,), without a squared temporary."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).square()


def _outer_norms2(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of sum_t g[b,t] a[b,t]^T for each b; a (B,T,d), g (B,T,p)."""
    t, d, p = a.shape[1], a.shape[2], g.shape[2]
    if t == 1:
        return _sq_norms(g) * _sq_norms(a)
    if t * t <= p * d:
        aa = torch.bmm(a, a.transpose(1, 2))
        gg = torch.bmm(g, g.transpose(1, 2))
        return (aa * gg).sum((1, 2))
    return _sq_norms(torch.bmm(g.transpose(1, 2), a))


def _as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, ..., d) -> (B, T, d)."""
    t = 1
    for n in x.shape[1:-1]:
        t *= n
    return x.reshape(x.shape[0], t, x.shape[-1])


def _cat(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


@register_grad_rule(nn.Linear)
class LinearRule:
    def supports(self, module: nn.Module) -> bool:
        return True

    def _ag(self, trace: LayerTrace) -> tuple[torch.Tensor, torch.Tensor]:
        if "ag" not in trace.cache:
            pairs = trace.pairs()
            a = _cat([_as_sequence(a) for a, _ in pairs])
            g = _cat([_as_sequence(g) for _, g in pairs])
            trace.cache["ag"] = (a, g)
        return trace.cache["ag"]

    def norms2(self, trace: LayerTrace) -> torch.Tensor:
        flat = self._flat(trace)
        if flat is not None:  # one use on (B, d) inputs, the MLP case: no reshapes
            a, g = flat
            gn2 = torch.linalg.vector_norm(g, dim=1).square_()
            if "weight" not in trace.params:
                return gn2
            an2 = torch.linalg.vector_norm(a, dim=1).square_()
            return gn2.mul_(an2.add_(1.0)) if "bias" in trace.params else gn2.mul_(an2)
        a, g = self._ag(trace)
        if a.shape[1] == 1 and "weight" in trace.params:  # |g|^2 |a|^2 (+ |g|^2 for bias)
            gn2, an2 = _sq_norms(g), _sq_norms(a)
            return gn2 * (an2 + 1) if "bias" in trace.params else gn2 * an2
        out = torch.zeros(a.shape[0], dtype=g.dtype, device=g.device)
        if "weight" in trace.params:
            out = out + _outer_norms2(a, g)
        if "bias" in trace.params:
            out = out + _sq_norms(g.sum(1))
        return out

    def clipped_sum(self, trace: LayerTrace, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self._flat(trace)
        if flat is not None:
            a, g = flat
            gc = g * coef.to(g.dtype).unsqueeze(1)
        else:
            a, g = self._ag(trace)
            gc = (g * coef.view(-1, 1, 1).to(g.dtype)).reshape(-1, g.shape[-1])
            a = a.reshape(-1, a.shape[-1])
        out: dict[str, torch.Tensor] = {}
        if "weight" in trace.params:
            out["weight"] = torch.mm(gc.t(), a)
        if "bias" in trace.params:
            out["bias"] = gc.sum(0)
        return out

    def clipped_sum_into(self, trace: LayerTrace, coef: torch.Tensor,
                         out: dict[str, torch.Tensor]) -> None:
        """Add the clipped sums into ``out`` in place (one GEMM with beta = 1 per weight)."""
        flat = self._flat(trace)
        if flat is None:
            for name, g in self.clipped_sum(trace, coef).items():
                out[name].add_(g.reshape(out[name].shape))
            return
        a, g = flat
        gc = g * coef.to(g.dtype).unsqueeze(1)
        if "weight" in trace.params:
            out["weight"].addmm_(gc.t(), a)
        if "bias" in trace.params:
            out["bias"].add_(gc.sum(0))

    @staticmethod
    def _flat(trace: LayerTrace) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(trace.activations) != 1 or trace.activations[0].dim() != 2:
            return None
        g = trace.grads[0]
        return None if g is None else (trace.activations[0], g)


@register_grad_rule(nn.Conv2d)
class Conv2dRule(LinearRule):
    """Conv2d as a Linear over unfolded patches (T = output positions)."""

    def supports(self, module: nn.Module) -> bool:
        return (
            isinstance(module, nn.Conv2d)
            and module.groups == 1
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        )

    def _ag(self, trace: LayerTrace) -> tuple[torch.Tensor, torch.Tensor]:
        if "ag" not in trace.cache:
            m: Any = trace.module
            a_s, g_s = [], []
            for a, g in trace.pairs():
                cols = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)
                a_s.append(cols.transpose(1, 2))
                g_s.append(g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2))
            trace.cache["ag"] = (_cat(a_s), _cat(g_s))
        return trace.cache["ag"]

    def clipped_sum(self, trace: LayerTrace, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        m: Any = trace.module
        out: dict[str, torch.Tensor] = {}
        pairs = trace.pairs()
        if "weight" in trace.params:
            w = m.weight
            out["weight"] = sum(
                torch.nn.grad.conv2d_weight(
                    a, w.shape, g * coef.view(-1, 1, 1, 1), m.stride, m.padding, m.dilation
                )
                for a, g in pairs
            )
        if "bias" in trace.params:
            out["bias"] = sum((g * coef.view(-1, 1, 1, 1)).sum((0, 2, 3)) for _, g in pairs)
        return out


@register_grad_rule(nn.Embedding)
class EmbeddingRule:
    """Rows looked up by the same index add up; the Gram trick with an index-equality mask."""

    def supports(self, module: nn.Module) -> bool:
        return isinstance(module, nn.Embedding) and module.max_norm is None

    def _ig(self, trace: LayerTrace) -> tuple[torch.Tensor, torch.Tensor]:
        if "ig" not in trace.cache:
            pairs = trace.pairs()
            b = pairs[0][0].shape[0]
            idx = torch.cat([i.reshape(b, -1) for i, _ in pairs], 1)
            g = torch.cat([g.reshape(b, -1, g.shape[-1]) for _, g in pairs], 1)
            pad = trace.module.padding_idx
            if pad is not None:
                g = g * (idx != pad).unsqueeze(-1).to(g.dtype)
            trace.cache["ig"] = (idx, g)
        return trace.cache["ig"]

    def norms2(self, trace: LayerTrace) -> torch.Tensor:
        idx, g = self._ig(trace)
        same = (idx.unsqueeze(2) == idx.unsqueeze(1)).to(g.dtype)
        return (torch.bmm(g, g.transpose(1, 2)) * same).sum((1, 2))

    def clipped_sum(self, trace: LayerTrace, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        idx, g = self._ig(trace)
        w = trace.module.weight
        gc = (g * coef[:, None, None]).reshape(-1, g.shape[-1])
        out = torch.zeros(w.shape, dtype=g.dtype, device=g.device)
        return {"weight": out.index_add_(0, idx.reshape(-1), gc)}


class FuncRule:
    """Fallback for any layer with parameters: per-sample grads by torch.func.

    The layer must take one tensor and return one tensor. Costs B per-sample
    gradients in memory; fine for small layers (LayerNorm, GroupNorm, custom ones).
    """

    def supports(self, module: nn.Module) -> bool:
        return True

    def _per_sample(self, trace: LayerTrace) -> dict[str, torch.Tensor]:
        if "ps" in trace.cache:
            return trace.cache["ps"]
        from torch.func import functional_call, grad, vmap

        module = trace.module
        params = {k: v.detach() for k, v in trace.params.items()}

        def inner(p: dict[str, torch.Tensor], a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            out = functional_call(module, p, (a.unsqueeze(0),))
            return (out * g.unsqueeze(0)).sum()

        per_use = vmap(grad(inner), in_dims=(None, 0, 0))
        total: dict[str, torch.Tensor] = {}
        for a, g in trace.pairs():
            for k, v in per_use(params, a, g).items():
                total[k] = total[k] + v if k in total else v
        trace.cache["ps"] = total
        return total

    def norms2(self, trace: LayerTrace) -> torch.Tensor:
        ps = self._per_sample(trace)
        return sum(_sq_norms(v) for v in ps.values())

    def clipped_sum(self, trace: LayerTrace, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        ps = self._per_sample(trace)
        return {k: torch.tensordot(coef.to(v.dtype), v, dims=1) for k, v in ps.items()}


_FALLBACK = FuncRule()


def rule_for(module: nn.Module) -> GradRule:
    """The registered rule for ``module``'s type (or a base class), else :class:`FuncRule`."""
    for klass in type(module).__mro__:
        rule = _RULES.get(klass)
        if rule is not None and rule.supports(module):
            return rule
    return _FALLBACK
