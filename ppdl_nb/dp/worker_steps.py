"""Data owners' side of differential privacy: datasets, budgets and DP queries on a worker.

The budget lives with the data: a worker that holds a dataset keeps a
:class:`~ppdl_nb.dp.budget.PrivacyBudget` for it, persisted as JSON in the worker's
state directory (so a restart does not reset the spending), and charges it *before*
answering a query. A caller can read the ledger; nobody but the owner can raise it.

The notebook calls these steps through :mod:`ppdl_nb.dp.remote`, which checks the
arguments first::

    ds = ppdl_nb.dp.remote(alice).load("breast_cancer", epsilon=1.0, delta=1e-5)
    ds.mean(column=0, bounds=(0, 30), epsilon=0.1)

>>> load.name, sorted(load.signature.parameters)
('dp.load', ['dataset', 'delta', 'epsilon'])

PATE (:mod:`ppdl_nb.dp.pate`) runs its teachers here: ``dp.teacher_votes`` trains one
teacher on the worker's own dataset (its partition of the private data) and returns only
the teacher's predicted labels on public queries, after charging the dataset's budget
the data-independent cost of the noisy aggregate those votes will enter.
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb import datasets, training
from ppdl_nb.dp import queries
from ppdl_nb.dp.budget import PrivacyBudget
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.state import state_dir
from ppdl_nb.workers.core.worker import Worker

__all__ = ["attach_dataset", "budget_of"]


QUERIES = {"count": queries.dp_count, "sum": queries.dp_sum, "mean": queries.dp_mean}


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not None): the rest keep the callee's default."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _dp(worker: Worker) -> dict[str, Any]:
    return worker.state.setdefault("dp", {"data": {}, "budgets": {}})


def attach_dataset(worker: Worker, name: str, x: torch.Tensor, y: torch.Tensor, *,
                   epsilon: float, delta: float) -> dict[str, Any]:
    """OWNER: hold ``(x, y)`` as private dataset ``name`` with a total (epsilon, delta)."""
    if not name.isidentifier():
        raise ValueError(f"dataset name {name!r} must be an identifier")
    path = state_dir(worker) / f"budget-{name}.json"
    budget = PrivacyBudget(epsilon=epsilon, delta=delta, path=path)
    state = _dp(worker)
    state["budgets"][name] = budget
    ids = {"x": worker.put(x, private=True), "y": worker.put(y, private=True)}
    state["data"][name] = ids
    meta_x = stored_result(worker, x, True)  # a second reference, for the caller's pointer
    meta_y = stored_result(worker, y, True)
    return {"x": meta_x, "y": meta_y, "rows": int(x.shape[0]),
            "budget": _budget_dict(budget)}


def _rows(worker: Worker, ids: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset's rows, through the resolver: what the step replies is checked against
    their policy, so only a declared release (row 'dp', after charging) lets values out."""
    return (worker.resolve(ids["x"], "x", kind=torch.Tensor),
            worker.resolve(ids["y"], "y", kind=torch.Tensor))


def budget_of(worker: Worker, name: str) -> PrivacyBudget:
    try:
        return _dp(worker)["budgets"][name]
    except KeyError:
        raise KeyError(f"{worker.name} holds no dataset {name!r}; load it first "
                       f"(known: {sorted(_dp(worker)['budgets'])})") from None


def _budget_dict(budget: PrivacyBudget) -> dict[str, Any]:
    return {"total_epsilon": budget.total_epsilon, "total_delta": budget.total_delta,
            "spent_epsilon": budget.spent_epsilon, "spent_delta": budget.spent_delta,
            "remaining_epsilon": budget.remaining_epsilon,
            "remaining_delta": budget.remaining_delta,
            "history": [[c.what, c.epsilon, c.delta] for c in budget.history]}


@protocol_step("dp.load")
def load(worker: Worker, caller: str, *, dataset: str, epsilon: float, delta: float
         ) -> dict[str, Any]:
    """The worker loads a known dataset of its own, private, with a total budget.

    If a ledger for it already exists (the worker restarted), its totals and spending
    stand: a caller cannot reset or raise a budget.
    """
    data = datasets.load_named(dataset)
    path = state_dir(worker) / f"budget-{dataset}.json"
    if path.exists():
        import json

        doc = json.loads(path.read_text())
        epsilon, delta = float(doc["total_epsilon"]), float(doc["total_delta"])
    return attach_dataset(worker, dataset, data.x, data.y, epsilon=epsilon, delta=delta)


@protocol_step("dp.budget")
def budget(worker: Worker, caller: str, *, dataset: str) -> dict[str, Any]:
    """The ledger: totals, what was spent on what, and what is left."""
    return _budget_dict(budget_of(worker, dataset))


@protocol_step("dp.budgets")
def budgets(worker: Worker, caller: str) -> dict[str, dict[str, Any]]:
    """Every dataset's ledger on this worker, by dataset name (for dashboards)."""
    return {name: _budget_dict(b) for name, b in sorted(_dp(worker)["budgets"].items())}


@protocol_step("dp.query")
def query(worker: Worker, caller: str, *, dataset: str, kind: str, epsilon: float,
          delta: float = 0.0, column: int | None = None, target: bool = False,
          lower: float | None = None, upper: float | None = None,
          mechanism: str = "laplace") -> float:
    """A differentially private count, sum or mean of one column, charged to the budget."""
    if kind not in QUERIES:
        raise ValueError(f"unknown query {kind!r}; choose one of {sorted(QUERIES)}")
    ids = _dp(worker)["data"].get(dataset)
    if ids is None:
        raise KeyError(f"{worker.name} holds no dataset {dataset!r}")
    x, y = _rows(worker, ids)
    if target:
        values = y.double()
    elif column is not None:
        if not 0 <= column < x.shape[1]:
            raise IndexError(f"column {column} out of range: {dataset} has {x.shape[1]}")
        values = x[:, column].double()
    else:
        values = x[:, 0].double()
    what = f"{kind} of {dataset}" + (f"[{column}]" if column is not None else "")
    kwargs: dict[str, Any] = {"epsilon": epsilon, "delta": delta, "mechanism": mechanism,
                              "budget": budget_of(worker, dataset), "what": f"{what} ({caller})"}
    if kind != "count":
        if lower is None or upper is None:
            raise ValueError(f"a DP {kind} needs clipping bounds lower= and upper=, chosen "
                             "without looking at the data (public knowledge)")
        kwargs.update(lower=lower, upper=upper)
    answer = QUERIES[kind](values, **kwargs)  # charges the ledger before it answers
    worker.declare_release("dp", charged=True)
    return answer


@protocol_step("dp.fit")
def fit(worker: Worker, caller: str, *, dataset: str, spec: dict, delta: float,
        max_grad_norm: float, epochs: int, batch_size: int, lr: float = 0.1,
        noise_multiplier: float | None = None, epsilon: float | None = None,
        loss: str | None = None, optimizer: str | None = None, test_fraction: float = 0.2
        ) -> dict[str, Any]:
    """Train a model privately on the worker's own dataset; the budget pays first.

    The whole run's epsilon is charged before training starts (refused if it does not
    fit); only the trained weights and the per-epoch metrics (on a held-out part of the
    worker's data) leave the worker: a differentially private release.
    """
    from ppdl_nb.dp.fit import fit_private, plan_epsilon
    from ppdl_nb.workers.core.modules import module_from_spec, module_to_spec

    ids = _dp(worker)["data"].get(dataset)
    if ids is None:
        raise KeyError(f"{worker.name} holds no dataset {dataset!r}; load it first")
    x, y = _rows(worker, ids)
    n_test = int(len(x) * test_fraction)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[n_test:], order[:n_test]
    if noise_multiplier is None and epsilon is None:
        raise ValueError("give noise_multiplier= or epsilon=")
    planned = epsilon if epsilon is not None else plan_epsilon(
        noise_multiplier=noise_multiplier, batch_size=batch_size, n=len(train), epochs=epochs,
        delta=delta)
    budget_of(worker, dataset).charge(planned, delta, f"DP-SGD on {dataset} ({caller})")
    result = fit_private(module_from_spec(spec), x[train], y[train], delta=delta,
                         max_grad_norm=max_grad_norm, epochs=epochs, batch_size=batch_size,
                         noise_multiplier=noise_multiplier, epsilon=epsilon, lr=lr,
                         x_test=x[test], y_test=y[test], **_given(loss=loss, optimizer=optimizer))
    worker.declare_release("dp", charged=True)  # DP-SGD, charged above
    return {"spec": module_to_spec(result.model), "history": result.history,
            "epsilon": result.epsilon, "charged": planned,
            "noise_multiplier": result.noise_multiplier}


@protocol_step("dp.teacher_votes")
def teacher_votes(worker: Worker, caller: str, *, dataset: str, spec: dict,
                  public: torch.Tensor, n_classes: int, noise_std: float, delta: float,
                  epochs: int, batch_size: int, lr: float, loss: str | None = None,
                  optimizer: str | None = None, seed: int | None = None) -> torch.Tensor:
    """PATE teacher: train on this worker's own dataset, return only votes on ``public``.

    The teacher (the model ``spec``, trained without noise: PATE's privacy comes from the
    aggregation) never leaves the worker; the reply is one predicted label per public
    query. Those votes are not private on their own: the owner releases them for a noisy
    arg-max with Gaussian noise ``noise_std`` per vote count (GNMax), and charges its budget,
    before training, the data-independent epsilon of that many noisy answers, so one
    person in this partition is covered whatever the other teachers vote. The aggregator
    is trusted to add the noise (PATE's model); it sees each teacher's votes.
    """
    from ppdl_nb.dp.pate import gnmax_epsilon
    from ppdl_nb.workers.core.modules import module_from_spec

    ids = _dp(worker)["data"].get(dataset)
    if ids is None:
        raise KeyError(f"{worker.name} holds no dataset {dataset!r}; load or attach it first")
    if not isinstance(public, torch.Tensor) or public.dim() < 2 or not public.is_floating_point():
        raise TypeError("public must be a float tensor of queries, (queries, features...)")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    x, y = _rows(worker, ids)
    model = module_from_spec(spec)
    public = public.to(x.dtype)
    with torch.no_grad():  # check the model's shape before anything is charged
        shape = tuple(model(public[:1]).shape)
    if len(shape) != 2 or shape[1] != n_classes:
        raise ValueError(f"the teacher's output has shape {shape} for one query; PATE needs "
                         f"(queries, n_classes={n_classes}) scores to vote with")
    cost = gnmax_epsilon(queries=len(public), noise_std=noise_std, delta=delta)
    budget_of(worker, dataset).charge(
        cost, delta, f"PATE votes on {len(public)} queries, noise_std {noise_std:g} ({caller})")
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    training.train_model(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                         generator=gen, **_given(loss=loss, optimizer=optimizer))
    model.eval()
    with torch.no_grad():
        votes = model(public).argmax(-1)
    worker.declare_release("dp", charged=True)  # PATE: the GNMax cost, charged above
    return votes.to(torch.int64)
