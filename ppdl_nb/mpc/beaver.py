"""Multiplication of shared values with Beaver triples: one opening round per product.

For ``z = x * y`` with a dealer triple ``c = a * b`` (any bilinear op: ``*``, ``@``,
conv2d and its two gradients), each party masks its shares and the masked values are opened:

* round 1, every party ``i``: :func:`beaver_open` -> ``(eps_i, delta_i) = (x_i - a_i,
  y_i - b_i)``; send both in one message to every peer (workers send the two tensors
  as two buffers of one message; :func:`~ppdl_nb.mpc.sharing.pack` makes one tensor);
  sum everyone's to get ``eps = x - a`` and ``delta = y - b``. They are uniformly
  random, so they reveal nothing about ``x`` or ``y``.
* local, every party ``i``: ``beaver_*_finish(i, eps, delta, a_i, b_i, c_i)`` -> ``z_i``,
  using ``x*y = c + eps*b + a*delta + eps*delta`` (party 0 alone adds ``eps*delta``).

Squares use a pair ``c = a^2`` and open only ``eps = x - a``.

The product of two fixed-point encodings carries twice the fractional bits: truncate it
afterwards (``truncation.py``).

>>> import torch
>>> from ppdl_nb.mpc.dealer import simulate_dealer
>>> from ppdl_nb.mpc.sharing import reconstruct, share
>>> from ppdl_nb.mpc.prg import PRG
>>> g = PRG(); x, y = torch.tensor([3, -4]), torch.tensor([5, 6])
>>> xs, ys = share(x, 2, g), share(y, 2, g)
>>> t = simulate_dealer("mul", 2, x_shape=(2,), y_shape=(2,))
>>> opened = [beaver_open(xs[i], ys[i], t[i][0], t[i][1]) for i in range(2)]
>>> eps, delta = reconstruct([o[0] for o in opened]), reconstruct([o[1] for o in opened])
>>> zs = [beaver_mul_finish(i, eps, delta, *t[i]) for i in range(2)]
>>> reconstruct(zs).tolist()
[15, -24]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ppdl_nb.mpc.limbs import ring_addmm_, ring_conv2d, ring_matmul
from ppdl_nb.mpc.ring import check_ring

__all__ = [
    "add_c",
    "beaver_conv2d_finish",
    "beaver_cross_terms",
    "beaver_matmul_finish",
    "beaver_mul_finish",
    "beaver_open",
    "beaver_square_cross_terms",
    "beaver_square_finish",
    "beaver_square_open",
    "ring_conv2d_wgrad",
    "ring_conv2d_xgrad",
]

Bilinear = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def beaver_open(
    x_share: torch.Tensor, y_share: torch.Tensor, a_share: torch.Tensor, b_share: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """ROUND 1 (every party): shares of ``eps = x - a`` and ``delta = y - b`` to open."""
    for name, t in (("x_share", x_share), ("y_share", y_share), ("a_share", a_share),
                    ("b_share", b_share)):
        check_ring(t, name)
    if x_share.shape != a_share.shape or y_share.shape != b_share.shape:
        raise ValueError(
            f"triple does not fit the operands: x {tuple(x_share.shape)} vs a "
            f"{tuple(a_share.shape)}, y {tuple(y_share.shape)} vs b {tuple(b_share.shape)}. "
            "Ask the dealer for a triple of the operands' shapes."
        )
    return x_share - a_share, y_share - b_share


def _cross(op: Bilinear, party_index: int, eps: torch.Tensor, delta: torch.Tensor,
           a_share: torch.Tensor, b_share: torch.Tensor) -> torch.Tensor:
    for name, t in (("eps", eps), ("delta", delta), ("a_share", a_share),
                    ("b_share", b_share)):
        check_ring(t, name)
    if not isinstance(party_index, int) or party_index < 0:
        raise ValueError(f"party_index must be a non-negative int, got {party_index!r}")
    # party 0 folds eps*delta into eps*(b_0 + delta): one product fewer
    right = b_share + delta if party_index == 0 else b_share
    z = op(eps, right)
    if op is ring_matmul:
        return ring_addmm_(z, a_share, delta)
    z += op(a_share, delta)
    return z


def _finish(op: Bilinear, party_index: int, eps: torch.Tensor, delta: torch.Tensor,
            a_share: torch.Tensor, b_share: torch.Tensor, c_share: torch.Tensor) -> torch.Tensor:
    z = _cross(op, party_index, eps, delta, a_share, b_share)
    return add_c(z, c_share)


def add_c(z: torch.Tensor, c_share: torch.Tensor) -> torch.Tensor:
    """LOCAL: add the triple's ``c`` share to :func:`beaver_cross_terms` (in place)."""
    check_ring(c_share, "c_share")
    if z.shape != c_share.shape:
        raise ValueError(
            f"c_share has shape {tuple(c_share.shape)}, the product has {tuple(z.shape)}: "
            "the triple was made for other shapes"
        )
    z += c_share
    return z


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def ring_conv2d_wgrad(x: torch.Tensor, g: torch.Tensor, *, kernel_size: int | Sequence[int],
                      stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                      dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """The gradient of ``conv2d(x, w)`` (groups 1) with respect to ``w``, given the output's
    gradient ``g``, modulo 2^64: ``dw[o, c, i, j] = sum_{n, a, b} g[n, o, a, b]
    x_pad[n, c, a s + i d, b s + j d]``, bilinear in ``(x, g)``. It is a conv2d of
    ``x`` with ``g`` as the kernel, batch and channels swapped, stride and dilation swapped
    (:func:`~ppdl_nb.mpc.limbs.ring_conv2d`: exact), cropped to the kernel's size."""
    k = _pair(kernel_size)
    out = ring_conv2d(x.transpose(0, 1), g.transpose(0, 1), stride=_pair(dilation),
                      padding=_pair(padding), dilation=_pair(stride))
    return out[..., :k[0], :k[1]].transpose(0, 1).contiguous()


def ring_conv2d_xgrad(g: torch.Tensor, w: torch.Tensor, *, input_size: Sequence[int],
                      stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                      dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """The gradient of ``conv2d(x, w)`` (groups 1) with respect to ``x`` (of spatial size
    ``input_size``), given the output's gradient ``g``, modulo 2^64: the transposed
    convolution, as a conv2d (exact) of ``g`` spread ``stride`` apart and padded, with
    ``w`` flipped and its channels swapped. Bilinear in ``(g, w)``."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    size = (int(input_size[-2]), int(input_size[-1]))
    kh, kw = w.shape[-2:]
    if s != (1, 1):
        up = g.new_zeros(*g.shape[:2], (g.shape[2] - 1) * s[0] + 1,
                         (g.shape[3] - 1) * s[1] + 1)
        up[..., ::s[0], ::s[1]] = g
        g = up
    lo = (d[0] * (kh - 1) - p[0], d[1] * (kw - 1) - p[1])
    # rows and columns of x that no window reached (floor of the output size) get zeros
    hi = (lo[0] + size[0] + 2 * p[0] - g.shape[2] - d[0] * (kh - 1),
          lo[1] + size[1] + 2 * p[1] - g.shape[3] - d[1] * (kw - 1))
    g = F.pad(g, (lo[1], hi[1], lo[0], hi[0]))  # negative sizes crop
    return ring_conv2d(g, w.flip(2, 3).transpose(0, 1), dilation=d)


_BILINEAR: dict[str, Bilinear] = {"mul": torch.mul, "matmul": ring_matmul,
                                  "conv2d": ring_conv2d, "conv2d_wgrad": ring_conv2d_wgrad,
                                  "conv2d_xgrad": ring_conv2d_xgrad}  # type: ignore[dict-item]


def beaver_cross_terms(kind: str, party_index: int, eps: torch.Tensor, delta: torch.Tensor,
                       a_share: torch.Tensor, b_share: torch.Tensor,
                       **conv: object) -> torch.Tensor:
    """LOCAL: the finish step without ``c``: ``eps op b_i + a_i op delta`` (+ ``eps op
    delta`` for party 0), for ``kind`` in ``mul``, ``matmul``, ``conv2d``,
    ``conv2d_wgrad`` (``x``, ``g``), ``conv2d_xgrad`` (``g``, ``w``); ``conv`` are the
    op's keyword arguments.

    The expensive products need only the opened values and the party's own shares, so a
    party computes them while the dealer's ``c`` share (the last party's correction) may
    still be on its way, then calls :func:`add_c`.
    """
    op = _BILINEAR.get(kind)
    if op is None:
        raise ValueError(f"kind must be one of {', '.join(_BILINEAR)}, got {kind!r}")
    if conv:
        op = functools.partial(op, **conv)  # type: ignore[arg-type]
    return _cross(op, party_index, eps, delta, a_share, b_share)


def beaver_mul_finish(party_index: int, eps: torch.Tensor, delta: torch.Tensor,
                      a_share: torch.Tensor, b_share: torch.Tensor,
                      c_share: torch.Tensor) -> torch.Tensor:
    """LOCAL (every party): share of ``x * y`` (elementwise, broadcasting as torch)."""
    return _finish(torch.mul, party_index, eps, delta, a_share, b_share, c_share)


def beaver_matmul_finish(party_index: int, eps: torch.Tensor, delta: torch.Tensor,
                         a_share: torch.Tensor, b_share: torch.Tensor,
                         c_share: torch.Tensor) -> torch.Tensor:
    """LOCAL (every party): share of ``x @ y`` (exact mod 2^64, fast limb matmul)."""
    return _finish(ring_matmul, party_index, eps, delta, a_share, b_share, c_share)


def beaver_conv2d_finish(party_index: int, eps: torch.Tensor, delta: torch.Tensor,
                         a_share: torch.Tensor, b_share: torch.Tensor, c_share: torch.Tensor, *,
                         stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                         dilation: int | tuple[int, int] = 1, groups: int = 1) -> torch.Tensor:
    """LOCAL (every party): share of ``conv2d(x, w)``; ``y``/``b``/``delta`` are weights."""
    op = functools.partial(ring_conv2d, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)
    return _finish(op, party_index, eps, delta, a_share, b_share, c_share)


def beaver_square_open(x_share: torch.Tensor, a_share: torch.Tensor) -> torch.Tensor:
    """ROUND 1 (every party): share of ``eps = x - a`` to open (square pair ``c = a^2``)."""
    check_ring(x_share, "x_share")
    check_ring(a_share, "a_share")
    if x_share.shape != a_share.shape:
        raise ValueError(
            f"square pair of shape {tuple(a_share.shape)} does not fit x of shape "
            f"{tuple(x_share.shape)}"
        )
    return x_share - a_share


def beaver_square_cross_terms(
    party_index: int, eps: torch.Tensor, a_share: torch.Tensor
) -> torch.Tensor:
    """LOCAL: :func:`beaver_square_finish` without ``c``: ``2 eps a_i`` (+ ``eps^2``, party 0)."""
    check_ring(eps, "eps")
    check_ring(a_share, "a_share")
    if not isinstance(party_index, int) or party_index < 0:
        raise ValueError(f"party_index must be a non-negative int, got {party_index!r}")
    right = 2 * a_share + eps if party_index == 0 else 2 * a_share
    return eps * right


def beaver_square_finish(
    party_index: int, eps: torch.Tensor, a_share: torch.Tensor, c_share: torch.Tensor
) -> torch.Tensor:
    """LOCAL (every party): share of ``x^2 = c + 2 eps a + eps^2`` (party 0 adds ``eps^2``)."""
    check_ring(c_share, "c_share")
    return add_c(beaver_square_cross_terms(party_index, eps, a_share), c_share)
