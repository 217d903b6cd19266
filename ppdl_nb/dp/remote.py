"""Differential privacy on a data owner's worker, through typed handles.

:func:`remote` wraps a connection to a worker as a :class:`DataOwner`; ``load`` makes the
owner hold one of its datasets with a total budget and returns a :class:`RemoteDataset`,
whose queries, private training and PATE votes the owner answers after charging that
budget. Arguments are checked here, with the names you typed, before anything is sent;
privacy parameters are keyword-only. The budget is the owner's (:mod:`.worker_steps`):
this side only asks and reads the ledger.

>>> import ppdl_nb
>>> hospital = ppdl_nb.VirtualWorker("hospital_doc")
>>> ds = remote(hospital).load("breast_cancer", epsilon=1.0, delta=1e-5)
>>> ds
RemoteDataset('breast_cancer' on hospital_doc, 569 rows x 30 columns)
>>> 5 < ds.mean(column=0, bounds=(0, 30), epsilon=0.5) < 25
True
>>> ds.budget().remaining_epsilon
0.5
>>> ds.count(eps=0.1)
Traceback (most recent call last):
TypeError: RemoteDataset.count() got an unexpected keyword argument 'eps'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ppdl_nb.datasets import CATALOGUE
from ppdl_nb.dp import worker_steps as steps
from ppdl_nb.dp.accounting import check_delta
from ppdl_nb.dp.budget import Spending
from ppdl_nb.dp.fit import FitResult
from ppdl_nb.dp.mechanisms import MECHANISMS
from ppdl_nb.workers.core.concurrent import concurrently
from ppdl_nb.workers.core.modules import module_from_spec, module_to_spec

__all__ = ["DataOwner", "Ledger", "RemoteDataset", "remote", "teacher_votes"]


@dataclass(frozen=True)
class Ledger(Spending):
    """One dataset's budget on one worker: totals and the releases charged to it."""

    worker: str
    dataset: str
    total_epsilon: float
    total_delta: float
    history: tuple[tuple[str, float, float], ...]  # (what, epsilon, delta)

    @classmethod
    def from_reply(cls, worker: str, dataset: str, doc: dict[str, Any]) -> Ledger:
        history = tuple((str(what), float(eps), float(delta))
                        for what, eps, delta in doc["history"])
        return cls(worker, dataset, float(doc["total_epsilon"]), float(doc["total_delta"]),
                   history)

    def _spent(self) -> Iterable[tuple[float, float]]:
        return ((eps, delta) for _, eps, delta in self.history)

    def text(self) -> str:
        """The ledger as a table: one line per release, then spent / total."""
        lines = [f"{self.worker} / {self.dataset}",
                 f"  {'release':<40} {'epsilon':>9} {'delta':>9}"]
        lines += [f"  {what[:40]:<40} {eps:>9.4g} {delta:>9.2g}"
                  for what, eps, delta in self.history]
        lines.append(f"  {'spent / total':<40} {self.spent_epsilon:>9.4g} "
                     f"{self.spent_delta:>9.2g}   of ({self.total_epsilon:g}, "
                     f"{self.total_delta:g}); epsilon left {self.remaining_epsilon:.4g}")
        return "\n".join(lines)


def _number(name: str, value: Any, *, low: float, low_ok: bool = False,
            high: float = math.inf) -> float:
    """``value`` as a float if it is a finite number above ``low`` (or at it) and below
    ``high``; a TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    ok = (value >= low if low_ok else value > low) and value < high and math.isfinite(value)
    if not ok:
        bound = f"{'>=' if low_ok else '>'} {low:g}" + (f" and < {high:g}" if high < math.inf
                                                        else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _mechanism(mechanism: Any, delta: float) -> str:
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {sorted(MECHANISMS)}, not {mechanism!r}")
    if mechanism == "gaussian" and delta <= 0:
        raise ValueError("the gaussian mechanism needs delta > 0: pass delta=... "
                         "or use mechanism='laplace'")
    return mechanism


def _bounds(bounds: Any) -> tuple[float, float]:
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (lower, upper), got {bounds!r}; choose them "
                        "without looking at the data (public knowledge)")
    lower = _number("bounds[0]", bounds[0], low=-math.inf)
    upper = _number("bounds[1]", bounds[1], low=-math.inf)
    if not lower < upper:
        raise ValueError(f"bounds must have lower < upper, got {bounds!r}")
    return lower, upper


class DataOwner:
    """A worker that holds datasets and keeps their privacy budgets (see :func:`remote`)."""

    def __init__(self, client: Any) -> None:
        if not callable(getattr(client, "step", None)):
            raise TypeError(f"remote() needs a worker connection (e.g. a VirtualWorker or "
                            f"a launched worker), got {type(client).__name__}")
        self.client = client

    @property
    def name(self) -> str:
        return str(self.client.name)

    def load(self, dataset: str, *, epsilon: float, delta: float) -> RemoteDataset:
        """Have the owner load catalogue ``dataset``, private, with total (epsilon, delta).

        If the owner already keeps a ledger for it (say after a restart), that ledger's
        totals and spending stand: a caller cannot reset or raise a budget.
        """
        if dataset not in CATALOGUE:
            raise ValueError(f"unknown dataset {dataset!r}; a worker loads one of "
                             f"{sorted(CATALOGUE)}")
        epsilon = _number("epsilon", epsilon, low=0)
        delta = _number("delta", delta, low=0, low_ok=True, high=1)
        reply = steps.load.on(self.client, dataset=dataset, epsilon=epsilon, delta=delta)
        shape = reply["x"]["meta"].get("shape", [])
        return RemoteDataset(self, dataset, rows=int(reply["rows"]),
                             columns=int(shape[1]) if len(shape) == 2 else None)

    def dataset(self, name: str) -> RemoteDataset:
        """A handle on dataset ``name`` the owner already holds (loaded, or attached by
        the owner itself); a KeyError if it holds none by that name."""
        self.budget(name)  # asks the owner: KeyError listing what it holds
        return RemoteDataset(self, name)

    def budget(self, dataset: str) -> Ledger:
        """The ledger of ``dataset``: totals, each release charged, what is left."""
        return Ledger.from_reply(self.name, dataset,
                                 steps.budget.on(self.client, dataset=dataset))

    def budgets(self) -> dict[str, Ledger]:
        """Every dataset's ledger on this owner, by dataset name."""
        return {name: Ledger.from_reply(self.name, name, doc)
                for name, doc in steps.budgets.on(self.client).items()}

    def __repr__(self) -> str:
        return f"DataOwner({self.name})"


def remote(worker: Any) -> DataOwner:
    """The DP side of ``worker``: load datasets, query them, train on them, read budgets."""
    return DataOwner(worker)


class RemoteDataset:
    """A dataset a :class:`DataOwner` holds: DP queries and training, charged to its budget.

    The rows never leave the owner; what comes back is a differentially private release.
    """

    def __init__(self, owner: DataOwner, name: str, *, rows: int | None = None,
                 columns: int | None = None) -> None:
        self.owner, self.name, self.rows, self.columns = owner, name, rows, columns

    def __repr__(self) -> str:
        size = "" if self.rows is None else f", {self.rows} rows"
        size += "" if self.columns is None else f" x {self.columns} columns"
        return f"RemoteDataset({self.name!r} on {self.owner.name}{size})"

    def budget(self) -> Ledger:
        """This dataset's ledger, as the owner keeps it."""
        return self.owner.budget(self.name)

    def count(self, *, epsilon: float, delta: float = 0.0, mechanism: str = "laplace"
              ) -> float:
        """A DP count of the rows."""
        return self._query("count", None, False, None, epsilon, delta, mechanism)

    def sum(self, column: int | None = None, *, target: bool = False,
            bounds: tuple[float, float], epsilon: float, delta: float = 0.0,
            mechanism: str = "laplace") -> float:
        """A DP sum of ``column`` (or of the labels, ``target=True``), each value clipped to
        ``bounds`` (chosen without looking at the data)."""
        return self._query("sum", column, target, bounds, epsilon, delta, mechanism)

    def mean(self, column: int | None = None, *, target: bool = False,
             bounds: tuple[float, float], epsilon: float, delta: float = 0.0,
             mechanism: str = "laplace") -> float:
        """A DP mean of ``column`` (or of the labels, ``target=True``), values clipped to
        ``bounds`` (chosen without looking at the data)."""
        return self._query("mean", column, target, bounds, epsilon, delta, mechanism)

    def _query(self, kind: str, column: int | None, target: bool,
               bounds: tuple[float, float] | None, epsilon: float, delta: float,
               mechanism: str) -> float:
        epsilon = _number("epsilon", epsilon, low=0)
        delta = _number("delta", delta, low=0, low_ok=True, high=1)
        mechanism = _mechanism(mechanism, delta)
        kwargs: dict[str, Any] = {}
        if kind != "count":
            if not isinstance(target, bool):
                raise TypeError(f"target must be True or False, got {target!r}")
            if target == (column is not None):
                raise ValueError(f"a {kind} needs exactly one of column=N (a feature) or "
                                 "target=True (the labels)")
            if column is not None:
                self._check_column(column)
            lower, upper = _bounds(bounds)
            kwargs = {"column": column, "target": target, "lower": lower, "upper": upper}
        return steps.query.on(self.owner.client, dataset=self.name, kind=kind,
                              epsilon=epsilon, delta=delta, mechanism=mechanism, **kwargs)

    def _check_column(self, column: Any) -> None:
        if isinstance(column, bool) or not isinstance(column, int):
            raise TypeError(f"column must be an int, got {type(column).__name__} {column!r}")
        if column < 0 or (self.columns is not None and column >= self.columns):
            known = "" if self.columns is None else f" (it has {self.columns} columns)"
            raise ValueError(f"column {column} is not a column of {self.name}{known}")

    # Private training on the owner's data: a DP-SGD run, or PATE teacher votes.

    def fit(self, model: nn.Module, *, delta: float, max_grad_norm: float, epochs: int,
            batch_size: int, noise_multiplier: float | None = None,
            epsilon: float | None = None, lr: float = 0.1, loss: str | None = None,
            optimizer: str | None = None, test_fraction: float = 0.2) -> FitResult:
        """Train a copy of ``model`` with DP-SGD on the owner's worker; the budget pays first.

        Give ``epsilon`` (a target; the noise is calibrated) or ``noise_multiplier``. The
        whole run is charged before it starts (refused if it does not fit); only the
        trained weights and per-epoch metrics on a held-out ``test_fraction`` come back.
        ``loss`` and ``optimizer`` name entries of :mod:`ppdl_nb.training` (default: those
        of :func:`~ppdl_nb.dp.fit.fit_private`).
        """
        if (noise_multiplier is None) == (epsilon is None):
            raise ValueError("give exactly one of noise_multiplier= (sigma) or epsilon= "
                             "(a target; the noise is then calibrated to spend at most that)")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        privacy: dict[str, float] = {"delta": check_delta(delta),
                                     "max_grad_norm": _number("max_grad_norm", max_grad_norm,
                                                              low=0)}
        if epsilon is not None:
            privacy["epsilon"] = _number("epsilon", epsilon, low=0)
        else:
            privacy["noise_multiplier"] = _number("noise_multiplier", noise_multiplier, low=0,
                                                  low_ok=True)
        reply = steps.fit.on(
            self.owner.client, dataset=self.name, spec=module_to_spec(model),
            epochs=_count("epochs", epochs), batch_size=_count("batch_size", batch_size),
            lr=_number("lr", lr, low=0), loss=loss, optimizer=optimizer,
            test_fraction=_number("test_fraction", test_fraction, low=0, low_ok=True, high=1),
            **privacy)
        return FitResult(module_from_spec(reply["spec"]), list(reply["history"]),
                         epsilon=float(reply["epsilon"]), delta=privacy["delta"],
                         noise_multiplier=float(reply["noise_multiplier"]))

    def teacher_votes(self, model: nn.Module, public: torch.Tensor, *, n_classes: int,
                      noise_std: float, delta: float, epochs: int, batch_size: int, lr: float,
                      loss: str | None = None, optimizer: str | None = None,
                      seed: int | None = None) -> torch.Tensor:
        """PATE: one teacher trained on this dataset votes one label per ``public`` query.

        The owner charges its budget the data-independent cost of GNMax answers with
        noise ``noise_std`` first; only the labels come back. See :func:`teacher_votes`.
        """
        return teacher_votes([self], model, public, n_classes=n_classes, noise_std=noise_std,
                             delta=delta, epochs=epochs, batch_size=batch_size, lr=lr,
                             loss=loss, optimizer=optimizer, seed=seed)[0]


def teacher_votes(datasets: Sequence[RemoteDataset], model: nn.Module, public: torch.Tensor,
                  *, n_classes: int, noise_std: float, delta: float, epochs: int,
                  batch_size: int, lr: float, loss: str | None = None,
                  optimizer: str | None = None, seed: int | None = None) -> torch.Tensor:
    """PATE teachers on several owners at once: a (teachers, queries) tensor of labels.

    Each owner trains a teacher (``model``, described, not sent as code) on its own
    dataset and replies with one label per ``public`` query after charging its budget;
    the owners are asked concurrently. With ``seed``, teacher ``i`` uses ``seed + i``.
    """
    if not datasets:
        raise ValueError("need at least one remote dataset (one teacher per data owner)")
    if not isinstance(public, torch.Tensor) or public.dim() < 2:
        raise TypeError("public must be a tensor of queries, (queries, features...)")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    kwargs = {"spec": module_to_spec(model), "public": public, "n_classes": n_classes,
              "noise_std": _number("noise_std", noise_std, low=0), "delta": check_delta(delta),
              "epochs": _count("epochs", epochs), "batch_size": _count("batch_size", batch_size),
              "lr": _number("lr", lr, low=0), "loss": loss, "optimizer": optimizer}
    calls = []
    for i, ds in enumerate(datasets):
        call = {**kwargs, "dataset": ds.name, "seed": None if seed is None else seed + i}
        steps.teacher_votes.check(**call)
        calls.append((ds.owner.client, steps.teacher_votes.name, call))
    return torch.stack(concurrently(calls))
