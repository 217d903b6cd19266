"""Splitting a labelled dataset among federated clients, and seeing how skewed the split is.

Federated learning is hard when clients' data differ. These helpers make splits from
IID to very skewed, so a notebook can show that effect: ``"iid"`` shuffles the rows and
deals them out; ``"dirichlet"`` gives each class to the clients in proportions drawn from
Dirichlet(alpha) (small alpha means more skew); ``"label"`` is McMahan et al.'s split by
label shards, where most clients see only a couple of classes. ``heterogeneity`` gives the
skew as one number, and ``plot_partition`` / ``partition_summary`` show it.

Randomness comes from a ``torch.Generator`` seeded with ``seed`` (fresh entropy when
``seed`` is None). This is splitting data, not cryptography.

>>> import torch
>>> labels = torch.arange(100) % 10
>>> parts = partition(labels, 4, scheme="iid", seed=0)
>>> [len(p) for p in parts]
[25, 25, 25, 25]
>>> counts = label_counts(labels, partition(labels, 5, scheme="label", seed=0))
>>> counts.shape
torch.Size([5, 10])
>>> (counts > 0).sum(dim=1).tolist()  # two shards of one class each per client
[2, 2, 2, 2, 2]
>>> round(heterogeneity(counts), 2)
0.8
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from ppdl_nb.plotting import draw

__all__ = [
    "SCHEMES",
    "TARGET_BINS",
    "heterogeneity",
    "label_counts",
    "label_groups",
    "partition",
    "partition_summary",
    "plot_partition",
    "register_scheme",
]

# A scheme gets validated labels (1-D, integer, non-negative), the number of clients, a
# seeded generator and the scheme options; it returns one index tensor per client.
Scheme = Callable[..., list[torch.Tensor]]

_SCHEMES: dict[str, Scheme] = {}
SCHEMES = MappingProxyType(_SCHEMES)
"""The known schemes, by name (read-only; add one with :func:`register_scheme`)."""
TARGET_BINS = 10  # quantile groups of a regression target for the non-IID schemes


def register_scheme(name: str) -> Callable[[Scheme], Scheme]:
    """Register ``fn(labels, n_clients, generator, *, alpha, shards_per_client)`` as ``name``.

    The function must return one index tensor per client.
    """

    def decorate(fn: Scheme) -> Scheme:
        if name in _SCHEMES:
            raise ValueError(f"a partition scheme named {name!r} is already registered")
        _SCHEMES[name] = fn
        return fn

    return decorate


def _as_labels(labels: Any) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"labels must be a 1-D integer tensor, got {type(labels).__name__}"
                            ) from exc
    dtype = labels.dtype
    if dtype.is_complex or dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids (or real regression targets), "
                         f"got dtype {dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if dtype.is_floating_point:
        return _target_bins(labels)
    labels = labels.detach().to("cpu", torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be non-negative class ids, found {int(labels.min())}")
    return labels


def label_groups(labels: Any) -> torch.Tensor:
    """The group of each row that the label-based schemes use: its class id, or for real
    regression targets its quantile bin (0 .. TARGET_BINS - 1); checked as :func:`partition`
    checks ``labels``."""
    return _as_labels(labels)


def _target_bins(targets: torch.Tensor, bins: int = TARGET_BINS) -> torch.Tensor:
    """Regression targets as ``bins`` quantile groups (0 = smallest targets), so that the
    label-based schemes split by target value: a client of ``"label"`` gets a few
    contiguous ranges of the target, ``"dirichlet"`` skews how much of each range."""
    targets = targets.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(targets).all()):
        raise ValueError("regression targets must be finite (found NaN or inf)")
    if targets.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    edges = torch.quantile(targets, torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
    return torch.bucketize(targets, edges, right=True)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def partition(labels: torch.Tensor, n_clients: int, *, scheme: str = "iid",
              alpha: float = 0.5, shards_per_client: int = 2,
              seed: int | None = None) -> list[torch.Tensor]:
    """Split the rows of a dataset among ``n_clients``; one sorted index tensor per client.

    ``labels`` holds one non-negative integer class id per row (a tensor, or anything
    ``torch.as_tensor`` takes), or one real regression target per row: those are grouped
    into ``TARGET_BINS`` quantile bins that the label-based schemes treat as classes.
    Every scheme returns disjoint index tensors that together cover every row, and no
    client is left empty.

    - ``"iid"``: a random permutation dealt out evenly; sizes differ by at most one.
    - ``"label"``: McMahan et al. (2017): rows sorted by label (ties in random order), cut
      into ``n_clients * shards_per_client`` contiguous shards of (nearly) equal size, and
      each client gets ``shards_per_client`` random shards. Needs that many rows.
    - ``"dirichlet"``: for each class, shares over clients drawn from
      Dirichlet(``alpha``); small ``alpha`` (0.1) is very skewed, large (100) near IID.
      A client left with no rows is given one: a random row moved from the client that
      holds the most, repeated until nobody is empty (at most ``n_clients - 1`` moves).

    ``alpha`` and ``shards_per_client`` are checked whatever the scheme.
    """
    labels = _as_labels(labels)
    rows = labels.numel()
    n_clients = _check_int("n_clients", n_clients, 1)
    if n_clients > rows:
        raise ValueError(f"n_clients ({n_clients}) is more than the rows in labels ({rows})")
    shards_per_client = _check_int("shards_per_client", shards_per_client, 1)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    if not isinstance(scheme, str) or scheme not in _SCHEMES:
        known = ", ".join(repr(k) for k in sorted(_SCHEMES))
        raise ValueError(f"unknown partition scheme {scheme!r}; known schemes: {known}")
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(_check_int("seed", seed, 0))
    parts = _SCHEMES[scheme](labels, n_clients, generator, alpha=float(alpha),
                             shards_per_client=shards_per_client)
    return [torch.sort(p).values for p in parts]


@register_scheme("iid")
def _iid(labels: torch.Tensor, n_clients: int, generator: torch.Generator,
         **_: Any) -> list[torch.Tensor]:
    perm = torch.randperm(labels.numel(), generator=generator)
    return list(torch.tensor_split(perm, n_clients))


@register_scheme("label")
def _label_shards(labels: torch.Tensor, n_clients: int, generator: torch.Generator, *,
                  shards_per_client: int, **_: Any) -> list[torch.Tensor]:
    n_shards = n_clients * shards_per_client
    if n_shards > labels.numel():
        raise ValueError(f"scheme 'label' needs n_clients * shards_per_client ({n_shards}) "
                         f"<= rows ({labels.numel()})")
    shuffled = torch.randperm(labels.numel(), generator=generator)
    order = shuffled[torch.argsort(labels[shuffled], stable=True)]
    shards = torch.tensor_split(order, n_shards)
    deal = torch.randperm(n_shards, generator=generator).view(n_clients, shards_per_client)
    return [torch.cat([shards[i] for i in row.tolist()]) for row in deal]


@register_scheme("dirichlet")
def _dirichlet(labels: torch.Tensor, n_clients: int, generator: torch.Generator, *,
               alpha: float, **_: Any) -> list[torch.Tensor]:
    # torch's Dirichlet sampler takes no generator, so the draws come from a numpy Generator
    # seeded from ours: still reproducible from ``seed`` alone.
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    buckets: list[list[torch.Tensor]] = [[] for _ in range(n_clients)]
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        shares = rng.dirichlet(np.full(n_clients, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * idx.numel()).astype(np.int64)
        for bucket, chunk in zip(buckets, torch.tensor_split(idx, cuts.tolist()), strict=True):
            bucket.append(chunk)
    parts = [torch.cat(b) for b in buckets]
    while (empty := [i for i, p in enumerate(parts) if p.numel() == 0]):
        # rows >= n_clients, so while one client is empty another holds at least two rows
        donor = max(range(n_clients), key=lambda i: parts[i].numel())
        pick = int(torch.randint(parts[donor].numel(), (1,), generator=generator))
        parts[empty[0]] = parts[donor][pick:pick + 1]
        parts[donor] = torch.cat([parts[donor][:pick], parts[donor][pick + 1:]])
    return parts


def label_counts(labels: torch.Tensor, parts: Sequence[torch.Tensor],
                 n_classes: int | None = None) -> torch.Tensor:
    """Rows of each class held by each client: an int64 tensor ``(n_clients, n_classes)``.

    ``n_classes`` defaults to ``labels.max() + 1``.
    """
    labels = _as_labels(labels)
    top = int(labels.max()) + 1 if labels.numel() else 0
    if n_classes is None:
        n_classes = top
    n_classes = _check_int("n_classes", n_classes, 0)
    if n_classes < top:
        raise ValueError(f"n_classes ({n_classes}) is too small for label {top - 1}")
    rows = []
    for i, part in enumerate(parts):
        part = torch.as_tensor(part)
        if part.dim() != 1 or part.dtype.is_floating_point or part.dtype == torch.bool:
            raise ValueError(f"part {i} must be a 1-D integer index tensor")
        rows.append(torch.bincount(labels[part.long()], minlength=n_classes))
    if not rows:
        return torch.zeros(0, n_classes, dtype=torch.int64)
    return torch.stack(rows)


def _as_counts(counts: Any) -> torch.Tensor:
    counts = torch.as_tensor(counts)
    if counts.dim() != 2:
        raise ValueError(f"counts must be 2-D (clients, classes), got shape "
                         f"{tuple(counts.shape)}")
    if counts.numel() and bool((counts < 0).any()):
        raise ValueError("counts must be non-negative")
    return counts.to(torch.float64)


def heterogeneity(counts: torch.Tensor) -> float:
    """How far clients' label mixes are from the overall mix, in [0, 1].

    The mean, over clients that hold any rows, of the total-variation distance between the
    client's label distribution and the global one. 0 means every client has the global
    mix (IID); a client holding 2 of 10 equally common classes is at 0.8.
    """
    counts = _as_counts(counts)
    sizes = counts.sum(dim=1)
    total = sizes.sum()
    if total == 0:
        raise ValueError("counts are all zero")
    held = counts[sizes > 0]
    local = held / held.sum(dim=1, keepdim=True)
    overall = counts.sum(dim=0) / total
    return float(0.5 * (local - overall).abs().sum(dim=1).mean())


def _client_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"client {i}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"got {len(names)} names for {n} clients")
    return names


def plot_partition(counts: torch.Tensor, *, names: Sequence[str] | None = None,
                   ax: Any = None) -> Any:
    """A stacked horizontal bar per client, one segment per class; returns the Figure.

    ``names`` label the clients (default ``client 0``, ...). Draws on ``ax`` when given,
    otherwise on a new Figure that is not registered with pyplot (nothing pops up; it
    shows in Jupyter when it is a cell's value). The drawing is
    ``ppdl_nb.viz.fl_plots.plot_partition_counts``, found through :mod:`ppdl_nb.plotting`.
    """
    data = _as_counts(counts)
    labels = _client_names(names, data.shape[0])
    return draw("fl.partition", data.numpy(), names=labels, ax=ax)


def partition_summary(counts: torch.Tensor, names: Sequence[str] | None = None) -> str:
    """A text table: client, rows, classes present, and the top class with its share.

    The last line gives :func:`heterogeneity`.
    """
    data = _as_counts(counts)
    labels = _client_names(names, data.shape[0])
    header = ("client", "rows", "classes", "top class")
    lines = []
    for name, row in zip(labels, data, strict=True):
        size = int(row.sum())
        present = int((row > 0).sum())
        if size:
            top = int(row.argmax())
            top_text = f"{top} ({float(row[top]) / size:.0%})"
        else:
            top_text = "-"
        lines.append((name, str(size), str(present), top_text))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(4)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in
                                                      zip(r[1:], widths[1:], strict=True))])

    out = [fmt(header), *(fmt(r) for r in lines)]
    if data.sum() > 0:
        out.append(f"heterogeneity (mean TV distance to the global mix): "
                   f"{heterogeneity(data):.3f}")
    return "\n".join(out)
