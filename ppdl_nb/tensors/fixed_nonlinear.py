"""Comparisons, ReLU, max and pooling on fixed-precision (and shared) tensors.

The PySyft idioms: ``x < y``, ``x == y``, ``x.relu()``, ``F.relu(x)``, ``x.max()``,
``x.max(dim)``, ``x.argmax(dim)`` (and ``min``, ``argmin``), ``F.max_pool2d``,
``F.avg_pool2d``, ``x.abs()``, ``x.sign()``, ``x.clamp(lo, hi)``, ``F.hardtanh``,
``F.relu6``, ``F.leaky_relu``, ``torch.maximum`` / ``minimum``, ``x ** 2``. On a shared tensor they
run the secure comparison of :mod:`ppdl_nb.mpc.comparison` among the parties (4 rounds
per comparison) and return a *shared* fixed-precision tensor, never a Python bool: tests
give 0.0 / 1.0 (and indices as values), so they mix with values (``x * (x > 0)``). On a
local fixed-precision tensor they compute on the decoded values. Registered into
:data:`~ppdl_nb.tensors.fixed.HANDLED` (``__torch_function__``) on import.

Exact for values whose differences do not wrap: encoded ``|x| < 2^62`` (2^46 ~ 7e13 at
16 fractional bits).

>>> import torch
>>> from ppdl_nb.tensors.fixed import fix_precision
>>> x = fix_precision(torch.tensor([1.5, -2.0]))
>>> (x > 0).get().tolist(), x.relu().get().tolist(), x.max().get().item()
([1.0, 0.0], [1.5, 0.0], 1.5)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ppdl_nb import mpc
from ppdl_nb.tensors.fixed import FixedPrecisionTensor, _pair, implements, square, sub

__all__ = ["MaxResult"]

T = torch.Tensor
_TESTS = {"lt": (torch.lt, T.lt, T.__lt__), "le": (torch.le, T.le, T.__le__),
          "gt": (torch.gt, T.gt, T.__gt__), "ge": (torch.ge, T.ge, T.__ge__),
          "eq": (torch.eq, T.eq, T.__eq__), "ne": (torch.ne, T.ne, T.__ne__)}


class MaxResult(NamedTuple):
    """``x.max(dim)``: values and (first) indices, as torch's ``(values, indices)``."""

    values: FixedPrecisionTensor
    indices: FixedPrecisionTensor


def _plain(a: FixedPrecisionTensor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A local fixed-precision tensor: the op on its decoded value, encoded again."""
    out = fn(mpc.decode(a.child, a.frac_bits), *args, **kwargs)
    return FixedPrecisionTensor(mpc.encode(out.double(), a.frac_bits), a.frac_bits)


def _shared(a: FixedPrecisionTensor, fn: str, *others: FixedPrecisionTensor, test: bool = False,
            **params: Any) -> FixedPrecisionTensor:
    out = a.child.nonlinear(fn, *[o.child for o in others], **params)
    if test:  # integer 0/1 (or -1) -> fixed point, exactly
        out = out.mul_public(1 << a.frac_bits)
    return FixedPrecisionTensor(out, a.frac_bits)


def _test(op: str) -> Any:
    def compare(a: Any, b: Any) -> FixedPrecisionTensor:
        a, b = _pair(a, b)
        if not (a.shared or b.shared):
            local = _TESTS[op][0](a.child, b.child).to(torch.int64) << a.frac_bits
            return FixedPrecisionTensor(local, a.frac_bits)
        return _shared(sub(a, b), "cmp", test=True, op=op)

    compare.__name__ = op
    return compare


for _op, _funcs in _TESTS.items():
    implements(*_funcs)(_test(_op))


@implements(torch.relu, T.relu, F.relu)
def relu(a: FixedPrecisionTensor, inplace: bool = False) -> FixedPrecisionTensor:
    if inplace:
        raise TypeError("in-place relu_ is not supported on fixed-precision tensors; use "
                        "relu(x) or x.relu()")
    return _shared(a, "relu") if a.shared else _plain(a, torch.relu)


@implements(torch.abs, T.abs)
def fp_abs(a: FixedPrecisionTensor) -> FixedPrecisionTensor:
    return _shared(a, "abs") if a.shared else _plain(a, torch.abs)


@implements(torch.sign, T.sign)
def sign(a: FixedPrecisionTensor) -> FixedPrecisionTensor:
    return _shared(a, "sign", test=True) if a.shared else _plain(a, torch.sign)


@implements(torch.maximum, T.maximum)
def maximum(a: Any, b: Any) -> FixedPrecisionTensor:
    a, b = _pair(a, b)
    if not (a.shared or b.shared):
        return _plain(a, lambda v: torch.maximum(v, mpc.decode(b.child, b.frac_bits)))
    # max(a, b) = b + relu(a - b): one comparison, whichever side is public
    return sub(a, b).relu() + b


def _bound(a: FixedPrecisionTensor, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor | FixedPrecisionTensor):
        raise TypeError("clamp bounds must be numbers on a fixed-precision tensor")
    return int(mpc.encode(torch.tensor(float(v)), a.frac_bits))


@implements(torch.clamp, T.clamp, torch.clip, T.clip)
def clamp(a: FixedPrecisionTensor, min: Any = None, max: Any = None  # noqa: A002
          ) -> FixedPrecisionTensor:
    if not a.shared:
        return _plain(a, torch.clamp, min, max)
    lo, hi = _bound(a, min), _bound(a, max)
    return _shared(a, "clamp", lo=lo, hi=hi)


def _max_over(a: FixedPrecisionTensor, dim: Any, keepdim: bool) -> MaxResult:
    """Values and indices of the max over ``dim`` (over all elements if None)."""
    if dim is None:
        a, dim = a.reshape(-1), 0
    if not a.shared:
        v, i = torch.max(mpc.decode(a.child, a.frac_bits), dim, keepdim)
        enc = [FixedPrecisionTensor(mpc.encode(t.double(), a.frac_bits), a.frac_bits)
               for t in (v, i)]
        return MaxResult(*enc)
    both = a.child.nonlinear("max", dim=int(dim), frac_bits=a.frac_bits)
    parts = [both.apply(lambda t, j=j: t[j].unsqueeze(dim) if keepdim else t[j])
             for j in (0, 1)]
    return MaxResult(*[FixedPrecisionTensor(p, a.frac_bits) for p in parts])


@implements(torch.max, T.max)
def fp_max(a: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``x.max()`` (a value), ``x.max(dim)`` (values, indices), ``torch.max(x, y)``."""
    if not isinstance(a, FixedPrecisionTensor) or isinstance(
            dim, FixedPrecisionTensor | torch.Tensor | float):
        return maximum(a, dim)  # torch.max(a, b): the elementwise form
    res = _max_over(a, dim, keepdim)
    return res.values if dim is None else res


@implements(torch.amax, T.amax)
def amax(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
         ) -> FixedPrecisionTensor:
    return _max_over(a, dim, keepdim and dim is not None).values


@implements(torch.argmax, T.argmax)
def argmax(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
           ) -> FixedPrecisionTensor:
    """Indices (as fixed-precision values) of the first maximum, as ``torch.argmax``."""
    return _max_over(a, dim, keepdim and dim is not None).indices


@implements(torch.min, T.min)
def fp_min(a: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``x.min()``, ``x.min(dim)`` (values, first indices), ``torch.min(x, y)``: the max
    of ``-x``."""
    if not isinstance(a, FixedPrecisionTensor) or isinstance(
            dim, FixedPrecisionTensor | torch.Tensor | float):
        return minimum(a, dim)
    res = _max_over(-a, dim, keepdim)
    return -res.values if dim is None else MaxResult(-res.values, res.indices)


@implements(torch.minimum, T.minimum)
def minimum(a: Any, b: Any) -> FixedPrecisionTensor:
    a, b = _pair(a, b)
    return -maximum(-a, -b)


@implements(torch.amin, T.amin)
def amin(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
         ) -> FixedPrecisionTensor:
    return -_max_over(-a, dim, keepdim and dim is not None).values


@implements(torch.argmin, T.argmin)
def argmin(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
           ) -> FixedPrecisionTensor:
    """Indices of the first minimum, as ``torch.argmin``."""
    return _max_over(-a, dim, keepdim and dim is not None).indices


@implements(F.hardtanh)
def hardtanh(a: FixedPrecisionTensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> FixedPrecisionTensor:
    if inplace:
        raise TypeError("in-place hardtanh_ is not supported on fixed-precision tensors")
    return clamp(a, min_val, max_val)


@implements(F.relu6)
def relu6(a: FixedPrecisionTensor, inplace: bool = False) -> FixedPrecisionTensor:
    return hardtanh(a, 0.0, 6.0, inplace)


@implements(F.leaky_relu)
def leaky_relu(a: FixedPrecisionTensor, negative_slope: float = 0.01,
               inplace: bool = False) -> FixedPrecisionTensor:
    """``slope x + (1 - slope) relu(x)``: one comparison and public products."""
    if inplace:
        raise TypeError("in-place leaky_relu_ is not supported on fixed-precision tensors")
    return a * float(negative_slope) + relu(a) * (1.0 - float(negative_slope))


@implements(F.max_pool2d, F.max_pool2d_with_indices)
def max_pool2d(x: FixedPrecisionTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False
               ) -> FixedPrecisionTensor:
    if dilation not in (1, (1, 1)) or ceil_mode or return_indices:
        raise TypeError("max_pool2d of a fixed-precision tensor supports kernel_size, stride "
                        "and padding only (no dilation, ceil_mode or return_indices)")
    if not x.shared:
        return _plain(x, F.max_pool2d, kernel_size, stride, padding)
    return _shared(x, "max_pool2d", kernel_size=kernel_size, stride=stride, padding=padding)


@implements(F.avg_pool2d)
def avg_pool2d(x: FixedPrecisionTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> FixedPrecisionTensor:
    if ceil_mode or not count_include_pad or divisor_override is not None:
        raise TypeError("avg_pool2d of a fixed-precision tensor supports kernel_size, stride "
                        "and padding only (zeros counted, as torch's default)")
    if not x.shared:
        return _plain(x, F.avg_pool2d, kernel_size, stride, padding)
    return _shared(x, "avg_pool2d", kernel_size=kernel_size, stride=stride, padding=padding)


@implements(torch.pow, T.pow, T.__pow__)
def power(a: FixedPrecisionTensor, exponent: Any) -> FixedPrecisionTensor:
    """``x ** k`` for an int ``k >= 1`` (squares and products, truncated each time)."""
    if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 1:
        raise TypeError(f"x ** {exponent!r}: fixed-precision tensors take int powers >= 1 "
                        "only (an approximation is needed for the rest)")
    result, base = None, a
    while exponent:
        if exponent & 1:
            result = base if result is None else result * base
        exponent >>= 1
        if exponent:
            base = square(base)
    return result
