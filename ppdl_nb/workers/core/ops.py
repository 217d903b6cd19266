"""The allowlist of operations a worker will run for a peer.

A peer names an operation by a string key (``"torch.add"``, ``"Tensor.sum"``,
``"F.relu"``); the worker looks the key up in :data:`OPS` and nothing else. No
``getattr`` ever runs on a name that came over the wire. The same table maps a
function object back to its key (:func:`op_name`) for pointers and model graphs.

>>> op_name(torch.add)
'torch.add'
>>> OPS["torch.add"] is torch.add
True
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["OPS", "TENSOR_ATTRS", "op", "op_name", "resolve"]

OPS: dict[str, Callable[..., Any]] = {}
_NAMES: dict[Any, str] = {}


def op(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Register ``fn`` under ``name``; usable as a decorator. Later layers add their own."""

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        if name in OPS and OPS[name] is not f:
            raise ValueError(f"operation {name!r} is already registered")
        OPS[name] = f
        _NAMES.setdefault(f, name)
        return f

    return register if fn is None else register(fn)


def op_name(fn: Any) -> str | None:
    """The allowlist key of a function object, or None if it is not allowed."""
    try:
        return _NAMES.get(fn)
    except TypeError:  # unhashable
        return None


def resolve(name: str) -> Callable[..., Any]:
    """The function registered as ``name``; a clear KeyError if it is not allowed."""
    if not isinstance(name, str) or name not in OPS:
        raise KeyError(
            f"operation {name!r} is not in the allowlist of {len(OPS)} operations; "
            "workers run only allowlisted ops (see ppdl_nb.workers.core.ops.OPS)"
        )
    return OPS[name]


_TORCH_FUNCTIONS = """
abs add addmm all any argmax argmin bmm cat ceil chunk clamp clip clone cos cosh cumsum
det diag diagonal div dot einsum eq exp expm1 flatten flip floor fmod ge gt isclose isnan
le log log1p log_softmax logsumexp lt matmul max maximum mean median min minimum mm mul
mv ne neg norm ones_like outer permute pow prod rand_like randn_like reciprocal relu
remainder reshape round rsqrt sigmoid sign sin sinh softmax split sqrt square squeeze
stack std sub sum t tanh tensordot topk trace transpose tril triu true_divide unbind
unsqueeze var where zeros_like
"""

_FUNCTIONAL = """
adaptive_avg_pool2d avg_pool2d binary_cross_entropy binary_cross_entropy_with_logits
conv1d conv2d cross_entropy dropout elu embedding gelu hardtanh l1_loss layer_norm
leaky_relu linear log_softmax logsigmoid max_pool2d mse_loss nll_loss normalize one_hot
pad relu relu6 sigmoid silu smooth_l1_loss softmax softplus tanh group_norm
"""

_TENSOR_METHODS = """
__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__
__matmul__ __rmatmul__ __pow__ __rpow__ __mod__ __neg__ __abs__ __eq__ __ne__ __lt__
__le__ __gt__ __ge__ __and__ __or__ __xor__ __invert__ __getitem__
abs add argmax argmin backward bool byte clamp clone contiguous cos cumsum detach div
double eq exp expand flatten float ge gt half int le log long lt masked_fill matmul max
mean min mm mul ne neg norm permute pow prod relu repeat reshape round sigmoid sign sin
softmax sqrt square squeeze std sub sum t tanh to transpose type_as unsqueeze var view
view_as zero_ requires_grad_ add_ sub_ mul_ div_ clamp_
"""

for _name in _TORCH_FUNCTIONS.split():
    op(f"torch.{_name}", getattr(torch, _name))
for _name in _FUNCTIONAL.split():
    op(f"F.{_name}", getattr(F, _name))
for _name in _TENSOR_METHODS.split():
    op(f"Tensor.{_name}", getattr(torch.Tensor, _name))
for _name in "add sub mul truediv floordiv matmul neg pow getitem mod".split():
    op(f"operator.{_name}", getattr(operator, _name))


# Attributes a graph may read from a tensor (``x.shape`` in a traced model). A fixed
# table, so an attribute name from a peer can only select one of these.
TENSOR_ATTRS: dict[str, Callable[[torch.Tensor], Any]] = {
    "shape": lambda t: t.shape,
    "T": lambda t: t.T,
    "mT": lambda t: t.mT,
    "ndim": lambda t: t.ndim,
    "dtype": lambda t: t.dtype,
    "grad": lambda t: t.grad,
}


@op("attr")
def tensor_attr(obj: torch.Tensor, name: str) -> Any:
    """Read one allowlisted attribute of a tensor."""
    if name not in TENSOR_ATTRS:
        raise KeyError(
            f"attribute {name!r} is not readable remotely; allowed: {sorted(TENSOR_ATTRS)}"
        )
    return TENSOR_ATTRS[name](obj)


@op("module.call")
def call_module(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Run a stored module on stored inputs."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module.call needs a module, got {type(module).__name__}")
    return module(*args, **kwargs)


@op("module.parameters")
def module_parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters of a stored module, in order (for training op by op)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module.parameters needs a module, got {type(module).__name__}")
    return list(module.parameters())


@op("optim.sgd_step")
def sgd_step(lr: float, *params: torch.Tensor) -> None:
    """One plain SGD step on stored parameters (``p -= lr * p.grad``), then clear grads."""
    if not isinstance(lr, int | float) or lr < 0:
        raise ValueError(f"lr must be a non-negative number, got {lr!r}")
    with torch.no_grad():
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"optim.sgd_step takes parameters, got {type(p).__name__}")
            if p.grad is not None:
                p.sub_(lr * p.grad)
                p.grad = None


@op("object.copy")
def copy_object(obj: Any) -> Any:
    """A copy of a stored object on the same worker (tensor, module, or pointer onwards)."""
    if isinstance(obj, torch.nn.Module):
        import copy

        return copy.deepcopy(obj)
    return torch.clone(obj)
