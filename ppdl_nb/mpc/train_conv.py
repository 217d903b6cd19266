"""Convolution and pooling layers of encrypted training: ``Conv2d``, ``MaxPool2d``,
``AvgPool2d`` (registered into :data:`.train_layers.LAYERS`, which imports this module).

* **Conv2d** (groups 1, zero padding; any stride, padding, dilation): forward, one Beaver
  conv2d and a truncation (2 rounds). Backward: the weight gradient ``dw`` and the input
  gradient ``dx`` are bilinear too, ``dw`` in ``(x, g)`` and ``dx`` in ``(g, w)``: each is
  one Beaver product of its own dealer kind (``conv2d_wgrad``, ``conv2d_xgrad``: exact on
  the ring, :func:`.beaver.ring_conv2d_wgrad`), both in the same 2 rounds
  (:func:`.batching.together`); the bias gradient is ``g``'s sum, local.
* **MaxPool2d**: forward, the tree of comparisons of :func:`.nonlinear.max_dim`, which
  here also carries shares of each candidate's **one-hot position** in its window:
  merging ``left`` and ``right`` with ``b = [left >= right]``, the one-hot becomes
  ``(b oh_left, oh_right - b oh_right)``. The products ``b oh`` ride in the comparison's
  own products (opened beside its masked input: no round more), and as a one-hot sums to
  1 the last product of each side is ``b`` minus the others: a 2x2 window costs 2 such
  products (16 bytes per output) above the max, the same 8 rounds. Ties go left, so the
  first maximum in the window's row-major order wins, as in torch. Backward: one product
  ``g x onehot`` (integers: no truncation; ``kH kW - 1`` products, the last is ``g``
  minus the others), scattered back to the positions: 1 round.
* **AvgPool2d**: forward, window sums times ``round(2^24 / count)`` and one truncation;
  backward, ``g`` times the same, truncated, spread over each window: 1 round each.

The one-hot of the window ``[[1, 3], [3, -2]]`` marks the first 3 (ties go left):

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.sharing import reconstruct
>>> from ppdl_nb.mpc.train_layers import LAYERS
>>> xs = sim.share_float(torch.tensor([[[[1., 3.], [3., -2.]]]]), 2, 20)
>>> out = sim.run_parties([LAYERS["MaxPool2d"].forward(i, {"kernel_size": 2}, xs[i], [], 20)
...                        for i in range(2)])
>>> sim.reveal([y for y, _ in out], 20).tolist(), reconstruct([s[0] for _, s in out]).tolist()
([[[[3.0]]]], [[[[[0, 1, 0, 0]]]]])
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ppdl_nb.mpc.batching import together
from ppdl_nb.mpc.comparison import compare
from ppdl_nb.mpc.nonlinear import AVG_BITS, POOL_PAD, _windows, truncate
from ppdl_nb.mpc.train_layers import _lin_params, layer, product

__all__ = ["conv_options", "max_onehot", "pool_options"]

Proto = Generator[Any, Any, Any]
Pair = tuple[int, int]


def _pair(v: Any, name: str, layer_name: str) -> Pair:
    if isinstance(v, int) and not isinstance(v, bool):
        return v, v
    if isinstance(v, Sequence) and len(v) == 2 and all(
            isinstance(e, int) and not isinstance(e, bool) for e in v):
        return int(v[0]), int(v[1])
    raise ValueError(f"{layer_name}'s {name} must be an int or a pair of ints, got {v!r}")


def _unsupported(layer_name: str, what: str, fix: str) -> ValueError:
    return ValueError(f"{layer_name} with {what} cannot be trained on shares yet: {fix}")


def conv_options(spec: dict[str, Any], weight_shape: Sequence[int]) -> dict[str, list[int]]:
    """A ``Conv2d`` spec's stride, padding and dilation (lists: they travel to the dealer);
    groups other than 1 and padding modes other than zeros are refused."""
    if spec.get("groups", 1) != 1:
        raise _unsupported("Conv2d", f"groups={spec['groups']!r}", "only groups=1 is supported")
    if spec.get("padding_mode", "zeros") != "zeros":
        raise _unsupported("Conv2d", f"padding_mode={spec['padding_mode']!r}",
                           "only zero padding ('zeros') is supported")
    s = _pair(spec.get("stride", 1), "stride", "Conv2d")
    d = _pair(spec.get("dilation", 1), "dilation", "Conv2d")
    pad = spec.get("padding", 0)
    if pad == "valid":
        pad = 0
    elif pad == "same":
        total = [d[j] * (int(weight_shape[2 + j]) - 1) for j in range(2)]
        if s != (1, 1) or total[0] % 2 or total[1] % 2:
            raise _unsupported("Conv2d", "padding='same' here (uneven, or stride > 1)",
                               "give the padding as ints")
        pad = [t // 2 for t in total]
    p = _pair(pad, "padding", "Conv2d")
    if min(*s, *d) < 1 or min(p) < 0:
        raise ValueError(f"Conv2d needs stride, dilation >= 1 and padding >= 0, got stride "
                         f"{s}, dilation {d}, padding {p}")
    return {"stride": list(s), "padding": list(p), "dilation": list(d)}


def pool_options(spec: dict[str, Any], name: str) -> tuple[Pair, Pair, Pair]:
    """A pooling spec's kernel, stride (the kernel's if None) and padding."""
    if spec.get("ceil_mode", False):
        raise _unsupported(name, "ceil_mode=True", "use ceil_mode=False (torch's default)")
    if spec.get("dilation", 1) not in (1, (1, 1), [1, 1]):
        raise _unsupported(name, f"dilation={spec['dilation']!r}", "only dilation=1")
    if "kernel_size" not in spec:
        raise ValueError(f"a {name} layer's spec needs its kernel_size")
    k = _pair(spec["kernel_size"], "kernel_size", name)
    stride = spec.get("stride")
    s = k if stride is None or stride == [] else _pair(stride, "stride", name)
    p = _pair(spec.get("padding", 0), "padding", name)
    if min(*k, *s) < 1 or min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{name} needs kernel and stride >= 1 and 0 <= padding <= half the "
                         f"kernel (as torch), got kernel {k}, stride {s}, padding {p}")
    return k, s, p


def _scatter(v: torch.Tensor, shape: Sequence[int], k: Pair, s: Pair, p: Pair) -> torch.Tensor:
    """Per-window values ``(..., oH, oW, kH kW)`` summed into their input positions
    ``(..., H, W)`` (what falls on padding is dropped)."""
    h, w = shape[-2] + 2 * p[0], shape[-1] + 2 * p[1]
    pos = _windows(torch.arange(h * w).reshape(h, w), k, s, (0, 0), 0)
    lead = v.shape[:-3]
    out = v.new_zeros(*lead, h * w)
    out.index_add_(-1, pos.reshape(-1), v.reshape(*lead, -1))
    out = out.reshape(*lead, h, w)
    return out[..., p[0]:p[0] + shape[-2], p[1]:p[1] + shape[-1]].contiguous()


# ---- Conv2d ---------------------------------------------------------------------------------
@layer("Conv2d", _lin_params)
def _conv2d() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list[torch.Tensor], f: int) -> Proto:
        opts = conv_options(spec, ws[0].shape)
        z = yield from product(ix, "conv2d", x, ws[0], f, groups=1, **opts)
        return (z + ws[1].view(1, -1, 1, 1) if len(ws) > 1 else z), x

    def backward(ix: int, spec: dict, g: torch.Tensor, x: torch.Tensor,
                 ws: list[torch.Tensor], f: int, need_dx: bool) -> Proto:
        opts = conv_options(spec, ws[0].shape)
        jobs = [product(ix, "conv2d_wgrad", x, g, f, kernel_size=list(ws[0].shape[2:]),
                        **opts)]
        if need_dx:
            jobs.append(product(ix, "conv2d_xgrad", g, ws[0], f,
                                input_size=list(x.shape[2:]), **opts))
        dw, *dx = yield from together(jobs)
        return [dw, g.sum((0, 2, 3))][:len(ws)], (dx[0] if dx else None)

    return forward, backward


# ---- MaxPool2d ------------------------------------------------------------------------------
def _times_bit(bit: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
    """``b oh`` on every column of a one-hot ``oh``, from ``parts`` (``b oh`` on all its
    columns but the last): the one-hot sums to 1, so the last is ``b`` minus the others."""
    last = bit - torch.stack(parts).sum(0) if parts else bit
    return torch.stack([*parts, last], -1)


def max_onehot(ix: int, v: torch.Tensor) -> Proto:
    """PARTY ``ix``: shares of ``v.max(-1)`` and of the one-hot (integers 0/1, shape of
    ``v``) of its first maximum; the tree of ``ceil(log2 n)`` comparisons (4 rounds each)
    of :func:`.nonlinear.max_dim`, the one-hot carried in the comparisons' products.

    Candidate ``j`` at a level of block size ``h`` covers positions ``[j h, (j + 1) h)``
    and holds its one-hot over them (zeros past the window's end)."""
    n = v.shape[-1]
    if n == 0:
        raise ValueError("max of an empty window")
    oh = (torch.ones if ix == 0 else torch.zeros)(*v.shape, 1, dtype=torch.int64)
    h = 1
    while v.shape[-1] > 1:
        m = v.shape[-1] // 2
        left, right, rest = v[..., 0:2 * m:2], v[..., 1:2 * m:2], v[..., 2 * m:]
        oh_l, oh_r = oh[..., 0:2 * m:2, :], oh[..., 1:2 * m:2, :]
        live = min(h, n - h)  # the right blocks' columns that can hold a position
        d = left - right
        ops = [d] + [oh_l[..., c] for c in range(h - 1)] + [oh_r[..., c] for c in
                                                           range(live - 1)]
        bit, prods = yield from compare(ix, d, products=ops)
        b_l = _times_bit(bit, prods[1:h])
        b_r = F.pad(_times_bit(bit, prods[h:]), (0, h - live))
        v = torch.cat([right + prods[0], rest], -1)
        oh = torch.cat([torch.cat([b_l, oh_r - b_r], -1), F.pad(oh[..., 2 * m:, :], (0, h))],
                       -2)
        h *= 2
    return v[..., 0], oh[..., 0, :n]


@layer("MaxPool2d", lambda spec: 0)
def _max_pool2d() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list, f: int) -> Proto:
        k, s, p = pool_options(spec, "MaxPool2d")
        win = _windows(x, k, s, p, POOL_PAD if ix == 0 else 0)
        y, oh = yield from max_onehot(ix, win)
        return y, (oh, x.shape)

    def backward(ix: int, spec: dict, g: torch.Tensor, saved: tuple, ws: list, f: int,
                 need_dx: bool) -> Proto:
        if not need_dx:
            return [], None
        oh, shape = saved
        k, s, p = pool_options(spec, "MaxPool2d")
        g1 = g.unsqueeze(-1)
        if oh.shape[-1] > 1:  # g oh on all positions but the last; the last is g - those
            part = yield from product(ix, "mul", g1, oh[..., :-1].contiguous(), 0)
            g1 = torch.cat([part, g1 - part.sum(-1, keepdim=True)], -1)
        return [], _scatter(g1, shape, k, s, p)

    return forward, backward


# ---- AvgPool2d ------------------------------------------------------------------------------
def _avg_scale(spec: dict[str, Any], shape: Sequence[int], k: Pair, s: Pair, p: Pair
               ) -> torch.Tensor:
    """``round(2^AVG_BITS / divisor)`` per output position (torch's divisor: the window's
    size, its part inside the input without ``count_include_pad``, or the override)."""
    div = spec.get("divisor_override")
    if div is not None:
        if isinstance(div, bool) or not isinstance(div, int) or div < 1:
            raise ValueError(f"AvgPool2d's divisor_override must be a positive int, got {div!r}")
        return torch.tensor(round(2**AVG_BITS / div))
    if spec.get("count_include_pad", True):
        return torch.tensor(round(2**AVG_BITS / (k[0] * k[1])))
    ones = torch.ones(shape[-2], shape[-1], dtype=torch.float64)
    count = _windows(ones, k, s, p, 0).sum(-1)
    return torch.round(2**AVG_BITS / count).to(torch.int64)


@layer("AvgPool2d", lambda spec: 0)
def _avg_pool2d() -> tuple[Callable[..., Proto], Callable[..., Proto]]:
    def forward(ix: int, spec: dict, x: torch.Tensor, ws: list, f: int) -> Proto:
        k, s, p = pool_options(spec, "AvgPool2d")
        sums = _windows(x, k, s, p, 0).sum(-1)
        y = yield from truncate(ix, sums * _avg_scale(spec, x.shape, k, s, p), AVG_BITS)
        return y, x.shape

    def backward(ix: int, spec: dict, g: torch.Tensor, shape: torch.Size, ws: list, f: int,
                 need_dx: bool) -> Proto:
        if not need_dx:
            return [], None
        k, s, p = pool_options(spec, "AvgPool2d")
        gs = yield from truncate(ix, g * _avg_scale(spec, shape, k, s, p), AVG_BITS)
        per = gs.unsqueeze(-1).expand(*gs.shape, k[0] * k[1])
        return [], _scatter(per, shape, k, s, p)

    return forward, backward
