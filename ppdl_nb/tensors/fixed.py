"""Fixed precision: real numbers as integers in Z_2^64, the link above a shared tensor.

``FixedPrecisionTensor(child, frac_bits)`` reads its child as ``value * 2^frac_bits``.
The child is a local int64 tensor or a :class:`SharedTensor`; products are truncated
back to ``frac_bits`` fractional bits (exactly, to one unit in the last place).
Torch functions work on it through ``__torch_function__`` and a registry of handlers.

>>> import torch
>>> x = fix_precision(torch.tensor([1.5, -2.25]))
>>> (x * x).get()
tensor([2.2500, 5.0625], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ppdl_nb import mpc
from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.tensors.pointer import PointerTensor
from ppdl_nb.tensors.shaped import Shaped
from ppdl_nb.tensors.shared import SharedTensor
from ppdl_nb.tensors.spdz.session import session_for

__all__ = ["FixedPrecisionTensor", "fix_precision", "share"]

HANDLED: dict[Any, Callable[..., Any]] = {}


def implements(*funcs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for these torch functions (and their Tensor-method forms)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in funcs:
            HANDLED[f] = fn
        return fn

    return register


class FixedPrecisionTensor(Shaped):
    """Reals encoded with ``frac_bits`` fractional bits; the child holds the ring values."""

    NO_TRUTH = ("the value of a fixed-precision/shared tensor is not here (for a shared one, "
                "no party knows it), so Python cannot branch on it; open it with .get() if "
                "you are allowed to, and test the plain tensor")

    def __init__(self, child: torch.Tensor | SharedTensor, frac_bits: int) -> None:
        self.child = child
        self.frac_bits = frac_bits

    @property
    def shape(self) -> torch.Size:
        return self.child.shape

    @property
    def shared(self) -> bool:
        return isinstance(self.child, SharedTensor)

    def __repr__(self) -> str:
        return chain_text(self)

    # <, ==, relu, max, argmax, ** ...: methods set below the class (_via), handlers
    # in fixed_nonlinear.py
    __hash__ = object.__hash__  # identity, as a torch.Tensor's

    def get(self) -> torch.Tensor:
        """Decode the value here (for a shared child: open it, if its owners allow)."""
        ring = self.child.get() if self.shared else self.child
        return mpc.decode(ring, self.frac_bits)

    def reveal_to(self, worker: Any) -> PointerTensor:
        """Open and decode the value on ``worker`` alone; returns a pointer to it there."""
        if not self.shared:
            raise ValueError("this tensor is not shared; send it with ppdl_nb.send instead")
        return self.child.reveal_to(worker, frac_bits=self.frac_bits)

    def share(self, *parties: Any, dealer: Any) -> FixedPrecisionTensor:
        """Secret-share the encoded value among ``parties`` (``dealer`` supplies triples)."""
        if self.shared:
            raise ValueError("this tensor is already shared")
        sess = session_for(parties, dealer)
        return FixedPrecisionTensor(SharedTensor.from_ring(self.child, sess), self.frac_bits)

    # ---- torch integration ---------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        handler = HANDLED.get(func)
        if handler is None:
            name = getattr(func, "__qualname__", repr(func))
            raise TypeError(f"{name} is not supported on fixed-precision/shared tensors; "
                            f"supported: {sorted({h.__name__ for h in HANDLED.values()})}")
        return handler(*args, **(kwargs or {}))

    def __add__(self, other: Any) -> FixedPrecisionTensor:
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> FixedPrecisionTensor:
        return sub(self, other)

    def __rsub__(self, other: Any) -> FixedPrecisionTensor:
        return add(neg(self), other)

    def __neg__(self) -> FixedPrecisionTensor:
        return neg(self)

    def __mul__(self, other: Any) -> FixedPrecisionTensor:
        return mul(self, other)

    __rmul__ = __mul__

    def __matmul__(self, other: Any) -> FixedPrecisionTensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> FixedPrecisionTensor:
        return matmul(_lift(other, self), self)

    def __truediv__(self, other: Any) -> FixedPrecisionTensor:
        return div(self, other)

    def __getitem__(self, index: Any) -> FixedPrecisionTensor:
        return self._map(lambda t: t[index])

    def sum(self, dim: Any = None, keepdim: bool = False) -> FixedPrecisionTensor:
        return fp_sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> FixedPrecisionTensor:
        return mean(self, dim, keepdim)

    def square(self) -> FixedPrecisionTensor:
        return square(self)

    def reshape(self, *shape: Any) -> FixedPrecisionTensor:
        return self._map(lambda t: t.reshape(*shape))

    view = reshape

    def t(self) -> FixedPrecisionTensor:
        return self._map(lambda t: t.t())

    @property
    def T(self) -> FixedPrecisionTensor:
        return self.t()

    def transpose(self, d0: int, d1: int) -> FixedPrecisionTensor:
        return self._map(lambda t: t.transpose(d0, d1))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> FixedPrecisionTensor:
        return self._map(lambda t: t.flatten(start_dim, end_dim))

    def _map(self, fn: Callable[[Any], Any]) -> FixedPrecisionTensor:
        child = self.child.apply(fn) if self.shared else fn(self.child)
        return FixedPrecisionTensor(child, self.frac_bits)


def _via(func: Any, name: str) -> Callable[..., Any]:
    """A method that runs the handler registered for ``func`` (see fixed_nonlinear.py)."""

    def method(self: FixedPrecisionTensor, *args: Any, **kwargs: Any) -> Any:
        return HANDLED[func](self, *args, **kwargs)

    method.__name__ = name
    return method


for _name, _func in [("__lt__", torch.Tensor.__lt__), ("__le__", torch.Tensor.__le__),
                     ("__gt__", torch.Tensor.__gt__), ("__ge__", torch.Tensor.__ge__),
                     ("__eq__", torch.Tensor.__eq__), ("__ne__", torch.Tensor.__ne__),
                     ("__pow__", torch.Tensor.__pow__), ("relu", torch.relu),
                     ("abs", torch.abs), ("sign", torch.sign), ("clamp", torch.clamp),
                     ("max", torch.max), ("amax", torch.amax), ("argmax", torch.argmax),
                     ("min", torch.min), ("amin", torch.amin), ("argmin", torch.argmin),
                     ("mm", torch.mm)]:
    setattr(FixedPrecisionTensor, _name, _via(_func, _name))


def fix_precision(x: torch.Tensor, *, frac_bits: int = mpc.DEFAULT_FRAC_BITS
                  ) -> FixedPrecisionTensor:
    """Encode a float tensor (checked against overflow) as a fixed-precision tensor."""
    return FixedPrecisionTensor(mpc.encode(x, frac_bits), frac_bits)


def share(x: torch.Tensor | PointerTensor, *parties: Any, dealer: Any,
          frac_bits: int = mpc.DEFAULT_FRAC_BITS) -> FixedPrecisionTensor:
    """Secret-share ``x`` among ``parties`` with ``dealer`` as crypto provider.

    A local tensor is shared by the notebook; a pointer is shared by the worker holding
    it, which sends the shares straight to the parties (so private data can be shared
    without ever reaching the notebook).
    """
    sess = session_for(parties, dealer)
    if isinstance(x, PointerTensor):
        return FixedPrecisionTensor(SharedTensor.from_pointer(x, sess, frac_bits), frac_bits)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"share() takes a tensor or a pointer, not {type(x).__name__}")
    return fix_precision(x, frac_bits=frac_bits).share(*parties, dealer=dealer)


# ---- handlers ------------------------------------------------------------------------------
def _lift(value: Any, like: FixedPrecisionTensor) -> FixedPrecisionTensor:
    """A public value as a (local) fixed-precision tensor with ``like``'s precision."""
    if isinstance(value, FixedPrecisionTensor):
        if value.frac_bits != like.frac_bits:
            raise ValueError(f"precisions differ: {value.frac_bits} vs {like.frac_bits} "
                             "fractional bits; encode both with the same frac_bits")
        return value
    if isinstance(value, int | float):
        value = torch.tensor(float(value))
    if isinstance(value, torch.Tensor):
        return fix_precision(value.double(), frac_bits=like.frac_bits)
    raise TypeError(f"cannot combine a fixed-precision tensor with {type(value).__name__}")


def _pair(a: Any, b: Any) -> tuple[FixedPrecisionTensor, FixedPrecisionTensor]:
    like = a if isinstance(a, FixedPrecisionTensor) else b
    return _lift(a, like), _lift(b, like)


@implements(torch.add, torch.Tensor.add, torch.Tensor.__add__)
def add(a: Any, b: Any) -> FixedPrecisionTensor:
    a, b = _pair(a, b)
    if a.shared and b.shared:
        child = a.child.add(b.child)
    elif a.shared or b.shared:
        s, p = (a, b) if a.shared else (b, a)
        child = s.child.add_public(p.child)
    else:
        child = a.child + b.child
    return FixedPrecisionTensor(child, a.frac_bits)


@implements(torch.neg, torch.Tensor.neg, torch.Tensor.__neg__)
def neg(a: FixedPrecisionTensor) -> FixedPrecisionTensor:
    return FixedPrecisionTensor(a.child.neg() if a.shared else -a.child, a.frac_bits)


@implements(torch.sub, torch.Tensor.sub, torch.Tensor.__sub__)
def sub(a: Any, b: Any) -> FixedPrecisionTensor:
    a, b = _pair(a, b)
    return add(a, neg(b))


def _local_truncate(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.div(x, 1 << bits, rounding_mode="floor")


def _product(kind: str, a: Any, b: Any, **params: Any) -> FixedPrecisionTensor:
    if isinstance(b, int) and not isinstance(b, bool) and kind == "mul":
        child = a.child.mul_public(b) if a.shared else a.child * b
        return FixedPrecisionTensor(child, a.frac_bits)
    a, b = _pair(a, b)
    f = a.frac_bits
    if a.shared and b.shared:
        method = {"mul": a.child.mul, "matmul": a.child.matmul, "conv2d": a.child.conv2d}[kind]
        return FixedPrecisionTensor(method(b.child, trunc_bits=f, **params), f)
    local = {"mul": torch.mul, "matmul": mpc.ring_matmul,
             "conv2d": lambda x, w, **kw: mpc.ring_conv2d(x, w, **kw)}[kind]
    if not (a.shared or b.shared):
        return FixedPrecisionTensor(_local_truncate(local(a.child, b.child, **params), f), f)
    shared, public = (a, b) if a.shared else (b, a)
    if kind == "mul":
        prod = shared.child.mul_public(public.child)
    else:
        args = (shared.child, public.child) if a.shared else (public.child, shared.child)
        prod = _public_bilinear(local, *args, **params)
    return FixedPrecisionTensor(prod.truncate(f), f)


def _public_bilinear(op: Callable[..., Any], x: Any, y: Any, **params: Any) -> SharedTensor:
    """A bilinear op with one public side: each party applies it to its share."""
    shared = x if isinstance(x, SharedTensor) else y
    name = "torch.matmul" if op is mpc.ring_matmul else "F.conv2d"
    fn = torch.matmul if name == "torch.matmul" else F.conv2d
    if isinstance(x, SharedTensor):
        return shared.apply(lambda s: fn(s, y, **params))
    return shared.apply(lambda s: fn(x, s, **params))


@implements(torch.mul, torch.Tensor.mul, torch.Tensor.__mul__)
def mul(a: Any, b: Any) -> FixedPrecisionTensor:
    if not isinstance(a, FixedPrecisionTensor):
        a, b = b, a
    return _product("mul", a, b)


@implements(torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm,
            torch.Tensor.mm)
def matmul(a: Any, b: Any) -> FixedPrecisionTensor:
    return _product("matmul", a, b) if isinstance(a, FixedPrecisionTensor) else _product(
        "matmul", _lift(a, b), b)


@implements(F.conv2d)
def conv2d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> FixedPrecisionTensor:
    like = x if isinstance(x, FixedPrecisionTensor) else weight
    out = _product("conv2d", _lift(x, like), _lift(weight, like), stride=stride,
                   padding=padding, dilation=dilation, groups=groups)
    if bias is not None:
        out = add(out, _lift(bias, like).reshape(1, -1, 1, 1))
    return out


@implements(F.linear)
def linear(x: Any, weight: Any, bias: Any = None) -> FixedPrecisionTensor:
    like = x if isinstance(x, FixedPrecisionTensor) else weight
    out = matmul(_lift(x, like), _lift(weight, like).t())
    return out if bias is None else add(out, bias)


@implements(torch.square, torch.Tensor.square)
def square(a: FixedPrecisionTensor) -> FixedPrecisionTensor:
    if not a.shared:
        return _product("mul", a, a)
    return FixedPrecisionTensor(a.child.square(trunc_bits=a.frac_bits), a.frac_bits)


@implements(torch.sum, torch.Tensor.sum)
def fp_sum(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
           ) -> FixedPrecisionTensor:
    if dim is None:
        return a._map(lambda t: t.sum())
    return a._map(lambda t: t.sum(dim, keepdim=keepdim))


DIV_EXTRA_BITS = 12


@implements(torch.div, torch.Tensor.div, torch.Tensor.__truediv__)
def div(a: FixedPrecisionTensor, b: Any) -> FixedPrecisionTensor:
    """Division by a public number: multiply by its inverse, held with extra precision.

    The inverse carries ``frac_bits + 12`` fractional bits, so the result is within one
    unit in the last place for ``|a / 2^12| < 2^(46 - frac_bits)`` (|a| < 2^18 at 16 bits).
    """
    if isinstance(b, FixedPrecisionTensor):
        raise TypeError("division by a fixed-precision/shared tensor is not supported; "
                        "divide by a public number")
    b = torch.as_tensor(b, dtype=torch.float64)
    if (b == 0).any():
        raise ZeroDivisionError("division of a fixed-precision tensor by zero")
    bits = a.frac_bits + DIV_EXTRA_BITS
    inverse = torch.round(torch.ldexp(1.0 / b, torch.tensor(bits))).to(torch.int64)
    if a.shared:
        return FixedPrecisionTensor(a.child.mul_public(inverse).truncate(bits), a.frac_bits)
    return FixedPrecisionTensor(_local_truncate(a.child * inverse, bits), a.frac_bits)


@implements(torch.mean, torch.Tensor.mean)
def mean(a: FixedPrecisionTensor, dim: Any = None, keepdim: bool = False
         ) -> FixedPrecisionTensor:
    total = fp_sum(a, dim, keepdim)
    count = a.shape.numel() if dim is None else a.shape[dim]
    return div(total, count)


def _join(fn: Callable[..., Any], tensors: Any, dim: int) -> FixedPrecisionTensor:
    first = tensors[0]
    children = [t.child for t in tensors]
    if first.shared:
        return FixedPrecisionTensor(SharedTensor.combine(fn, children, dim=dim), first.frac_bits)
    return FixedPrecisionTensor(fn(children, dim=dim), first.frac_bits)


@implements(torch.cat)
def cat(tensors: Any, dim: int = 0) -> FixedPrecisionTensor:
    return _join(torch.cat, tensors, dim)


@implements(torch.stack)
def stack(tensors: Any, dim: int = 0) -> FixedPrecisionTensor:
    return _join(torch.stack, tensors, dim)


def _fixed_chain(obj: FixedPrecisionTensor) -> list[Link]:
    link = Link("FixedPrecisionTensor", "me", shape=tuple(obj.shape),
                note=f"{obj.frac_bits} fractional bits")
    if obj.shared:
        return [link, *chain_of(obj.child)]
    return [link, Link("Tensor", "me", shape=tuple(obj.shape), dtype="int64")]


chain_of.register(FixedPrecisionTensor, _fixed_chain)
