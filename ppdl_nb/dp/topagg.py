"""TopAgg (DataLens, Wang et al. 2021): compressed, quantised, noisy gradient voting.

Why: when many contributors (teachers on disjoint data, or examples) each send a
gradient, a Gaussian sum needs noise proportional to each gradient's norm in *all*
d coordinates. DataLens instead has each contributor keep only its top-k
coordinates (by magnitude), clip them to [-c, c] and quantise them stochastically
to a sign (+1 with probability (1 + g/c) / 2, so the sign is unbiased up to the
quantisation ``scale`` c). A contributor's vote vector then has at most k entries of
+-1. Its L2 sensitivity depends on the **adjacency**, an explicit parameter:

* ``adjacency="example"`` (per-example DP-SGD: one record adds or removes its own vote
  vector): sqrt(k);
* ``adjacency="teacher"`` (DataLens: one record changes one teacher's vote vector,
  every kept sign may flip): 2 sqrt(k).

The votes are summed,
Gaussian noise of absolute std ``noise_std`` is added, and coordinates whose noisy vote
is below
``threshold`` in magnitude are zeroed (post-processing: free). The result, in
{-1, 0, +1}^d, is the aggregated gradient direction.

Accounting: each aggregation is a Gaussian mechanism with ``noise_multiplier =
noise_std / sensitivity``; compose it with :class:`.Accountant` (``sample_rate`` = the
fraction of contributors sampled, 1 for all), i.e. RDP ``alpha sensitivity^2 / (2
noise_std^2)``, data-independent. All of TopAgg's parameters are keyword-only.

Speed: the top-k selection is the cost (``torch.topk`` sorts; a DataLens query keeps
thousands of coordinates per teacher). :func:`top_k_indices` finds each row's k-th
largest magnitude with numpy's introselect (``np.partition``, linear time), keeps the
entries at or above it and breaks rare ties by position, without sorting. For float32
contributions :meth:`TopAgg.votes` needs no index lists at all: with a row's k-th
magnitude ``thr`` above ``scale`` (no kept sign is random), a kept positive entry is one
whose float bits are ``>= thr`` as int32 and a kept negative one whose bits are
``>= 2^31 + thr`` as uint32, so a column's vote is a difference of two column counts;
other cases (zeros, ties, kept entries inside ``(-scale, scale)``) take a general mask
path. The (n, d) work arrays are reused across queries (fresh ones cost more in page
faults than the selection).

Use as the aggregation step of DP-SGD: rows of ``contributions`` are per-example
(or per-teacher) gradients flattened to (n, d); the output times a learning rate
is the update. :func:`topagg_step` does one such step on a model: per-example
gradients by ``torch.func`` (materialised: TopAgg needs each one's top-k), the
aggregate, and ``w -= lr * direction``. With Poisson-sampled batches at rate ``q``,
pass ``sample_rate=q`` so the accountant credits the subsampling.

>>> import torch
>>> agg = TopAgg(k=2, scale=1.0, noise_std=0.5, threshold=1.0)
>>> g = torch.tensor([[0.9, -0.1, 0.0], [0.8, 0.0, -0.7], [1.0, 0.2, 0.0]])
>>> agg(g).shape
torch.Size([3])
>>> round(agg.noise_multiplier, 4)
0.3536
>>> TopAgg(k=4, scale=1.0, noise_std=1.0, threshold=0.0, adjacency="teacher").sensitivity
4.0
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ppdl_nb.dp.accounting import Accountant
from ppdl_nb.dp.noise import generator

__all__ = ["ADJACENCIES", "TopAgg", "per_example_grads", "stochastic_sign", "top_k_indices",
           "top_k_mask", "topagg_rdp", "topagg_sensitivity", "topagg_step"]

#: adjacency -> factor on sqrt(k): how far one record can move one vote vector in L2.
ADJACENCIES: dict[str, float] = {"example": 1.0, "teacher": 2.0}


def topagg_sensitivity(*, k: int, adjacency: str = "example") -> float:
    """L2 sensitivity of the summed votes: sqrt(k) per example, 2 sqrt(k) per teacher.

    >>> topagg_sensitivity(k=9, adjacency="teacher")
    6.0
    """
    if adjacency not in ADJACENCIES:
        raise ValueError(f"Unknown adjacency {adjacency!r}: choose one of {sorted(ADJACENCIES)} "
                         "('example': one record adds or removes its vote vector; 'teacher': "
                         "one record changes one teacher's vote vector).")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    return ADJACENCIES[adjacency] * math.sqrt(k)


def top_k_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest-magnitude entries of each row of x (n, d)."""
    k = min(k, x.shape[-1])
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def top_k_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (n, k) of the k largest-magnitude entries of each row of x (n, d).

    The same set as ``x.abs().topk(k).indices`` (ties broken by position, not sorted),
    found in linear time: ``np.partition`` gives each row's k-th largest magnitude, and
    the entries at or above it are the top k.

    >>> top_k_indices(torch.tensor([[0.1, -3.0, 2.0, 0.0]]), 2).tolist()
    [[1, 2]]
    """
    n, d = x.shape
    k = min(k, d)
    if k == d:
        return torch.arange(d).expand(n, d).clone()
    # |x| as float32 bits: for non-negative floats the int32 order is the float order,
    # and integer introselect is faster than the float one.
    a = np.abs(x.detach().to(torch.float32).contiguous().numpy()).view(np.int32)
    # Exact zeros (sparse gradients: 87% of an MLP's per-example MNIST gradient) make
    # introselect degrade on duplicates; give each its own value below every non-zero,
    # earlier columns first.
    if not a[:, :: max(1, d // 64)].all():  # a cheap look: any zeros? (speed only)
        np.copyto(a, -1 - np.arange(d, dtype=np.int32), where=a == 0)
    thr = np.partition(a, d - k, axis=1)[:, d - k:d - k + 1]
    keep = a >= thr
    flat = np.flatnonzero(keep)
    if len(flat) != n * k:  # ties at a threshold: keep the first ones in each row
        extra = keep.sum(1) - k
        for r in np.flatnonzero(extra):
            tied = np.flatnonzero(a[r] == thr[r, 0])
            keep[r, tied[len(tied) - extra[r]:]] = False
        flat = np.flatnonzero(keep)
    cols = flat.reshape(n, k) - (np.arange(n) * d)[:, None]
    return torch.from_numpy(cols)


_WORK = threading.local()


def _buffers(n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reused (n, d) work arrays: two int32, two bool. Fresh 10 MB arrays per query cost
    more in page faults than the selection itself (measured: 2x the query)."""
    buf = getattr(_WORK, "buf", None)
    if buf is None or buf[0].shape != (n, d):
        buf = (np.empty((n, d), np.int32), np.empty((n, d), np.int32),
               np.empty((n, d), np.bool_), np.empty((n, d), np.bool_))
        _WORK.buf = buf
    return buf


def _dense_votes(xb: np.ndarray, k: int, scale: float, part: np.ndarray, pos: np.ndarray,
                 neg: np.ndarray) -> np.ndarray | None:
    """The common case in two comparisons on the raw bits: the k-th largest |x| of each row
    (``thr``, by introselect on ``|x|``'s bits) is above ``scale`` (no kept entry draws a
    sign) and unique (no ties). A kept positive has bits ``>= thr`` as int32, a kept
    negative has bits ``>= 2^31 + thr`` as uint32 (the sign bit set). None if the case
    does not hold (the caller takes the general path)."""
    n, d = xb.shape
    np.bitwise_and(xb, np.int32(0x7FFFFFFF), out=part)
    part.partition(d - k, axis=1)
    thr = part[:, d - k:d - k + 1].copy()
    s_bits = np.array([min(scale, 3.0e38)], np.float32).view(np.int32)[0]
    if (thr < s_bits).any() or (thr >= 0x7F800000).any():  # a draw, or inf/NaN: general
        return None
    np.greater_equal(xb, thr, out=pos)
    np.greater_equal(xb.view(np.uint32), thr.view(np.uint32) + np.uint32(0x80000000), out=neg)
    acc = np.int16 if n < 2**15 else np.int64
    p_cnt = pos.view(np.int8).sum(0, dtype=acc)
    n_cnt = neg.view(np.int8).sum(0, dtype=acc)
    if int(p_cnt.sum(dtype=np.int64)) + int(n_cnt.sum(dtype=np.int64)) != n * k:
        return None  # ties at a threshold
    return (p_cnt - n_cnt).astype(np.int32)


def _votes_f32(x: torch.Tensor, k: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """:meth:`TopAgg.votes` for float32 rows without index lists: the same kept set as
    :func:`top_k_indices` (the k-th largest magnitude by introselect on the bit patterns,
    ties at it kept by position), then each column's vote is (kept positives) - (kept
    negatives), read off boolean masks. Only kept entries with ``|x| < scale`` need a
    random draw, and there are none unless a row's k-th magnitude is below ``scale``."""
    n, d = x.shape
    k = min(k, d)
    xb = x.detach().contiguous().numpy().view(np.int32)
    a, part, keep, neg = _buffers(n, d)
    if k < d and xb[:, :: max(1, d // 64)].all():  # a cheap look: no zeros, dense rows
        v = _dense_votes(xb, k, scale, part, keep, neg)
        if v is not None:
            return torch.from_numpy(v).to(x.dtype)
    np.bitwise_and(xb, np.int32(0x7FFFFFFF), out=a)  # |x| as bits: int order = float order
    nonzero_per_row = np.count_nonzero(a, axis=1) if k < d else None
    if k == d:
        keep.fill(True)
        thr = np.full((n, 1), np.iinfo(np.int32).min, np.int32)
    elif (nonzero_per_row == k).all():  # e.g. DataLens's per-sample top-k: exactly k kept
        np.not_equal(a, 0, out=keep)
        np.copyto(part, a)
        np.copyto(part, np.iinfo(np.int32).max, where=~keep)
        thr = part.min(1, keepdims=True)  # each row's smallest kept |x|
    else:
        if (nonzero_per_row < d).any():  # zeros: distinct values below every non-zero,
            np.copyto(a, -1 - np.arange(d, dtype=np.int32), where=a == 0)  # earlier first
        np.copyto(part, a)
        part.partition(d - k, axis=1)
        thr = part[:, d - k:d - k + 1].copy()
        np.greater_equal(a, thr, out=keep)
        if np.count_nonzero(keep) != n * k:  # ties at a threshold: keep the first ones
            extra = keep.sum(1) - k
            for r in np.flatnonzero(extra):
                tied = np.flatnonzero(a[r] == thr[r, 0])
                keep[r, tied[len(tied) - extra[r]:]] = False
    # Kept entries with |x| < scale draw their sign; all others are sign(x). thr is each
    # row's smallest kept |x| (as bits, zeros negative), so only rows with thr < scale
    # can hold one.
    s_bits = np.array([scale], np.float32).view(np.int32)[0] if scale < 3.4e38 else None
    unsure_rows = (np.arange(n) if s_bits is None
                   else np.flatnonzero(thr[:, 0] < s_bits))
    draws: list[tuple[np.ndarray, np.ndarray]] = []
    for r in unsure_rows:
        cols = np.flatnonzero(keep[r] & ((a[r] < s_bits) if s_bits is not None else True))
        if len(cols):
            keep[r, cols] = False
            draws.append((cols, x[r].detach().numpy()[cols]))
    np.less(xb, 0, out=neg)
    np.logical_and(neg, keep, out=neg)
    v = keep.view(np.int8).sum(0, dtype=np.int32) - 2 * neg.view(np.int8).sum(0, dtype=np.int32)
    out = torch.from_numpy(v).to(x.dtype)
    if draws:
        cols = torch.from_numpy(np.concatenate([c for c, _ in draws]))
        vals = torch.from_numpy(np.concatenate([xv for _, xv in draws]))
        u = torch.rand(len(vals), generator=gen, dtype=x.dtype).mul_(2 * scale).sub_(scale)
        out.index_add_(0, cols, (vals > u).to(x.dtype).mul_(2).sub_(1))
    return out


def stochastic_sign(x: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """+1 with probability (1 + x/scale)/2 after clipping to [-scale, scale], else -1."""
    # u < (1 + clip(x/c)) / 2  <=>  x > c (2u - 1) for u in [0, 1): no clip needed. Where
    # |x| >= c the sign is certain, so only the entries inside (-c, c) draw a uniform
    # (with the usual tiny c, few or none): same distribution, a fraction of the draws.
    out = (x > 0).to(x.dtype).mul_(2).sub_(1)
    unsure = x.abs() < scale
    m = int(unsure.sum())
    if m:
        u = torch.rand(m, generator=gen, dtype=x.dtype).mul_(2 * scale).sub_(scale)
        out[unsure] = (x[unsure] > u).to(x.dtype).mul_(2).sub_(1)
    return out


def topagg_rdp(*, k: int, noise_std: float, orders: np.ndarray | float,
               adjacency: str = "example") -> np.ndarray:
    """RDP of one aggregation: alpha * sensitivity^2 / (2 noise_std^2) (alpha k / (2 noise_std^2)
    per example, four times that per teacher)."""
    sens = topagg_sensitivity(k=k, adjacency=adjacency)
    return np.asarray(orders, dtype=np.float64) * sens**2 / (2 * noise_std**2)


@dataclass(kw_only=True)
class TopAgg:
    """The DataLens aggregator; call it on (contributors, d) gradients.

    ``k``: coordinates each contributor keeps; ``scale``: the quantisation scale c (each
    kept coordinate is clipped to [-c, c] before its stochastic sign); ``noise_std``: the
    absolute std of the Gaussian noise on the summed votes; ``threshold``: the smallest
    noisy vote that counts; ``adjacency``: ``"example"`` (default, per-example DP-SGD) or
    ``"teacher"`` (DataLens), see the module's docstring.
    """

    k: int
    scale: float
    noise_std: float
    threshold: float
    accountant: Accountant | None = None
    adjacency: str = "example"

    def __post_init__(self) -> None:
        if self.k < 1 or self.scale <= 0 or self.noise_std <= 0 or self.threshold < 0:
            raise ValueError(
                "TopAgg needs k >= 1, scale > 0, noise_std > 0 and threshold >= 0; got "
                f"k={self.k}, scale={self.scale}, noise_std={self.noise_std}, "
                f"threshold={self.threshold}."
            )
        topagg_sensitivity(k=self.k, adjacency=self.adjacency)  # validates the adjacency

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of the summed votes under :attr:`adjacency`."""
        return topagg_sensitivity(k=self.k, adjacency=self.adjacency)

    @property
    def noise_multiplier(self) -> float:
        """noise_std over the L2 sensitivity: what an :class:`.Accountant` composes."""
        return self.noise_std / self.sensitivity

    def votes(self, contributions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each row compressed to top-k stochastic signs, summed: (d,).

        Only the k selected entries per row are quantised (the rest are zero anyway), so
        the cost is O(n k) random draws, not O(n d). float32 contributions take
        :func:`_votes_f32` (the same votes in distribution, no index lists).
        """
        if contributions.dtype == torch.float32 and contributions.shape[1] > 0:
            return _votes_f32(contributions, self.k, self.scale, gen)
        d = contributions.shape[1]
        idx = top_k_indices(contributions, self.k)
        signs = stochastic_sign(contributions.gather(1, idx), self.scale, gen)
        out = torch.zeros(d, dtype=contributions.dtype)
        return out.index_add_(0, idx.reshape(-1), signs.reshape(-1))

    def __call__(self, contributions: torch.Tensor, *, sample_rate: float = 1.0) -> torch.Tensor:
        if contributions.dim() != 2:
            raise ValueError(
                f"contributions must be (contributors, d), got shape {tuple(contributions.shape)}; "
                "flatten each contributor's gradient into one row."
            )
        gen = generator()
        v = self.votes(contributions.detach(), gen)
        noisy = v + torch.randn(v.shape, generator=gen, dtype=v.dtype) * self.noise_std
        if self.accountant is not None:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=sample_rate)
        return torch.sign(noisy) * (noisy.abs() >= self.threshold)


def per_example_grads(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradients of ``loss_fn(model(x_i), y_i)`` for each example, flattened: (n, d).

    Parameters that do not require grad are left out; the column order is
    ``model.parameters()`` order, as :func:`topagg_step` applies it.
    """
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    if len(x) == 0:
        return torch.zeros(0, sum(params[n].numel() for n in names))
    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[n].reshape(len(x), -1) for n in names], 1)


@torch.no_grad()
def _apply(model: nn.Module, direction: torch.Tensor, lr: float) -> None:
    offset = 0
    for p in model.parameters():
        if p.requires_grad:
            p -= lr * direction[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()


def topagg_step(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, agg: TopAgg, *,
                lr: float, sample_rate: float = 1.0) -> torch.Tensor:
    """One DP-SGD step with TopAgg as the aggregation: returns the direction applied.

    ``loss_fn(output, target)`` must average over its batch (it sees one example at a
    time). An empty batch still makes a step (pure noise), as Poisson sampling requires.

    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> agg = TopAgg(k=2, scale=0.1, noise_std=1.0, threshold=0.5)
    >>> d = topagg_step(model, torch.nn.functional.cross_entropy, torch.randn(8, 3),
    ...                 torch.randint(0, 2, (8,)), agg, lr=0.01)
    >>> d.shape
    torch.Size([8])
    """
    grads = per_example_grads(model, loss_fn, x, y)
    if len(grads) == 0:
        d = sum(p.numel() for p in model.parameters() if p.requires_grad)
        grads = torch.zeros(0, d)
    direction = agg(grads, sample_rate=sample_rate)
    _apply(model, direction, lr)
    return direction
