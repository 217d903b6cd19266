"""Federated learning on the worker: hold clients' data, train locally, sum securely.

The notebook never sends code. It names a protocol step installed here and passes the
model as a spec (an allowlisted graph plus weights, :mod:`.modules`); the worker rebuilds
it, trains one copy per logical client on that client's rows, and keeps or returns only
the sum of their updates. For secure aggregation each worker splits its sum into
additive shares and sends them straight to the other share holders over the encrypted
worker-to-worker channels; what a share holder hands the notebook is its sum of shares,
uniformly random on its own.

>>> # notebook: train.on(alice, spec=module_to_spec(model), clients=[[0, Ref(x), Ref(y)]],
>>> #                   epochs=1, batch_size=32, lr=0.1)
"""

from __future__ import annotations

from typing import Any

import torch

from ppdl_nb import datasets, mpc
from ppdl_nb.dp import noise
from ppdl_nb.fl import local
from ppdl_nb.mpc.ring import check_ring
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.modules import module_from_spec
from ppdl_nb.workers.core.worker import Worker

__all__: list[str] = []  # protocol steps only; they register themselves


def _fl(worker: Worker) -> dict[str, Any]:
    return worker.state.setdefault("fl", {"shares": {}})


def held(worker: Worker) -> dict[str, dict[str, Any]]:
    """round -> {"updates": {client id: update}, "clients": {client id: SecAggClient}}:
    updates kept apart for pairwise-mask aggregation (:mod:`.secagg_steps`)."""
    return _fl(worker).setdefault("held", {})


def _tensor(worker: Worker, ref: Any, what: str) -> torch.Tensor:
    """A stored tensor, through the worker's resolver (its policy joins the request's)."""
    if not isinstance(ref, Ref):
        raise TypeError(f"{what} must be a reference to a tensor held by {worker.name}")
    return worker.resolve(ref, what, kind=torch.Tensor)


@protocol_step("fl.load")
def load(worker: Worker, caller: str, *, dataset: str, n_clients: int, clients: list[int],
         scheme: str = "iid", alpha: float = 0.5, shards_per_client: int = 2, seed: int = 0,
         test_rows: int = 0, allow_plain_updates: bool = False) -> list[dict[str, Any]]:
    """The worker loads a known dataset and keeps, private, the rows of its own clients.

    Every worker computes the same partition from the same public ``seed`` and keeps only
    its clients' parts; ``test_rows`` rows, drawn by the same seed, are a public test split
    (:func:`ppdl_nb.fl.dataset.public_split`) that nobody trains on.
    The caller learns each client's size and label counts and gets pointers it cannot open.
    ``allow_plain_updates``: the data owner's opt-in (release row 'plain_updates') to let
    updates trained on these rows leave in the clear (plain FedAvg, a trusted aggregator);
    the loader of a named dataset acts as its owner.
    """
    from ppdl_nb.fl.dataset import public_split
    from ppdl_nb.fl.partition import TARGET_BINS, label_groups, partition

    data = datasets.load_named(dataset)
    train_idx, _ = public_split(len(data.y), test_rows, seed)
    if len(train_idx) < n_clients:
        raise ValueError(f"{dataset} has {len(data.y)} rows; after {test_rows} test rows, too "
                         f"few for {n_clients} clients")
    x, y = data.x[train_idx], data.y[train_idx]
    parts = partition(y, n_clients, scheme=scheme, alpha=alpha,
                      shards_per_client=shards_per_client, seed=seed)
    groups = label_groups(y)  # class ids, or a regression target's quantile bins
    classes = TARGET_BINS if y.dtype.is_floating_point else int(data.y.max()) + 1
    policy = worker.private_policy(permits=["plain_updates"] if allow_plain_updates else [])
    out = []
    for cid in clients:
        if not 0 <= cid < n_clients:
            raise IndexError(f"client {cid} is not among the {n_clients} clients")
        idx = parts[cid]
        xs, ys = x[idx].contiguous(), y[idx].contiguous()
        out.append({"client": cid, "rows": len(idx),
                    "labels": torch.bincount(groups[idx], minlength=classes).tolist(),
                    "x": stored_result(worker, xs, policy=policy),
                    "y": stored_result(worker, ys, policy=policy)})
    return out


@protocol_step("fl.train")
def train(worker: Worker, caller: str, *, spec: dict, clients: list, epochs: int,
          batch_size: int, lr: float, loss: str = "cross_entropy", optimizer: str = "sgd",
          prox_mu: float = 0.0, max_update_norm: float | None = None, keep: bool = False,
          allow: list[str] | None = None, seed: int | None = None, hold: str | None = None,
          report: bool = True) -> dict[str, Any]:
    """Train the model on each listed client ``[id, x, y]``; sum their updates here.

    Without ``max_update_norm`` the sum is weighted by rows (FedAvg). With it each client's
    update is clipped to that L2 norm and counts once (DP-FedAvg, user-level privacy).
    ``keep``: store the sum here, private, fetchable only by ``allow`` (an aggregator or
    a secure-sum step), instead of replying with it. ``seed``: reproducible batches
    (client ``c`` shuffles with ``seed + c``); fresh randomness without it. ``hold``: keep
    each client's (weighted) update separately under this round label, for pairwise-mask
    secure aggregation (:mod:`.secagg_steps`), and reply with none. ``report``: include
    each client's training loss and update norm; off under secure aggregation or DP,
    where those per-client figures would tell the notebook what the protocol hides.
    """
    global_model = _model(worker, spec)
    start_weights = local.flat_weights(global_model)
    total = torch.zeros_like(start_weights)
    weight, records, per_client = 0.0, [], {}
    for item in clients:
        if not (isinstance(item, list) and len(item) == 3):
            raise TypeError("each client is [id, x, y] with x and y references to its data")
        cid, x_ref, y_ref = item
        x, y = _tensor(worker, x_ref, "x"), _tensor(worker, y_ref, "y")
        local.load_flat(global_model, start_weights)
        run = local.train_local(global_model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                                loss=loss, optimizer=optimizer, prox_mu=prox_mu,
                                generator=_generator(seed, cid))
        if max_update_norm is not None:
            update, norm = local.clip_update(run.update, max_update_norm=max_update_norm)
            weight += 1.0
        else:
            norm = float(run.update.norm())
            update = run.update * run.rows
            weight += run.rows
        if hold is not None:
            per_client[f"c{cid}"] = update
        else:
            total += update
        record = {"client": cid, "rows": run.rows,
                  "weight": 1.0 if max_update_norm is not None else float(run.rows)}
        if report:
            record.update(loss=run.loss, norm=norm, seconds=run.seconds)
        records.append(record)
    return _train_reply(worker, weight, records, per_client, total, hold, keep, allow)


def _train_reply(worker: Worker, weight: float, records: list, per_client: dict,
                 total: torch.Tensor, hold: str | None, keep: bool, allow: list[str] | None
                 ) -> dict[str, Any]:
    """Where the round's updates go: held apart (SecAgg), kept private here (shared or
    moved to ``allow``, a trusted aggregator: row 'plain_updates' unless no one is
    allowed), or in the reply (row 'plain_updates'). Per-client figures count as
    update values: they leave only where the update may."""
    request = worker.request
    policy = request.policy if request is not None else worker.private_policy()
    reply: dict[str, Any] = {"weight": weight, "clients": records}
    if policy.private and any("loss" in r for r in records):
        worker.declare_release("plain_updates")  # per-client losses and norms
    if hold is not None:
        held(worker)[hold] = {"updates": per_client, "policy": policy}
        reply["update"] = None
    elif keep:
        if allow:
            worker.declare_release("plain_updates", to=",".join(allow))
        reply["update"] = stored_result(worker, total, policy=policy.with_readers(allow or ()))
        _fl(worker).setdefault("kept", set()).add(reply["update"]["id"])
    else:
        worker.declare_release("plain_updates")
        reply["update"] = total
    return reply


def _model(worker: Worker, spec: dict) -> torch.nn.Module:
    """The spec's model, rebuilt once per architecture and reloaded with new weights after.

    Rounds of one run send the same graph with new weights; rebuilding (layer init,
    graph checks) every round would cost more than loading the weights.
    """
    if not isinstance(spec, dict):
        raise TypeError("spec must be a model description (module_to_spec)")
    state = spec.get("state")
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor)
                                            for v in state.values())):
        raise TypeError("the model's state must map names to tensors")
    shapes = sorted((k, tuple(v.shape), str(v.dtype)) for k, v in state.items())
    key = repr((spec.get("format"), spec.get("nodes"), spec.get("layers"), spec.get("params"),
                shapes))
    cache = _fl(worker).setdefault("models", {})
    model = cache.get(key)
    if model is None:
        model = module_from_spec(spec)
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[key] = model
    else:
        model.load_state_dict(state, strict=True)
    return model


def _generator(seed: int | None, client: int) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed) * 7919 + int(client))


@protocol_step("fl.aggregate")
def aggregate(worker: Worker, caller: str, *, updates: list, noise_std: float = 0.0
              ) -> torch.Tensor:
    """AGGREGATOR: the sum of the updates moved here; only the sum leaves (the caller, who
    knows the weights, divides).

    ``noise_std`` adds Gaussian noise to the sum (DP-FedAvg with a trusted aggregator:
    the aggregator sees the un-noised sum, the notebook does not).
    """
    if not updates:
        raise ValueError("no updates to aggregate")
    total = sum(_tensor(worker, ref, "update") for ref in updates)
    # row 'plain_updates': each update's owner opted in, and named this worker a reader
    worker.declare_release("plain_updates")
    request = worker.request
    if request is not None and not request.policy.may_read(worker.name):
        raise PermissionError(f"{worker.name} may not read the updates it was asked to sum: "
                              "their owners did not name it as the aggregator")
    if noise_std:
        total = total + noise.gaussian_noise(total.shape, noise_std)
    for ref in updates:
        worker.free(ref)
    return total


@protocol_step("fl.share")
def share(worker: Worker, caller: str, *, round: str, update: Any, holders: list[str]) -> int:
    """Split this worker's stored update into additive shares, one per holder, and send each
    holder its share directly. Returns the bytes sent."""
    if len(holders) < 2 or len(set(holders)) != len(holders):
        raise ValueError(f"secure aggregation needs >= 2 distinct share holders, got {holders}")
    if getattr(update, "id", None) not in _fl(worker).get("kept", set()):
        raise PermissionError(f"fl.share shares only an update fl.train kept on {worker.name} "
                              "(keep=True); it shares no other object")
    _fl(worker)["kept"].discard(update.id)
    value = _tensor(worker, update, "update")
    # row 'secure_aggregation': the update leaves only as one share per holder, each
    # random on its own; fl.sum_shares opens a sum only over >= 2 senders
    worker.declare_release("secure_aggregation", parties=len(holders))
    shares = mpc.share(mpc.encode(value.double(), local.FRAC_BITS), len(holders), mpc.PRG())
    worker.free(update)
    sent = 0
    for holder, piece in zip(holders, shares, strict=True):
        if holder == worker.name:
            take_share(worker, worker.name, round=round, share=piece)
        else:
            take_share.on(worker.client_for(holder), round=round, share=piece)
            sent += 8 * piece.numel()
    return sent


@protocol_step("fl.take_share")
def take_share(worker: Worker, caller: str, *, round: str, share: torch.Tensor) -> None:
    """HOLDER: keep the share ``caller`` sent for ``round`` (one per sender and round)."""
    check_ring(share, "share")
    got = _fl(worker)["shares"].setdefault(round, {})
    if caller in got:
        raise ValueError(f"{caller} already sent its share for round {round!r}")
    got[caller] = share


@protocol_step("fl.sum_shares")
def sum_shares(worker: Worker, caller: str, *, round: str, senders: list[str],
               noise_std: float = 0.0) -> torch.Tensor:
    """HOLDER: the sum of the senders' shares (random on its own), plus this holder's share
    of the DP noise, encoded. The round's shares are then forgotten."""
    got = _fl(worker)["shares"].pop(round, {})
    worker.declare_release("secure_aggregation", parties=len(set(senders)))
    missing = [s for s in senders if s not in got]
    if missing:
        raise RuntimeError(f"{worker.name} holds no share from {missing} for round {round!r}")
    total = sum(got[s] for s in senders)
    if noise_std:
        total = total + mpc.encode(noise.gaussian_noise(total.shape, noise_std).double(),
                                   local.FRAC_BITS)
    return total
