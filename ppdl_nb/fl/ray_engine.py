"""Federated *simulation* on Ray: thousands of logical clients on a pool of actors.

:class:`RayEngine` (``engine="ray"``) plugs into :func:`~ppdl_nb.fl.fit_federated` through
the engine interface, so strategies, :class:`~ppdl_nb.fl.History` and the live progress
callback are the same as with the workers' engine. Each round the sampled clients are
dealt out, in contiguous chunks, to a pool of Ray actors sized to the CPUs (never one
actor per client: a process per client would cost more memory than the clients' data);
each actor trains its chunk one client after the other, as a worker's ``fl.train`` does,
and replies with the rows-weighted sum of its clients' updates.

This is a simulation of cost and convergence, not a deployment. The driver holds every
client's rows (:func:`simulated_dataset`), shipped once into Ray's object store, and Ray
pickles what it moves between the driver and its own actors (the model, the options,
the updates): nothing here crosses a process boundary that a peer controls. Secure
aggregation on this engine (``SecAgg``, run by a stand-in worker in the driver) gives the
sum its protocol would give, and costs what it would cost, but makes **no privacy claim**:
whoever runs the driver has all the data anyway. Aggregations that need data owners'
workers to keep their sums (``Trusted``, ``Secure``) are refused.

Local Ray by default: a fresh private instance (``address=None``) bound to 127.0.0.1,
without dashboard or usage statistics, whose workers' output stays out of notebook cells;
``address="ray://..."`` or ``"host:port"`` joins a cluster. Ray is imported only here, and
only when an engine first trains.

>>> import torch
>>> x, y = torch.randn(400, 8), torch.randint(0, 3, (400,))
>>> fed = simulated_dataset(x, y, 100, seed=0, test=(x, y))
>>> len(fed.clients), fed.workers[0].name
(100, 'simulation')
>>> # run = fit_federated(model, fed, rounds=5, fraction=0.1, engine=RayEngine())
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ppdl_nb.fl import local
from ppdl_nb.fl.dataset import Client, FederatedDataset
from ppdl_nb.fl.engine import Engine, engine
from ppdl_nb.fl.partition import partition
from ppdl_nb.fl.worker_steps import _generator, held
from ppdl_nb.workers.core.modules import module_from_spec
from ppdl_nb.workers.core.policy import PUBLIC
from ppdl_nb.workers.transport.virtual import VirtualNetwork, VirtualWorker

__all__ = ["RayEngine", "SimulatedClients", "simulated_dataset"]

_NAME = "simulation"


class SimulatedClients:
    """The driver's copy of every simulated client's rows: the 'worker' of their clients.

    ``x``, ``y``: all rows; ``parts``: one index tensor per client. It also owns a
    virtual stand-in worker, in this process, that runs the strategy's protocol steps
    (SecAgg's rounds) over the updates the actors send back.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, parts: Sequence[torch.Tensor],
                 *, name: str = _NAME) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if not parts:
            raise ValueError("a simulation needs at least one client")
        self.name = name
        self.x = x.detach().contiguous()
        self.y = y.detach().contiguous()
        lengths = [len(p) for p in parts]
        self.index = torch.cat([torch.as_tensor(p, dtype=torch.int64) for p in parts])
        if self.index.numel() and not 0 <= int(self.index.min()) <= int(self.index.max()) < len(y):
            raise IndexError(f"client row indices must lie in [0, {len(y)})")
        self.offsets = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int64)
        self.key = os.urandom(8).hex()
        self.stand_in = VirtualWorker(name, network=VirtualNetwork())

    def rows_of(self, client: int) -> torch.Tensor:
        return self.index[self.offsets[client]:self.offsets[client + 1]]

    def step(self, name: str, **kwargs: Any) -> Any:
        """A protocol step (SecAgg's rounds) on the stand-in worker."""
        return self.stand_in.step(name, **kwargs)

    def __repr__(self) -> str:
        return f"SimulatedClients({len(self.offsets) - 1} clients, {len(self.y)} rows)"


def simulated_dataset(x: torch.Tensor, y: torch.Tensor, clients: int | Sequence[torch.Tensor],
                      *, scheme: str = "iid", alpha: float = 0.5, shards_per_client: int = 2,
                      seed: int | None = None, name: str = "data",
                      test: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> FederatedDataset:
    """Clients for :class:`RayEngine`, their rows held by the driver.

    ``clients``: how many (split as :meth:`FederatedDataset.from_tensors` splits, so the
    same ``seed`` gives every client the same rows there), or one index tensor per client.
    """
    if isinstance(clients, int):
        parts = partition(y, clients, scheme=scheme, alpha=alpha,
                          shards_per_client=shards_per_client, seed=seed)
    else:
        parts = [torch.as_tensor(p, dtype=torch.int64) for p in clients]
    holder = SimulatedClients(x, y, parts)
    classes = 0 if torch.is_floating_point(y) else int(y.max()) + 1
    out = []
    for cid, idx in enumerate(parts):
        ys = y[idx]
        labels = [] if classes == 0 else torch.bincount(ys, minlength=classes).tolist()
        out.append(Client(cid, holder, x[idx], ys, len(idx), labels))
    return FederatedDataset(out, name=name, test=test, scheme=scheme if isinstance(
        clients, int) else "given")


class _Trainer:
    """One Ray actor: trains chunks of clients on the rows the driver put in the store."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.key: str | None = None
        self.model: torch.nn.Module | None = None

    def ready(self) -> int:
        """The actor's process id, once its imports are done."""
        return os.getpid()

    def train(self, spec: dict, x: np.ndarray, y: np.ndarray, index: np.ndarray,
              offsets: np.ndarray, clients: list[int], options: dict[str, Any]
              ) -> dict[str, Any]:
        """What ``fl.train`` computes for ``clients``; per-client updates when held."""
        with warnings.catch_warnings():  # zero-copy views of the store: read, never written
            warnings.simplefilter("ignore", UserWarning)
            xs, ys = torch.from_numpy(x), torch.from_numpy(y)
            index_t, offsets_t = torch.from_numpy(index), torch.from_numpy(offsets)
        model = self._model(spec)
        start = local.flat_weights(model)
        total, weight = torch.zeros_like(start), 0.0
        records, per_client = [], {}
        clip = options.get("max_update_norm")
        for cid in clients:
            rows = index_t[offsets_t[cid]:offsets_t[cid + 1]]
            local.load_flat(model, start)
            run = local.train_local(
                model, xs[rows], ys[rows], epochs=options["epochs"],
                batch_size=options["batch_size"], lr=options["lr"], loss=options["loss"],
                optimizer=options["optimizer"], prox_mu=options["prox_mu"],
                generator=_generator(options.get("seed"), cid))
            if clip is not None:
                update, norm = local.clip_update(run.update, max_update_norm=clip)
                weight += 1.0
            else:
                norm, update = float(run.update.norm()), run.update * run.rows
                weight += run.rows
            if options.get("hold") is not None:
                per_client[f"c{cid}"] = update
            else:
                total += update
            record = {"client": cid, "rows": run.rows,
                      "weight": 1.0 if clip is not None else float(run.rows)}
            if options.get("report", True):
                record.update(loss=run.loss, norm=norm, seconds=run.seconds)
            records.append(record)
        return {"update": total, "weight": weight, "clients": records, "held": per_client}

    def _model(self, spec: dict) -> torch.nn.Module:
        """Rebuilt once per architecture (no pickle: the allowlisted graph), reloaded after."""
        key = repr({k: v for k, v in spec.items() if k != "state"})
        if self.model is None or key != self.key:
            self.model, self.key = module_from_spec(spec), key
        else:
            self.model.load_state_dict(spec["state"], strict=True)
        return self.model


def _ray() -> Any:
    """Ray, imported on first use, without usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # else a FutureWarning
    try:
        import ray
    except ImportError:
        raise ImportError("engine 'ray' needs Ray: pip install 'ppdl-nb[ray]' (ray==2.55.1, "
                          "protobuf<7)") from None
    return ray


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """While a local Ray starts: every Ray server binds 127.0.0.1.

    Ray binds loopback only when its node address is 127.0.0.1, but on Linux it turns
    that address into the machine's own unless its cluster switch is off (the switch
    Ray's ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` sets). The switch is off while Ray
    starts (its processes inherit it), then as it was: a later cluster is unaffected.
    """
    consts = ray._private.ray_constants
    saved = consts.ENABLE_RAY_CLUSTER, os.environ.get(consts.ENABLE_RAY_CLUSTERS_ENV_VAR)
    consts.ENABLE_RAY_CLUSTER = False
    os.environ[consts.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    try:
        yield
    finally:
        consts.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(consts.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[consts.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[1]


@engine("ray")
class RayEngine(Engine):
    """Simulated clients trained on a pool of Ray actors (see the module's docstring).

    ``address``: None starts a private local Ray (127.0.0.1 only, no dashboard); a cluster
    address joins it. ``actors``: pool size (default: the cluster's CPUs). ``threads``:
    torch threads per actor. ``timeout``: seconds a round may take before it is an error.
    """

    def __init__(self, *, address: str | None = None, actors: int | None = None,
                 threads: int = 1, timeout: float = 600.0) -> None:
        if actors is not None and (not isinstance(actors, int) or actors < 1):
            raise ValueError(f"actors must be an integer >= 1, got {actors!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.address, self.actors, self.threads, self.timeout = address, actors, threads, timeout
        self._pool: list[Any] = []
        self._actor: Any = None
        self._data: dict[str, tuple[Any, ...]] = {}
        self._started_ray = False
        self._bytes = 0

    # ---- the pool ----------------------------------------------------------------------
    def start(self) -> RayEngine:
        """Start (or join) Ray and the actor pool, and wait until every actor is up.

        The first round calls it; call it yourself to keep start-up out of round 1.
        """
        ray = _ray()
        if not ray.is_initialized():
            if self.address is None:
                _init_local(ray)
            else:
                ray.init(address=self.address, log_to_driver=False,
                         logging_level=logging.WARNING)
            self._started_ray = True
        if not self._pool:
            cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
            size = self.actors or int(cpus)
            self._actor = ray.remote(num_cpus=min(1.0, cpus / size))(_Trainer)
            self._pool = [self._actor.remote(self.threads) for _ in range(size)]
            ray.get([a.ready.remote() for a in self._pool], timeout=self.timeout)
        return self

    def close(self) -> None:
        """Stop the actors, and Ray itself if this engine started it."""
        if not self._pool and not self._started_ray:
            return
        ray = _ray()
        for actor in self._pool:
            ray.kill(actor)
        self._pool, self._data = [], {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- a round -----------------------------------------------------------------------
    def train(self, groups: dict[str, list[Client]], options: dict[str, Any], *, round: int,
              alive: dict[str, bool]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        holders = {name: _holder(cs) for name, cs in groups.items()}
        if options.get("keep"):
            raise ValueError("engine 'ray' simulates clients in one driver: aggregations in "
                             "which data owners' workers keep their sums (trusted, secure) have "
                             "no owners here. Use mean, secagg or the wrappers (dpfedavg, "
                             "fedavgm, fedadam), or engine='workers'")
        self.start()
        ray = _ray()
        spec_ref = ray.put(options["spec"])
        opts = {k: v for k, v in options.items() if k not in ("spec", "allow", "keep")}
        replies, events = {}, []
        for name, clients in groups.items():
            holder = holders[name]
            data = self._put(ray, holder)
            chunks = _chunks([c.id for c in clients], len(self._pool))
            futures = [actor.train.remote(spec_ref, *data, ids, opts)
                       for actor, ids in zip(self._pool, chunks, strict=False)]
            parts = []
            for i, (future, ids) in enumerate(zip(futures, chunks, strict=False)):
                try:
                    parts.append(ray.get(future, timeout=self.timeout))
                except ray.exceptions.RayActorError as exc:
                    events.append(f"actor {i} died ({type(exc).__name__}); its {len(ids)} "
                                  "clients did not report; it was replaced")
                    self._pool[i] = self._actor.remote(self.threads)
            replies[name] = self._reply(holder, parts, opts.get("hold"))
        self._bytes += len(self._pool) * sum(v.numel() * v.element_size()
                                             for v in options["spec"]["state"].values())
        return replies, events

    def _put(self, ray: Any, holder: SimulatedClients) -> tuple[Any, ...]:
        """The holder's rows in Ray's object store, once per engine (zero-copy reads)."""
        if holder.key not in self._data:
            arrays = (holder.x.numpy(), holder.y.numpy(), holder.index.numpy(),
                      holder.offsets.numpy())
            self._data[holder.key] = tuple(ray.put(a) for a in arrays)
            self._bytes += sum(a.nbytes for a in arrays)
        return self._data[holder.key]

    def _reply(self, holder: SimulatedClients, parts: list[dict[str, Any]], hold: str | None
               ) -> dict[str, Any]:
        """The actors' results as one ``fl.train`` reply (held updates go to the stand-in)."""
        records = [r for p in parts for r in p["clients"]]
        weight = float(sum(p["weight"] for p in parts))
        self._bytes += sum(p["update"].numel() * 4 + sum(u.numel() * 4 for u in p["held"].values())
                           for p in parts)
        if hold is not None:
            updates = {cid: u for p in parts for cid, u in p["held"].items()}
            held(holder.stand_in.owner)[hold] = {"updates": updates, "policy": PUBLIC}
            return {"weight": weight, "clients": records, "update": None}
        total = parts[0]["update"].clone() if parts else None
        for p in parts[1:]:
            total += p["update"]
        return {"weight": weight, "clients": records, "update": total}

    def bytes_seen(self, workers: list[Any]) -> int:
        """Bytes of data, models and updates moved between the driver and the actors."""
        return self._bytes

    def __repr__(self) -> str:
        where = self.address or "local"
        return f"RayEngine({where}, {len(self._pool) or self.actors or 'auto'} actors)"


def _holder(clients: list[Client]) -> SimulatedClients:
    holder = clients[0].worker
    if not isinstance(holder, SimulatedClients):
        raise ValueError(f"engine 'ray' simulates clients whose rows the driver holds "
                         f"(ppdl_nb.fl.ray_engine.simulated_dataset); {holder.name!r} is a "
                         "worker: its clients train where they live, with engine='workers'")
    return holder


def _chunks(ids: list[int], n: int) -> list[list[int]]:
    """``ids`` cut into at most ``n`` contiguous, nearly equal, non-empty chunks."""
    n = max(1, min(n, len(ids)))
    size, extra = divmod(len(ids), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        out.append(ids[start:end])
        start = end
    return out


def _init_local(ray: Any, tries: int = 2) -> None:
    """A local Ray on loopback only. Ray gives its raylet a fixed 30 s to register; on a
    loaded laptop it can miss that once, so a timed-out start is retried."""
    for attempt in range(1, tries + 1):
        try:
            with _loopback_only(ray):
                ray.init(address="local", _node_ip_address="127.0.0.1",
                         include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == tries:
                raise
            ray.shutdown()
