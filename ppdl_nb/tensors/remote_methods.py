"""The torch.Tensor methods a pointer offers, declared one by one.

Each is a :class:`RemoteMethod`: ``ptr.sum(dim=0)`` calls ``torch.Tensor.sum`` through
the pointer's ``__torch_function__``, the one path every torch call on a pointer takes
(``torch.sum(ptr)`` too), so the worker's allowlist
(:data:`ppdl_nb.workers.core.ops.OPS`) decides what runs and no method has a path of its
own. Declaring a method that the allowlist lacks fails when the class is made.

>>> import torch
>>> class Echo(TensorMethods):
...     @classmethod
...     def __torch_function__(cls, func, types, args=(), kwargs=None):
...         return func.__name__, args[1:]
>>> Echo().sum(0), Echo() + 1
(('sum', (0,)), ('__add__', (1,)))
>>> Echo.sum.__doc__
'Remote ``torch.Tensor.sum``: runs on the worker, returns a pointer.'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ppdl_nb.workers.core.ops import op_name

__all__ = ["RemoteMethod", "TensorMethods"]


class RemoteMethod:
    """A method that runs ``torch.Tensor.<its name>`` where the tensor lives.

    The name is the attribute it is assigned to; ``inplace=True`` returns the pointer
    itself (the remote tensor changed) rather than a pointer to a new result.
    """

    def __init__(self, *, inplace: bool = False) -> None:
        self.inplace = inplace

    def __set_name__(self, owner: type, name: str) -> None:
        func = getattr(torch.Tensor, name, None)
        if func is None or op_name(func) is None:
            raise TypeError(f"{owner.__name__}.{name}: torch.Tensor.{name} is not an "
                            "allowlisted operation (ppdl_nb.workers.core.ops.OPS); add it "
                            "there first or do not declare it")
        inplace = self.inplace

        def method(this: Any, *args: Any, **kwargs: Any) -> Any:
            result = type(this).__torch_function__(func, (type(this),), (this, *args), kwargs)
            return this if inplace else result

        method.__name__ = method.__qualname__ = name
        method.__doc__ = (f"Remote ``torch.Tensor.{name}``: runs on the worker, returns "
                          + ("this pointer (changed in place)." if inplace else "a pointer."))
        self.method: Callable[..., Any] = method

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self.method if obj is None else self.method.__get__(obj, objtype)


class TensorMethods:
    """Mixin: torch.Tensor's methods for a class whose ``__torch_function__`` runs them."""

    # operators: ``x + y``, ``x @ w``, ``x[0]``, ``x < 0``, ...
    __add__ = RemoteMethod()
    __radd__ = RemoteMethod()
    __sub__ = RemoteMethod()
    __rsub__ = RemoteMethod()
    __mul__ = RemoteMethod()
    __rmul__ = RemoteMethod()
    __truediv__ = RemoteMethod()
    __rtruediv__ = RemoteMethod()
    __floordiv__ = RemoteMethod()
    __matmul__ = RemoteMethod()
    __rmatmul__ = RemoteMethod()
    __pow__ = RemoteMethod()
    __rpow__ = RemoteMethod()
    __mod__ = RemoteMethod()
    __neg__ = RemoteMethod()
    __abs__ = RemoteMethod()
    __eq__ = RemoteMethod()
    __ne__ = RemoteMethod()
    __lt__ = RemoteMethod()
    __le__ = RemoteMethod()
    __gt__ = RemoteMethod()
    __ge__ = RemoteMethod()
    __and__ = RemoteMethod()
    __or__ = RemoteMethod()
    __xor__ = RemoteMethod()
    __invert__ = RemoteMethod()
    __getitem__ = RemoteMethod()
    # arithmetic and elementwise math
    abs = RemoteMethod()
    add = RemoteMethod()
    sub = RemoteMethod()
    mul = RemoteMethod()
    div = RemoteMethod()
    matmul = RemoteMethod()
    mm = RemoteMethod()
    neg = RemoteMethod()
    pow = RemoteMethod()
    clamp = RemoteMethod()
    exp = RemoteMethod()
    log = RemoteMethod()
    sqrt = RemoteMethod()
    square = RemoteMethod()
    sin = RemoteMethod()
    cos = RemoteMethod()
    tanh = RemoteMethod()
    sigmoid = RemoteMethod()
    relu = RemoteMethod()
    softmax = RemoteMethod()
    sign = RemoteMethod()
    round = RemoteMethod()
    # comparisons
    eq = RemoteMethod()
    ne = RemoteMethod()
    lt = RemoteMethod()
    le = RemoteMethod()
    gt = RemoteMethod()
    ge = RemoteMethod()
    # reductions
    sum = RemoteMethod()
    mean = RemoteMethod()
    prod = RemoteMethod()
    max = RemoteMethod()
    min = RemoteMethod()
    argmax = RemoteMethod()
    argmin = RemoteMethod()
    norm = RemoteMethod()
    std = RemoteMethod()
    var = RemoteMethod()
    cumsum = RemoteMethod()
    # shapes and copies
    reshape = RemoteMethod()
    view = RemoteMethod()
    view_as = RemoteMethod()
    flatten = RemoteMethod()
    squeeze = RemoteMethod()
    unsqueeze = RemoteMethod()
    expand = RemoteMethod()
    permute = RemoteMethod()
    transpose = RemoteMethod()
    t = RemoteMethod()
    repeat = RemoteMethod()
    contiguous = RemoteMethod()
    clone = RemoteMethod()
    masked_fill = RemoteMethod()
    # dtypes and devices
    to = RemoteMethod()
    type_as = RemoteMethod()
    bool = RemoteMethod()
    byte = RemoteMethod()
    int = RemoteMethod()
    long = RemoteMethod()
    half = RemoteMethod()
    float = RemoteMethod()
    double = RemoteMethod()
    # autograd
    backward = RemoteMethod()
    detach = RemoteMethod()
    # in place: they change the remote tensor and return this pointer
    zero_ = RemoteMethod(inplace=True)
    add_ = RemoteMethod(inplace=True)
    sub_ = RemoteMethod(inplace=True)
    mul_ = RemoteMethod(inplace=True)
    div_ = RemoteMethod(inplace=True)
    clamp_ = RemoteMethod(inplace=True)
    requires_grad_ = RemoteMethod(inplace=True)
