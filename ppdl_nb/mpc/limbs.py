"""Exact matmul and conv2d modulo 2^64, fast: int64 split into float64 limbs.

Why: on many torch builds int64 matmul gets no BLAS (25-34 ms for 256x256 against 0.3 ms
in float32). Split each int64 into ``L`` signed limbs of ``w`` bits,
``x = sum_i x_i 2^(w i) (mod 2^64)`` with ``|x_i| <= 2^(w-1)``. Then
``A @ B = sum_{i,j: w(i+j) < 64} (A_i @ B_j) 2^(w(i+j)) (mod 2^64)``. Each ``A_i @ B_j``
runs as a float64 BLAS matmul, and it is EXACT: every partial sum is an integer of size at
most ``k 2^(2w-2) <= 2^53`` (``k`` the inner dimension), so no rounding happens whatever
order BLAS adds in. :func:`limb_plan` picks the widest limbs that keep that bound:
22-bit limbs (3 limbs, 6 products) for ``k <= 2048``, 16-bit (4 limbs, 10 products) for
``k <= 2^23``; beyond that plain int64 is used. conv2d is the same with ``k`` the number of
terms per output (``in_channels / groups * kh * kw``).

Measured on torch 2.13 (x86-64, AVX-512) int64 matmul and conv2d are already fast (~0.6 ms
for 256x256, faster than float64), so the default ``method="auto"`` times both methods
once per process and op and keeps the faster. Results are bit-identical either way.

>>> import torch
>>> a = torch.randint(-2**63, 2**63 - 1, (4, 5)); b = torch.randint(-2**63, 2**63 - 1, (5, 3))
>>> bool((ring_matmul(a, b, method="limbs") == a @ b).all())
True
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from ppdl_nb.mpc.ring import check_ring, wrap

__all__ = ["limb_plan", "ring_addmm_", "ring_conv2d", "ring_matmul", "ring_method",
           "split_limbs"]

_METHODS = ("auto", "int64", "limbs")
_default_method = ["auto"]
_MANTISSA_BITS = 53


def limb_plan(k: int) -> tuple[int, int] | None:
    """``(limb_bits, n_limbs)`` keeping k-term float64 sums of limb products exact, or None.

    >>> limb_plan(256), limb_plan(4096), limb_plan(2**30)
    ((22, 3), (16, 4), None)
    """
    if k < 1:
        return None
    for n_limbs in (3, 4):  # more limbs need >= 15 products: int64 wins by then
        w = math.ceil(64 / n_limbs)
        if k * 2 ** (2 * w - 2) <= 2**_MANTISSA_BITS:
            return w, n_limbs
    return None


def split_limbs(x: torch.Tensor, limb_bits: int, n_limbs: int) -> list[torch.Tensor]:
    """Signed limbs ``x_i`` (float64) with ``x = sum x_i 2^(w i) mod 2^64``, ``|x_i| <= 2^(w-1)``.

    Adding ``half = 2^(w-1)`` at every limb position first makes the plain unsigned digits
    of the sum, minus ``half``, the balanced digits of ``x`` (the carries take care of
    themselves). Limbs pass through int32 on the way to float64, which is much faster
    than converting int64.
    """
    if not 2 <= limb_bits <= 31 or n_limbs * limb_bits < 64:
        raise ValueError(f"{n_limbs} limbs of {limb_bits} bits cannot hold 64 bits")
    half = 1 << (limb_bits - 1)
    mask = (1 << limb_bits) - 1
    offset = wrap(sum(half << (limb_bits * i) for i in range(n_limbs) if limb_bits * i < 64))
    y = x + offset
    return [
        (y >> (limb_bits * i)).bitwise_and_(mask).to(torch.int32).to(torch.float64).sub_(half)
        for i in range(n_limbs)
    ]


_MAGIC = 1.5 * 2.0**52  # adding it puts an integer |v| < 2^51 into the low mantissa bits
_MAGIC_BITS = int(torch.tensor([_MAGIC], dtype=torch.float64).view(torch.int64).item())
_MAGIC_SAFE = 2**50  # sums up to this size convert through the float trick


def _to_int64_(t: torch.Tensor, bound: int) -> torch.Tensor:
    """Exact float64 -> int64 of integer values of magnitude <= ``bound``; may reuse ``t``."""
    if bound <= _MAGIC_SAFE:  # the float trick, in place: much faster than .to(int64) on CPU
        return t.add_(_MAGIC).view(torch.int64).sub_(_MAGIC_BITS)
    return t.to(torch.int64)


def _limb_product(
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    plan: tuple[int, int],
) -> torch.Tensor:
    """``op(x, y) mod 2^64`` for a bilinear ``op`` whose outputs sum ``k`` products."""
    w, n = plan
    xs, ys = split_limbs(x, w, n), split_limbs(y, w, n)
    one = k * 2 ** (2 * w - 2)  # largest |op(x_i, y_j)|, exact in float64 by limb_plan
    group = max(1, _MAGIC_SAFE // one)  # products summed in float64 before converting
    out = None
    for s in range(n):
        if w * s >= 64:
            break
        pairs = [(i, s - i) for i in range(s + 1) if s - i < n]
        for start in range(0, len(pairs), group):
            chunk = pairs[start : start + group]
            acc = op(xs[chunk[0][0]], ys[chunk[0][1]])
            for i, j in chunk[1:]:
                acc.add_(op(xs[i], ys[j]))
            v = _to_int64_(acc, one * len(chunk))
            if s:
                v = v.mul_(wrap(1 << (w * s)))
            out = v if out is None else out.add_(v)
    if out is None:
        raise RuntimeError("no limb products computed")
    return out


def _time(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _timing_data(shape: tuple[int, ...]) -> torch.Tensor:
    """Fixed large-magnitude values for timing (kernels' speed does not depend on them)."""
    n = math.prod(shape)
    return (torch.arange(n, dtype=torch.int64) * wrap(0x9E3779B97F4A7C15)).reshape(shape)


@functools.cache
def _int64_is_fast(op: str) -> bool:
    """Whether this torch build's int64 kernel beats the limb method (timed once, best of 5)."""
    if op == "matmul":
        a = _timing_data((96, 96))
        plan = limb_plan(96)
        t_int = _time(lambda: a @ a, 5)
        t_limbs = _time(lambda: _limb_product(torch.matmul, a, a, 96, plan), 5)
    else:
        x, w = _timing_data((4, 8, 16, 16)), _timing_data((8, 8, 3, 3))
        plan = limb_plan(72)
        t_int = _time(lambda: F.conv2d(x, w), 5)
        t_limbs = _time(lambda: _limb_product(F.conv2d, x, w, 72, plan), 5)
    return t_int <= t_limbs


@contextlib.contextmanager
def ring_method(method: str) -> Iterator[None]:
    """Override the default method (``"auto"``, ``"int64"`` or ``"limbs"``) in a block."""
    _check_method(method)
    _default_method.append(method)
    try:
        yield
    finally:
        _default_method.pop()


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return method


def _resolve(method: str | None, op: str, k: int) -> tuple[int, int] | None:
    method = _check_method(_default_method[-1] if method is None else method)
    plan = limb_plan(k)
    if method == "int64" or plan is None:
        return None
    if method == "auto" and _int64_is_fast(op):
        return None
    return plan


def ring_matmul(a: torch.Tensor, b: torch.Tensor, *, method: str | None = None) -> torch.Tensor:
    """``a @ b`` modulo 2^64 (torch.matmul semantics, batching included), bit-exact."""
    check_ring(a, "a")
    check_ring(b, "b")
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("ring_matmul needs tensors with at least one dimension")
    k = a.shape[-1]
    plan = _resolve(method, "matmul", k)
    if plan is None or a.numel() == 0 or b.numel() == 0:
        return torch.matmul(a, b)
    squeeze_a, squeeze_b = a.dim() == 1, b.dim() == 1
    if squeeze_a:
        a = a.unsqueeze(0)
    if squeeze_b:
        b = b.unsqueeze(-1)
    out = _limb_product(torch.matmul, a, b, k, plan)
    if squeeze_a:
        out = out.squeeze(-2)
    if squeeze_b:
        out = out.squeeze(-1)
    return out


def ring_addmm_(z: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *,
                method: str | None = None) -> torch.Tensor:
    """``z += a @ b`` modulo 2^64, in place (one pass fewer than ``z += ring_matmul(a, b)``
    where the int64 kernel is used: it accumulates straight into ``z``)."""
    check_ring(z, "z")
    check_ring(a, "a")
    check_ring(b, "b")
    if (a.dim() == 2 and b.dim() == 2 and z.shape == (a.shape[0], b.shape[1])
            and z.is_contiguous() and _resolve(method, "matmul", a.shape[-1]) is None):
        return z.addmm_(a, b)
    z += ring_matmul(a, b, method=method)
    return z


def ring_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    method: str | None = None,
) -> torch.Tensor:
    """``conv2d(x, weight)`` modulo 2^64 (no bias), bit-exact; arguments as in torch."""
    check_ring(x, "x")
    check_ring(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(
            f"conv2d weight must be 4-D (out, in/groups, kh, kw), got {weight.dim()}-D"
        )
    k = weight.shape[1] * weight.shape[2] * weight.shape[3]
    conv = functools.partial(F.conv2d, stride=stride, padding=padding, dilation=dilation,
                             groups=groups)
    plan = _resolve(method, "conv2d", k)
    if plan is None or x.numel() == 0 or weight.numel() == 0:
        return conv(x, weight)
    return _limb_product(conv, x, weight, k, plan)
