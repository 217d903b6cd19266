"""Which layers break DP-SGD, and why: a registry of module validators.

Per-sample clipping bounds one example's influence on the gradient only if each
example's output depends on that example alone and nothing else learns from the
batch. Layers that mix samples (BatchNorm) or update state from private data
without noise (running statistics) break that bound. Each validator returns a list
of problems (each saying what, why and what to use instead); :func:`validate`
collects all of them and raises one ``ValueError`` listing every problem, so the
user fixes the model once.

>>> import torch.nn as nn
>>> validate(nn.Sequential(nn.Linear(2, 2), nn.GroupNorm(1, 2)))
>>> try:
...     validate(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
... except ValueError as e:
...     print("BatchNorm1d" in str(e))
True
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["register_validator", "validate", "problems"]

Validator = Callable[[str, nn.Module], list[str]]
_VALIDATORS: dict[type[nn.Module], Validator] = {}


def register_validator(*layer_types: type[nn.Module]) -> Callable[[Validator], Validator]:
    """Decorator: ``fn(name, module) -> [problem, ...]`` runs on modules of these types."""

    def deco(fn: Validator) -> Validator:
        for t in layer_types:
            _VALIDATORS[t] = fn
        return fn

    return deco


@register_validator(_BatchNorm, nn.SyncBatchNorm)
def _batch_norm(name: str, module: nn.Module) -> list[str]:
    return [
        f"{name} ({type(module).__name__}) normalises each sample with statistics of the "
        "whole batch, so one example changes every other example's gradient and "
        "per-sample clipping no longer bounds its influence; it also stores running "
        "statistics of private data without noise. Use nn.GroupNorm or nn.LayerNorm instead."
    ]


@register_validator(_InstanceNorm)
def _instance_norm(name: str, module: nn.Module) -> list[str]:
    if getattr(module, "track_running_stats", False):
        return [
            f"{name} ({type(module).__name__}) has track_running_stats=True: its running "
            "mean and variance are computed from private data and released without noise. "
            "Build it with track_running_stats=False, or use nn.GroupNorm / nn.LayerNorm."
        ]
    return []


def _validator_for(module: nn.Module) -> Validator | None:
    for klass in type(module).__mro__:
        if klass in _VALIDATORS:
            return _VALIDATORS[klass]
    return None


def problems(module: nn.Module) -> list[str]:
    """Every reason why ``module`` cannot be trained with DP-SGD (empty when it can)."""
    found: list[str] = []
    owners: dict[int, list[str]] = {}
    for name, sub in module.named_modules():
        check = _validator_for(sub)
        if check is not None:
            found.extend(check(name or "<root>", sub))
        for pname, p in sub.named_parameters(recurse=False):
            if p.requires_grad:
                owners.setdefault(id(p), []).append(f"{name or '<root>'}.{pname}")
    for names in owners.values():
        if len(names) > 1:
            found.append(
                f"{' and '.join(names)} are one parameter shared by several layers (tied "
                "weights): per-sample gradient norms are computed layer by layer and would "
                "miss the cross terms, under-clipping. Untie them (separate parameters), or "
                "reuse one layer module instead of sharing its weight."
            )
    return found


def validate(module: nn.Module) -> None:
    """Raise one ``ValueError`` that lists every DP problem of ``module``; else return None."""
    found = problems(module)
    if found:
        lines = "\n".join(f"  - {p}" for p in found)
        raise ValueError(
            f"This model cannot be trained with differential privacy ({len(found)} "
            f"problem{'s' if len(found) > 1 else ''}):\n{lines}"
        )
